"""Job specs and runner.yaml: the shipped examples validate; every mistake and every attempt to reach
another tenant is reported with its file, the path inside it and the fix, before anything runs."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import REPO_ROOT

from ingestion.cli import cli
from ingestion.errors import ConfigError, ConfigFileError
from ingestion.jobs import PlatformPaths, find_job, validate_tree

GOOD_JOB = """
schema_version: 1
tenant: acme
extractor: stripe
streams: [customers]
secrets: {client_secret: STRIPE_API_KEY}
contracts: [stripe/v1.0/customers.yaml]
target: {namespace: stripe, write_mode: upsert}
"""


@pytest.fixture
def paths(tmp_path: Path) -> PlatformPaths:
    """A configs tree of its own; contracts and registry are the repository's."""
    (tmp_path / "configs" / "jobs" / "acme").mkdir(parents=True)
    return PlatformPaths.resolve(
        configs=tmp_path / "configs",
        specs=REPO_ROOT,
        secrets=tmp_path / "secrets",
        state=tmp_path / "state",
        logs=tmp_path / "logs",
    )


def write(paths: PlatformPaths, relative: str, text: str) -> Path:
    file = paths.configs / relative
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return file


def problems_of(paths: PlatformPaths) -> list[tuple[str, str, str, str]]:
    tree = validate_tree(paths)
    return [(e.file.name, p.path, p.message, p.fix) for e in tree.errors for p in e.problems]


def test_the_shipped_configs_validate() -> None:
    shipped = PlatformPaths.resolve(configs=REPO_ROOT / "configs", specs=REPO_ROOT)
    tree = validate_tree(shipped)
    assert not tree.errors, [str(e) for e in tree.errors]
    connectors = {job.extractor for job in tree.jobs.values()}
    assert connectors >= {
        "stripe",
        "hubspot",
        "postgres",
        "mysql",
        "google_sheets",
        "google_drive",
        "csv_files",
    }
    assert {s.job for s in tree.runner.schedules} == set(tree.jobs), "runner.yaml schedules every job"


def test_a_good_job_loads_with_its_defaults(paths: PlatformPaths) -> None:
    write(paths, "jobs/acme/stripe_billing.yaml", GOOD_JOB)
    job = find_job(paths, "acme/stripe_billing")
    assert job.id == "acme/stripe_billing"
    assert job.pipeline_id == "acme.stripe_billing"
    assert job.namespace == "stripe"
    assert job.target.write_mode == "upsert"
    assert find_job(paths, "stripe_billing") == job, "a job name alone finds it when only one tenant has it"


@pytest.mark.parametrize(
    ("text", "path", "needle"),
    [
        (GOOD_JOB.replace("tenant: acme", "tenant: globex"), "tenant", "set `tenant: acme`"),
        (
            GOOD_JOB.replace("extractor: stripe", "extractor: salesforce"),
            "extractor",
            "unknown connector type",
        ),
        (GOOD_JOB.replace("streams: [customers]", "streams: [payouts]"), "streams", "not offered by stripe"),
        (GOOD_JOB.replace("customers.yaml]", "nope.yaml]"), "contracts[0]", "no contract at"),
        (GOOD_JOB + "plugin: tap-postgres\n", "plugin", "not a plugin of connector"),
        (GOOD_JOB + "config: {client_secret: x}\n", "secrets", "both config and secrets"),
        (GOOD_JOB + "incremental: {lookback: 2y}\n", "incremental.lookback", "wrong form"),
        (GOOD_JOB + "colour: blue\n", "the top level", "unknown key(s) 'colour'"),
        (GOOD_JOB.replace("write_mode: upsert", "write_mode: merge"), "target.write_mode", "is not one of"),
        # an interval no cron expression runs at: the orchestrator could not schedule it
        (GOOD_JOB + "schedule: {interval: 7m}\n", "schedule.interval", "does not divide an hour"),
        # a contract of another stream would never be enforced
        (
            GOOD_JOB.replace("stripe/v1.0/customers.yaml", "stripe/v1.0/charges.yaml"),
            "contracts[0]",
            "describes stream(s) ['charges'], none of which the job loads (customers)",
        ),
        (
            """
            schema_version: 1
            tenant: acme
            extractor: google_drive
            config: {files: [{path: "gdrive://x/*.csv", format: csv, table_name: customers}]}
            contracts: [google_drive/v1.0/customers.yaml]
            """,
            "contracts[0]",
            "name the stream as the contract does",
        ),
    ],
)
def test_mistakes_are_named_with_the_fix(paths: PlatformPaths, text: str, path: str, needle: str) -> None:
    write(paths, "jobs/acme/stripe_billing.yaml", text)
    found = problems_of(paths)
    assert any(p == path and needle in f"{m} {fix}" for _, p, m, fix in found), found


