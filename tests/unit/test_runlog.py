from __future__ import annotations

import base64
import io
import json
import threading
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest

from ingestion.redact import MASK, Redactor
from ingestion.runlog import MAX_LINE_CHARS, RunLog
from ingestion.secrets import TenantSecrets

STRIPE_KEY = "sk_live_51Hx9QeAbCdEfGh"
DB_PASSWORD = "p@ss/w0rd+&=é"  # noqa: S105 - a test value to redact
HUBSPOT_TOKEN = "pat-na1-0f3e1b2c-7d4e"  # noqa: S105 - a test value to redact
ENV_TOKEN = "env-token-9f8e7d6c"  # noqa: S105 - a test value to redact


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _run_log(tmp_path: Path, redactor: Redactor, console: io.StringIO | None = None) -> RunLog:
    return RunLog(
        tmp_path / "logs" / "acme" / "orders" / "run-1.jsonl",
        tenant="acme",
        job="orders",
        run_id="run-1",
        redactor=redactor,
        console=console is not None,
        console_stream=console,
    )


def test_events_are_json_lines_with_the_run_ids_first(tmp_path: Path) -> None:
    console = io.StringIO()
    with _run_log(tmp_path, Redactor(), console) as log:
        log.info("started", streams=["orders"], attempt=1)
        log.warning("slow", seconds=2.5)
        log.log("debug", "detail", path=Path("/x"))
    events = _lines(log.path)
    assert [list(e)[:6] for e in events] == [["ts", "level", "tenant", "job", "run_id", "event"]] * 3
    assert events[0] | {"ts": None} == {
        "ts": None,
        "level": "info",
        "tenant": "acme",
        "job": "orders",
        "run_id": "run-1",
        "event": "started",
        "streams": ["orders"],
        "attempt": 1,
    }
    assert events[0]["ts"].endswith("Z")
    assert [e["level"] for e in events] == ["info", "warning", "debug"]
    assert events[2]["path"] == "/x"
    rendered = console.getvalue()
    assert "started" in rendered
    assert "slow" in rendered
    assert not rendered.lstrip().startswith("{"), "the console is for people, not JSON"


def test_the_run_log_ids_cannot_be_overridden_by_fields(tmp_path: Path) -> None:
    with _run_log(tmp_path, Redactor()) as log:
        with pytest.raises(ValueError, match="tenant"):
            log.info("x", tenant="other")
        with pytest.raises(ValueError, match="log level"):
            log.log("loud", "x")


def test_meltano_json_lines_keep_their_fields_and_level(tmp_path: Path) -> None:
    meltano = {
        "event": "Extractor failed",
        "level": "error",
        "timestamp": "2026-01-01T00:00:00Z",
        "string_id": "tap-stripe",
        "config": {"client_secret": "abc", "start_date": "2026-01-01"},
    }
    with _run_log(tmp_path, Redactor()) as log:
        log.pipe("meltano", json.dumps(meltano) + "\n")
        log.pipe("tap-stripe", "{not json at all\r\n")
        log.pipe("tap-stripe", '{"message": "Retrying", "levelname": "WARN"}')
    first, second, third = _lines(log.path)
    assert first["event"] == "output"
    assert first["source"] == "meltano"
    assert first["level"] == "error"
    assert first["line"] == "Extractor failed"
    assert first["fields"] == {
        "timestamp": "2026-01-01T00:00:00Z",
        "string_id": "tap-stripe",
        "config": {"client_secret": MASK, "start_date": "2026-01-01"},
    }
    assert second["line"] == "{not json at all"
    assert second["level"] == "info"
    assert "fields" not in second
    assert (third["line"], third["level"]) == ("Retrying", "warning")


def test_a_long_line_is_cut_after_redaction(tmp_path: Path) -> None:
    with _run_log(tmp_path, Redactor([STRIPE_KEY])) as log:
        log.pipe("tap", "x" * (MAX_LINE_CHARS - 5) + STRIPE_KEY + "tail")
    (event,) = _lines(log.path)
    assert STRIPE_KEY[:5] not in event["line"], "the cut never leaves half a secret"
    assert event["line"].startswith("x" * (MAX_LINE_CHARS - 5) + MASK)
    assert len(event["line"]) < MAX_LINE_CHARS + 50


