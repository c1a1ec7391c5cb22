"""An s3:// warehouse on a real S3-compatible server (versitygw, tests/services_s3.py), with the
embedded catalog and with Nessie: rows land as objects and read back through pyiceberg AND DuckDB;
large files go up in parts; a missing bucket, wrong credentials and a server restart mid-run end in
clear errors, nothing half-committed, and a re-run that loads exactly once."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import Lake, new_nessie_branch, read_duckdb, read_pyiceberg, run_target

TABLE = "acme.raw.events"
SCHEMA = {
    "type": "SCHEMA",
    "stream": "events",
    "key_properties": ["id"],
    "schema": {
        "type": "object",
        "properties": {"id": {"type": "integer"}, "payload": {"type": ["string", "null"]}},
    },
}


def singer(ids: range, *, state: int, payload_bytes: int = 8) -> str:
    lines = [json.dumps(SCHEMA)]
    for n in ids:
        payload = base64.b64encode(os.urandom(payload_bytes)).decode() if payload_bytes > 8 else f"p{n}"
        lines.append(
            json.dumps({"type": "RECORD", "stream": "events", "record": {"id": n, "payload": payload}})
        )
    lines.append(json.dumps({"type": "STATE", "value": {"upto": state}}))
    return "\n".join(lines) + "\n"


@pytest.fixture(params=["embedded", "nessie"])
def s3_lake(request: pytest.FixtureRequest, tmp_path: Path, s3_server: Any) -> Iterator[Lake]:
    if request.param == "embedded":
        lake = Lake(tmp_path / "lake", s3=s3_server)
    else:
        nessie = request.getfixturevalue("nessie")
        lake = Lake(
            tmp_path / "lake", nessie_uri=nessie.uri, branch=new_nessie_branch(nessie.uri), s3=s3_server
        )
    yield lake
    lake.close()


def ids_of(lake: Lake) -> list[int]:
    found = {}
    for reader in (read_pyiceberg, read_duckdb):
        found[reader.__name__] = sorted(r["id"] for r in reader(lake, TABLE))
    assert found["read_pyiceberg"] == found["read_duckdb"]
    return found["read_pyiceberg"]


def objects_under(lake: Lake) -> list[Path]:
    """The objects the server stores for this lake's prefix (its posix backend: one file each)."""
    prefix = lake.warehouse_uri.removeprefix(f"s3://{lake.s3_bucket}/")
    root = lake.s3.data_dir / lake.s3_bucket / prefix
    return [p for p in root.rglob("*") if p.is_file()]


def test_rows_land_as_objects_and_read_back(s3_lake: Lake) -> None:
    result = run_target(s3_lake.config(), singer(range(1, 501), state=1) + singer(range(501, 801), state=2))
    assert result.error is None, result.error
    assert ids_of(s3_lake) == list(range(1, 801))
    table = s3_lake.catalog().load_table(("acme", "raw", "events"))
    assert table.metadata_location.startswith(s3_lake.warehouse_uri + "/")
    assert all(t.file.file_path.startswith("s3://") for t in table.scan().plan_files())
    stored = objects_under(s3_lake)
    assert any(p.suffix == ".parquet" for p in stored)
    assert any(p.name.endswith(".metadata.json") for p in stored)
    # Credentials go to the FileIO only: no metadata file, manifest or state document holds them.
    secret = s3_lake.s3.secret_key.encode()
    assert not [p for p in stored if secret in p.read_bytes()]
    assert not [p for p in s3_lake.root.rglob("*") if p.is_file() and secret in p.read_bytes()]


def test_a_data_file_over_the_multipart_threshold_goes_up_in_parts(s3_lake: Lake) -> None:
    # ~14 MB of incompressible text: over pyarrow's 10 MB part size, so one data file in parts.
    result = run_target(s3_lake.config(), singer(range(1, 40_001), state=1, payload_bytes=260))
    assert result.error is None, result.error
    table = s3_lake.catalog().load_table(("acme", "raw", "events"))
    files = [t.file for t in table.scan().plan_files()]
    assert len(files) == 1
    assert files[0].file_size_in_bytes > 10 * 1024 * 1024
    key = files[0].file_path.removeprefix("s3://")
    head = s3_lake.s3.client().request("HEAD", f"/{key}")
    assert head.status_code == 200
    etag = head.headers["etag"].strip('"')
    assert "-" in etag, f"a multipart upload's ETag is <md5>-<parts>, got {etag}"
    assert int(etag.rsplit("-", 1)[1]) >= 2
    assert ids_of(s3_lake) == list(range(1, 40_001))


def test_a_missing_bucket_is_a_clear_error_and_commits_nothing(s3_lake: Lake) -> None:
    s3_lake.s3_bucket = "no-such-bucket"
    result = run_target(s3_lake.config(), singer(range(1, 11), state=1))
    assert result.error is not None
    message = str(result.error)
    assert "bucket 'no-such-bucket' does not exist" in message
    assert "Create it, or point `warehouse` at an existing bucket" in message
    assert not result.states, "no STATE was emitted"
    s3_lake.s3_bucket = "warehouse"
    assert _table_or_none(s3_lake) is None


def test_wrong_credentials_are_a_clear_error_and_commit_nothing(s3_lake: Lake) -> None:
    config = {**s3_lake.config(), "s3_secret_access_key": "not-the-secret"}
    result = run_target(config, singer(range(1, 11), state=1))
    assert result.error is not None
    message = str(result.error)
    assert "refused the credentials. Check s3_access_key_id and s3_secret_access_key" in message
    assert "not-the-secret" not in message
    assert not result.states
    assert _table_or_none(s3_lake) is None


def _table_or_none(lake: Lake) -> Any:
    try:
        return lake.catalog().load_table(("acme", "raw", "events"))
    except Exception:  # noqa: BLE001 - the embedded catalog may not even have been created
        return None


def test_a_server_restart_mid_run_then_a_rerun_loads_exactly_once(
    tmp_path: Path, s3_server_restartable: Any
) -> None:
    lake = Lake(tmp_path / "lake", s3=s3_server_restartable)
    config = tmp_path / "config.json"
    config.write_text(json.dumps(lake.config()), encoding="utf-8")
    target = Path(sys.executable).parent / "target-iceberg-nessie"
    with subprocess.Popen(
        [str(target), "--config", str(config)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        assert process.stdin is not None
        assert process.stdout is not None
        assert process.stderr is not None
        process.stdin.write(singer(range(1, 101), state=1))
        process.stdin.flush()
        assert json.loads(process.stdout.readline()) == {"upto": 1}, "the first checkpoint committed"
        lake.s3.stop()  # the server goes away mid-run
        process.stdin.write(singer(range(101, 201), state=2))
        process.stdin.close()
        stderr = process.stderr.read()
        process.wait(timeout=300)
    assert process.returncode != 0, "the run fails while its storage is down"
    assert "could not be reached; nothing of this checkpoint was committed" in stderr, stderr[-2000:]
    assert "Traceback" not in stderr, "a clear error, not a stack trace"
    assert process.returncode == 75, "retriable: the same run may succeed later (EX_TEMPFAIL)"
    lake.s3.start()
    assert ids_of(lake) == list(range(1, 101)), "the failed checkpoint left nothing visible"
    # The tap resumes from the committed state {"upto": 1}: it re-sends ids 101..200.
    rerun = run_target({**lake.config(), "run_id": "run-2"}, singer(range(101, 201), state=2))
    assert rerun.error is None, rerun.error
    assert ids_of(lake) == list(range(1, 201))
    lake.close()