def test_a_job_may_load_some_of_the_streams_its_default_contracts_cover(paths: PlatformPaths) -> None:
    write(
        paths,
        "jobs/acme/stripe_billing.yaml",
        GOOD_JOB.replace("contracts: [stripe/v1.0/customers.yaml]\n", ""),
    )
    assert problems_of(paths) == []


def test_the_connectors_default_contracts_must_exist_unless_the_job_opts_out(tmp_path: Path) -> None:
    specs = tmp_path / "specs"
    (specs / "assets").mkdir(parents=True)
    (specs / "registry").symlink_to(REPO_ROOT / "registry", target_is_directory=True)
    paths = PlatformPaths.resolve(configs=tmp_path / "configs", specs=specs, environ={})
    job = """
    schema_version: 1
    tenant: acme
    extractor: postgres
    streams: [public-orders]
    config: {host: db.example.com, database: shop}
    """
    write(paths, "jobs/acme/shop.yaml", job)
    found = problems_of(paths)
    assert [(p, m.split(" at ")[0]) for _, p, m, _ in found] == [("contracts[0]", "no contract")], found
    assert "postgres/v1.0/orders.yaml" in found[0][2]
    write(paths, "jobs/acme/shop.yaml", textwrap.dedent(job) + "contracts: []\n")
    assert problems_of(paths) == []


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        # another tenant's branch
        ("target: {namespace: stripe, branch: globex/main}", "is not a branch of tenant 'acme'"),
        # a contract outside the specs' assets
        ("contracts: [../../etc/passwd.yaml]", "wrong form"),
        # another tenant's secret by path
        ("secrets: {client_secret: ../globex/STRIPE_API_KEY}", "wrong form"),
    ],
)
def test_reaching_into_another_tenant_is_refused(paths: PlatformPaths, change: str, needle: str) -> None:
    key = change.split(":", 1)[0]
    lines = [line for line in GOOD_JOB.splitlines() if not line.startswith(f"{key}:")]
    write(paths, "jobs/acme/stripe_billing.yaml", "\n".join([*lines, change]) + "\n")
    found = problems_of(paths)
    assert any(needle in m for _, _, m, _ in found), found


def test_another_tenants_contract_is_refused(paths: PlatformPaths, tmp_path: Path) -> None:
    specs = tmp_path / "specs"
    shutil.copytree(REPO_ROOT / "registry", specs / "registry")
    contract = (REPO_ROOT / "assets" / "stripe" / "v1.0" / "customers.yaml").read_text(encoding="utf-8")
    (specs / "assets" / "stripe" / "v1.0").mkdir(parents=True)
    (specs / "assets" / "stripe" / "v1.0" / "customers.yaml").write_text(
        contract.replace("tenant: default", "tenant: globex"), encoding="utf-8"
    )
    own = PlatformPaths.resolve(configs=paths.configs, specs=specs, secrets=paths.secrets)
    write(own, "jobs/acme/stripe_billing.yaml", GOOD_JOB)
    found = problems_of(own)
    assert any(p == "contracts[0]" and "tenant 'globex'" in m for _, p, m, _ in found), found