def test_logging_after_close_is_an_error(tmp_path: Path) -> None:
    log = _run_log(tmp_path, Redactor())
    log.close()
    log.close()
    with pytest.raises(ValueError, match="is closed"):
        log.info("late")


def test_lines_piped_from_threads_are_never_interleaved(tmp_path: Path) -> None:
    redactor = Redactor([STRIPE_KEY])
    with _run_log(tmp_path, redactor) as log:

        def pipe(source: str) -> None:
            for number in range(300):
                log.pipe(source, f"{source} line {number} key={STRIPE_KEY} " + "y" * 500)

        threads = [threading.Thread(target=pipe, args=(f"source{i}",)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    events = _lines(log.path)
    assert len(events) == 1200
    for i in range(4):
        numbers = [int(e["line"].split()[2]) for e in events if e["source"] == f"source{i}"]
        assert numbers == list(range(300)), "each source's lines stay whole and in order"
    assert STRIPE_KEY not in log.path.read_text(encoding="utf-8")


def _forms(value: str) -> list[str]:
    raw = value.encode()
    return [
        value,
        quote(value),
        quote(value, safe=""),
        quote_plus(value),
        json.dumps(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
        base64.b64encode(raw).decode(),
        base64.b64encode(raw).decode().rstrip("="),
        base64.urlsafe_b64encode(raw).decode(),
        base64.b64encode(b"user:" + raw).decode(),
    ]


def test_no_secret_form_reaches_the_log_file_or_the_console(tmp_path: Path) -> None:
    root = tmp_path / "secrets"
    (root / "acme").mkdir(parents=True)
    (root / "acme" / "stripe.json").write_text(json.dumps({"api_key": STRIPE_KEY}), encoding="utf-8")
    (root / "acme" / "db.env").write_text(f"DB_PASSWORD='{DB_PASSWORD}'\n", encoding="utf-8")
    (root / "acme" / "hubspot_token").write_text(HUBSPOT_TOKEN + "\n", encoding="utf-8")
    for file in (root / "acme").iterdir():
        file.chmod(0o600)
    secrets = TenantSecrets.load(root, "acme", environ={"INGEST_SECRET_ACME__ENV_TOKEN": ENV_TOKEN})
    values = [STRIPE_KEY, DB_PASSWORD, HUBSPOT_TOKEN, ENV_TOKEN]
    assert sorted(secrets.values()) == sorted(values)
    console = io.StringIO()
    log = _run_log(tmp_path, Redactor(secrets.values()), console)

    settings = secrets.resolve({"client_secret": "api_key", "password": "DB_PASSWORD"})
    log.info("resolved", settings=settings, env={"TAP_STRIPE_CLIENT_SECRET": STRIPE_KEY})
    for value in values:
        for form in _forms(value):
            log.info(f"event text {form} here", field=form, nested={"list": [form, {"deep": form}]})
            log.pipe("tap-stripe", f"INFO stderr line with {form}")
            log.pipe("meltano", json.dumps({"event": f"tap said {form}", "level": "info", "raw": form}))
            log.pipe("meltano", json.dumps({"event": json.dumps({"inner": form})}))
        log.pipe("target", f"postgres://loader:{value}@db:5432/app")
        log.pipe("target", f"postgres://loader:{quote(value, safe='')}@db:5432/app")
        log.pipe("tap-hubspot", f"Authorization: Bearer {value}")
        try:
            raise RuntimeError(f"connection refused for {value!r}")
        except RuntimeError:
            log.exception("failed", attempt=1)
    log.pipe("tap", "password=short1 token: x")
    log.close()

    written = log.path.read_text(encoding="utf-8")
    shown = console.getvalue()
    assert written.count("\n") == len(_lines(log.path)) > 4 * 10 * 3
    for value in values:
        for form in _forms(value):
            assert form not in written
            assert form not in shown
    assert "short1" not in written
    assert MASK in written
    assert '"tenant": "acme"' in written
