"""E2E support: the real commands as subprocesses, a clean env, a throwaway copy of the Meltano project."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import REPO_ROOT, Lake, service_required

# The console scripts of the environment running the tests (the project venv: `make setup`).
BIN = Path(sys.executable).parent
MELTANO_DIR = REPO_ROOT / ".meltano"
LOADER = "target-iceberg-nessie"
# The extractor the demo job runs (tap-demo-csv inherits its venv).
DEMO_EXTRACTOR = "tap-spreadsheets"
# The copy needs only what `meltano run` reads: the project file, its include_paths and the data.
PROJECT_FILES = ("meltano.yml", "extractors", "demo")
# Inherited variables that would redirect Meltano or the loader away from the test's lake.
_INHERITED_PREFIXES = ("MELTANO_", "TARGET_ICEBERG_NESSIE_", "TAP_")
COMMAND_TIMEOUT_SECONDS = 600


@dataclass(frozen=True)
class Finished:
    """A finished command: what it printed, its exit code and how long it took."""

    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    def explain(self) -> str:
        return (
            f"$ {' '.join(self.args)}\nexit {self.returncode} after {self.seconds:.1f}s\n"
            f"--- stdout (tail) ---\n{self.stdout[-3000:]}\n--- stderr (tail) ---\n{self.stderr[-6000:]}"
        )


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_INHERITED_PREFIXES)}
    env.update(
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        MELTANO_CLI_DISABLE_VERSION_CHECK="true",
        MELTANO_SEND_ANONYMOUS_USAGE_STATS="false",
    )
    env.update(extra or {})
    return env


def run(args: Sequence[str | Path], *, cwd: Path, env: Mapping[str, str] | None = None) -> Finished:
    argv = tuple(str(a) for a in args)
    started = time.perf_counter()
    done = subprocess.run(
        argv,
        cwd=cwd,
        env=dict(env) if env is not None else clean_env(),
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_SECONDS,
        check=False,
    )
    return Finished(argv, done.returncode, done.stdout, done.stderr, time.perf_counter() - started)


def console_script(name: str) -> Path:
    path = BIN / name
    assert path.is_file(), f"{path} is missing: run `make setup` (installs the project's console scripts)"
    return path


def plugin_executable(kind: str, name: str, executable: str | None = None) -> Path:
    """Where `meltano install` (make plugins) puts a plugin's executable: one venv per plugin."""
    return MELTANO_DIR / kind / name / "venv" / "bin" / (executable or name)


def require_meltano_plugins(extractors: Sequence[str] = (DEMO_EXTRACTOR,)) -> None:
    """The plugin venvs must exist: FAIL when CI=true, skip only on a developer machine."""
    wanted = [plugin_executable("loaders", LOADER)]
    wanted += [plugin_executable("extractors", name) for name in extractors]
    missing = [str(p.relative_to(REPO_ROOT)) for p in wanted if not p.is_file()]
    if not missing:
        return
    msg = f"Meltano plugins are not installed ({', '.join(missing)} missing); run `make plugins` first"
    if service_required():
        pytest.fail(msg)
    pytest.skip(msg)


def plugin_fingerprints() -> dict[str, str]:
    """The venv fingerprints Meltano writes at install; a reinstall would change them."""
    found = sorted(MELTANO_DIR.glob("*/*/venv/.meltano_plugin_fingerprint"))
    return {str(p.relative_to(MELTANO_DIR)): p.read_text() for p in found}


@dataclass(frozen=True)
class MeltanoProject:
    """A throwaway copy of the Meltano project whose loader writes into `lake`."""

    root: Path
    lake: Lake

    @property
    def env(self) -> dict[str, str]:
        catalog = {"TARGET_ICEBERG_NESSIE_CATALOG_URI": self.lake.catalog_uri}
        if self.lake.nessie_uri is not None:
            catalog = {
                "TARGET_ICEBERG_NESSIE_CATALOG_TYPE": "nessie",
                "TARGET_ICEBERG_NESSIE_NESSIE_URI": self.lake.nessie_uri,
                "TARGET_ICEBERG_NESSIE_BRANCH": self.lake.branch,
            }
        return clean_env(
            {
                "TARGET_ICEBERG_NESSIE_WAREHOUSE": self.lake.warehouse_uri,
                **{f"TARGET_ICEBERG_NESSIE_{k.upper()}": v for k, v in self.lake.s3_settings.items()},
                "TARGET_ICEBERG_NESSIE_STATE_DIR": str(self.lake.state_dir),
                # Meltano's state backend lives in the loader's state dir (meltano.yml).
                "MELTANO_STATE_BACKEND_URI": f"ingest://{self.lake.state_dir}",
                **catalog,
            }
        )

    def meltano(self, *args: str, env: Mapping[str, str] | None = None) -> Finished:
        return run([console_script("meltano"), *args], cwd=self.root, env={**self.env, **(env or {})})

    def meltano_run(self, *blocks: str, env: Mapping[str, str] | None = None) -> Finished:
        # --no-install: see copy_meltano_project for why the copy must never (re)install plugins.
        return self.meltano("run", "--no-install", *blocks, env=env)


