"""The compose dev stack (compose/docker-compose.yml) is a valid Compose project that starts in order.

Validity is checked by `docker compose config` when the client and its compose plugin work here,
else by compose/check: compose-go, the library `docker compose` loads files with (interpolation,
the Compose Specification JSON Schema, normalization, consistency). The rest are the stack's own
rules: pinned images, health checks, documented variables, loopback ports.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from services import _unavailable

from devstack.nessie import NESSIE_VERSION, ServiceError
from devstack.tools import compose_check

REPO_ROOT = Path(__file__).resolve().parents[2]
COMPOSE_DIR = REPO_ROOT / "compose"
COMPOSE_FILE = COMPOSE_DIR / "docker-compose.yml"
ENV_EXAMPLE = COMPOSE_DIR / ".env.example"
SERVICES = {"minio", "minio-init", "postgres", "mysql", "nessie", "platform"}
VARIABLE = re.compile(r"(?<!\$)\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)")


def env_example() -> dict[str, str]:
    pairs = (line.split("=", 1) for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines())
    return {p[0]: p[1] for p in pairs if len(p) == 2 and not p[0].startswith("#")}


def raw_compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    return loaded


def docker_compose_works() -> bool:
    docker = shutil.which("docker")
    if docker is None:
        return False
    return subprocess.run([docker, "compose", "version"], capture_output=True, check=False).returncode == 0


def load_project(env_file: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The resolved project as JSON on stdout, from a clean environment plus `env_file`."""
    clean_env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(cwd)}
    if docker_compose_works():
        command = ["docker", "compose", "--env-file", str(env_file), "-f", str(COMPOSE_FILE)]
        command += ["config", "--format", "json"]
    else:
        try:
            command = [str(compose_check()), "-env-file", str(env_file), str(COMPOSE_FILE)]
        except ServiceError as error:
            _unavailable("compose-check (the Compose file loader)", error)
    return subprocess.run(command, cwd=cwd, env=clean_env, capture_output=True, text=True, check=False)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    loaded = load_project(ENV_EXAMPLE, tmp_path_factory.mktemp("compose"))
    assert loaded.returncode == 0, loaded.stderr
    resolved: dict[str, Any] = json.loads(loaded.stdout)
    return resolved


def test_the_stack_loads_as_a_valid_compose_project(project: dict[str, Any]) -> None:
    example = env_example()
    assert project["name"] == "ingestion"
    assert set(project["services"]) == SERVICES
    platform = project["services"]["platform"]
    assert Path(platform["build"]["context"]) == REPO_ROOT
    assert platform["build"]["dockerfile"] == "Dockerfile"
    environment = platform["environment"]
    assert environment["INGEST_SECRET__PLATFORM__S3_ACCESS_KEY_ID"] == example["MINIO_ROOT_USER"]
    assert environment["INGEST_SECRET__PLATFORM__S3_SECRET_ACCESS_KEY"] == example["MINIO_ROOT_PASSWORD"]
    assert environment["INGEST_SECRET_DEVSTACK__postgres_password"] == example["POSTGRES_PASSWORD"]
    assert environment["INGEST_WAREHOUSE"] == f"s3://{example['WAREHOUSE_BUCKET']}/lake"
    assert platform["command"] == ["serve"]
    nessie = project["services"]["nessie"]["environment"]
    assert nessie["nessie.version.store.type"] == "JDBC2"
    assert nessie["quarkus.datasource.postgresql.jdbc.url"] == "jdbc:postgresql://postgres:5432/nessie"