def test_a_job_file_linked_in_from_another_tenant_is_refused(paths: PlatformPaths) -> None:
    other = write(paths, "jobs/globex/billing.yaml", GOOD_JOB.replace("tenant: acme", "tenant: globex"))
    link = paths.jobs / "acme" / "billing.yaml"
    link.symlink_to(other)
    found = problems_of(paths)
    assert any(name == "billing.yaml" and "regular file" in m for name, _, m, _ in found), found


def test_a_tenant_folder_that_is_not_a_tenant_id_is_refused(paths: PlatformPaths) -> None:
    write(paths, "jobs/Bad..Tenant/stripe.yaml", GOOD_JOB.replace("tenant: acme", "tenant: acme"))
    found = problems_of(paths)
    assert any(p == "<folder>" and "not a tenant id" in m for _, p, m, _ in found), found


def test_tenant_dirs_stay_inside_their_root(paths: PlatformPaths, tmp_path: Path) -> None:
    paths.state.mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    (paths.state / "acme").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ConfigError, match="outside"):
        paths.tenant_dir("state", "acme")
    with pytest.raises(ConfigError, match="not a tenant id"):
        paths.tenant_dir("logs", "../acme")


def test_runner_schedule_intervals_must_be_schedulable(paths: PlatformPaths) -> None:
    write(paths, "jobs/acme/stripe_billing.yaml", GOOD_JOB)
    write(paths, "runner.yaml", "schema_version: 1\nschedules: [{job: acme/stripe_billing, interval: 5h}]\n")
    found = problems_of(paths)
    assert [(f, p) for f, p, _, _ in found] == [("runner.yaml", "schedules[0].interval")], found
    assert "does not divide an hour or a day evenly" in found[0][2]


def test_schedules_must_name_jobs(paths: PlatformPaths) -> None:
    write(paths, "jobs/acme/stripe_billing.yaml", GOOD_JOB)
    write(paths, "runner.yaml", "schema_version: 1\nschedules:\n- {job: acme/nope, cron: '0 * * * *'}\n")
    found = problems_of(paths)
    assert (
        "runner.yaml",
        "schedules[0].job",
        "no job 'acme/nope' under " + str(paths.jobs),
        "fix the name or add the job",
    ) in found


def test_an_unknown_job_names_where_it_was_looked_for(paths: PlatformPaths) -> None:
    with pytest.raises(ConfigError, match=r"no job 'acme/nope'.*ingest validate"):
        find_job(paths, "acme/nope")
    write(paths, "jobs/acme/bad.yaml", "schema_version: 1\ntenant: acme\n")
    with pytest.raises(ConfigFileError, match="missing required key"):
        find_job(paths, "acme/bad")


def test_ingest_validate_exit_codes_and_json(paths: PlatformPaths) -> None:
    write(paths, "jobs/acme/stripe_billing.yaml", GOOD_JOB)
    args = ["validate", "--configs-dir", str(paths.configs), "--specs-dir", str(REPO_ROOT), "--json"]
    done = CliRunner().invoke(cli, args)
    assert done.exit_code == 0, done.output
    assert '"valid": true' in done.output
    write(paths, "jobs/acme/other.yaml", GOOD_JOB.replace("stripe", "nothing"))
    done = CliRunner().invoke(cli, args)
    assert done.exit_code == 2
    assert "other.yaml" in done.output


def test_the_configs_tree_copies_cleanly(tmp_path: Path) -> None:
    """The examples do not depend on where the checkout is (the image copies them to /configs)."""
    shutil.copytree(REPO_ROOT / "configs", tmp_path / "configs")
    copied = PlatformPaths.resolve(configs=tmp_path / "configs", specs=REPO_ROOT)
    assert not validate_tree(copied).errors