def copy_meltano_project(
    root: Path, lake: Lake, *, extractors: Sequence[str] = (DEMO_EXTRACTOR,)
) -> MeltanoProject:
    """Copy the project to `root`, reusing the repo's installed plugin venvs.

    Why a copy with symlinked venvs, and not the repo itself: Meltano keeps its state and run history
    in `.meltano/meltano.db` and per-run files in `.meltano/run/`. Running in the repo would leave a
    bookmark for `dev:tap-demo-csv-to-target-iceberg-nessie` there (a later `make demo` would then skip
    every CSV file) and share `.meltano/run/` with concurrent runs. The copy gets its own `.meltano/`
    (fresh system database, own run dir, own CSV mtimes); only `extractors/` and `loaders/`, the
    plugin venvs, are symlinks to the repo's. The loader venv is an editable install of this repo, so
    the code under test is the working tree. `--no-install` is required: pip_url contains
    ${MELTANO_PROJECT_ROOT}, so in the copy the venv fingerprints differ and Meltano's auto-install
    would rebuild the shared venvs, pointing the repo's loader at the temporary copy.
    """
    require_meltano_plugins(extractors)
    root.mkdir(parents=True)
    for name in PROJECT_FILES:
        source = REPO_ROOT / name
        if source.is_dir():
            shutil.copytree(source, root / name)
        else:
            shutil.copy(source, root / name)
    (root / ".meltano").mkdir()
    for kind in ("extractors", "loaders"):
        (root / ".meltano" / kind).symlink_to(MELTANO_DIR / kind, target_is_directory=True)
    return MeltanoProject(root=root, lake=lake)


REDIRECT_DIR = REPO_ROOT / "tests" / "fakes" / "redirect"


def redirect_extractor(project: MeltanoProject, extractor: str, redirects: Mapping[str, str]) -> None:
    """TEST ONLY: run `extractor` of the copied project with its API hosts sent to local fakes.

    The copy's plugin definition gets a wrapper script as its executable; the wrapper puts
    tests/fakes/redirect (a `sitecustomize`) on PYTHONPATH and names the redirects in
    INGEST_TEST_REDIRECT, then execs the real tap. Meltano drops an inherited PYTHONPATH, and the
    repo's own plugin definitions and venvs are untouched, so production never has the redirection.
    Variants that `inherit_from` the extractor inherit the wrapper.
    """
    files = (project.root / "extractors").glob("*.meltano.yml")
    definitions = [f for f in files if f"name: {extractor}\n" in f.read_text(encoding="utf-8")]
    assert len(definitions) == 1, f"{extractor} must be defined in exactly one extractors/*.meltano.yml"
    text = definitions[0].read_text(encoding="utf-8")
    block = text.index(f"name: {extractor}\n")
    executable = text.index("executable: ", block)
    line_end = text.index("\n", executable)
    real_name = text[executable + len("executable: ") : line_end].strip()
    real = project.root / ".meltano" / "extractors" / extractor / "venv" / "bin" / real_name
    wrapper = project.root / ".redirect" / extractor
    wrapper.parent.mkdir(exist_ok=True)
    wrapper.write_text(
        "#!/bin/sh\n"
        f"PYTHONPATH='{REDIRECT_DIR}' INGEST_TEST_REDIRECT='{json.dumps(dict(redirects))}' "
        f'exec "{real}" "$@"\n',
        encoding="utf-8",
    )
    wrapper.chmod(0o755)
    redirected = text[:executable] + f"executable: {wrapper}" + text[line_end:]
    definitions[0].write_text(redirected, encoding="utf-8")


@contextmanager
def loader_with_sitecustomize(project: MeltanoProject, folder: Path, sitecustomize: str) -> Iterator[None]:
    """TEST ONLY: while inside, the copied project's loader runs with `sitecustomize` on its
    PYTHONPATH (failure injection); the plugin definition is put back after."""
    folder.mkdir(exist_ok=True)
    (folder / "sitecustomize.py").write_text(sitecustomize, encoding="utf-8")
    real = project.root / ".meltano" / "loaders" / LOADER / "venv" / "bin" / LOADER
    wrapper = folder / LOADER
    wrapper.write_text(f'#!/bin/sh\nPYTHONPATH="{folder}" exec "{real}" "$@"\n', encoding="utf-8")
    wrapper.chmod(0o755)
    meltano_yml = project.root / "meltano.yml"
    original = meltano_yml.read_text(encoding="utf-8")
    assert f"executable: {LOADER}\n" in original
    meltano_yml.write_text(original.replace(f"executable: {LOADER}\n", f"executable: {wrapper}\n"))
    try:
        yield
    finally:
        meltano_yml.write_text(original, encoding="utf-8")