def test_the_platform_runs_the_stacks_jobs_against_its_services(tmp_path: Path) -> None:
    """The mounted tree validates (runner.yaml, the checkout's jobs and the stack's own), its lake is
    the nessie and minio services, and its database jobs read the stack's postgres and mysql."""
    from ingestion.jobs import PlatformPaths, validate_tree  # noqa: PLC0415 - only this test

    configs = tmp_path / "configs"
    shutil.copytree(REPO_ROOT / "configs" / "jobs", configs / "jobs")
    shutil.copytree(COMPOSE_DIR / "configs" / "jobs" / "devstack", configs / "jobs" / "devstack")
    shutil.copy(COMPOSE_DIR / "configs" / "runner.yaml", configs / "runner.yaml")
    tree = validate_tree(PlatformPaths.resolve(root=REPO_ROOT, environ={}, configs=configs))
    assert not tree.errors, [str(e) for e in tree.errors]
    assert tree.runner.catalog.type == "nessie"
    assert set(tree.runner.catalog.secrets.values()) == {"S3_ACCESS_KEY_ID", "S3_SECRET_ACCESS_KEY"}
    assert tree.jobs["devstack/shop_postgres"].config["host"] == "postgres"
    assert tree.jobs["devstack/shop_mysql"].config["host"] == "mysql"
    compose = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    mounts = {volume.split(":")[1] for volume in compose["services"]["platform"]["volumes"]}
    assert {"/configs/runner.yaml", "/configs/jobs/devstack", "/specs/assets", "/specs/registry"} <= mounts


def test_a_missing_password_stops_compose_with_the_fix(tmp_path: Path) -> None:
    env_file = tmp_path / "partial.env"
    kept = [line for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines() if "PASSWORD" not in line]
    env_file.write_text("\n".join(kept) + "\n", encoding="utf-8")
    loaded = load_project(env_file, tmp_path)
    assert loaded.returncode != 0
    assert "set MINIO_ROOT_PASSWORD in compose/.env" in loaded.stderr


def test_every_image_is_pinned() -> None:
    version = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["version"]
    for name, service in raw_compose()["services"].items():
        image = service["image"]
        repository, _, tag = image.rpartition(":")
        assert repository, f"{name}: image {image!r} has no tag"
        assert "/" not in tag, f"{name}: image {image!r} has no tag"
        assert tag != "latest", f"{name}: image {image!r} is not pinned"
        assert re.search(r"\d", tag), f"{name}: image {image!r} is not pinned to a version"
    services = raw_compose()["services"]
    assert services["nessie"]["image"] == f"ghcr.io/projectnessie/nessie:{NESSIE_VERSION}"  # as devstack runs
    assert services["platform"]["image"] == "ingestion:${INGESTION_VERSION:-" + version + "}"
    assert env_example()["INGESTION_VERSION"] == version


def test_services_start_in_order_of_health() -> None:
    services = raw_compose()["services"]
    waited_on: dict[str, set[str]] = {}
    for name, service in services.items():
        for dependency, rule in service.get("depends_on", {}).items():
            assert dependency in services, f"{name} depends on unknown service {dependency}"
            waited_on.setdefault(dependency, set()).add(rule["condition"])
    for name, service in services.items():
        if "healthcheck" in service:
            assert service["healthcheck"]["test"][0] in {"CMD", "CMD-SHELL"}, name
            continue
        # Only one-shot jobs go without a health check: they exit, and others wait for that.
        assert service.get("restart") == "no", f"{name} runs on but has no healthcheck"
        assert waited_on.get(name) == {"service_completed_successfully"}, name
    for name, conditions in waited_on.items():
        if "service_healthy" in conditions:
            assert "healthcheck" in services[name], (
                f"others wait for {name} to be healthy; it has no healthcheck"
            )
    assert set(services["platform"]["depends_on"]) == SERVICES - {"platform", "minio"}


def test_every_variable_is_documented_in_env_example() -> None:
    used = set(VARIABLE.findall(COMPOSE_FILE.read_text(encoding="utf-8")))
    documented = set(env_example())
    assert used - documented == set(), "used in docker-compose.yml but not in .env.example"
    assert documented - used == set(), "in .env.example but not used by docker-compose.yml"


def test_host_ports_are_on_loopback_only() -> None:
    for name, service in raw_compose()["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} on every interface"
