from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingestion.redact import MASK, Redactor, is_secret_key

SECRET = "s3cr3t/p@ss w0rd+é"  # noqa: S105 - a test value to redact
TOKEN = "sk_live_51Hx9QeAbCdEfGh"  # noqa: S105 - a test value to redact


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


FORMS: dict[str, Callable[[str], str]] = {
    "raw": lambda v: v,
    "quote": quote,
    "quote_no_safe": lambda v: quote(v, safe=""),
    "quote_plus": quote_plus,
    "quote_lower_hex": lambda v: re.sub(r"%[0-9A-F]{2}", lambda m: m[0].lower(), quote(v, safe="")),
    "json": lambda v: json.dumps(v)[1:-1],
    "json_unicode": lambda v: json.dumps(v, ensure_ascii=False)[1:-1],
    "json_in_json": lambda v: json.dumps(json.dumps({"x": v}))[1:-1],
    "repr": lambda v: repr({"x": v}),
    "base64": _b64,
    "base64_unpadded": lambda v: _b64(v).rstrip("="),
    "base64_urlsafe": lambda v: base64.urlsafe_b64encode(v.encode()).decode(),
}


@pytest.mark.parametrize("form", sorted(FORMS))
@pytest.mark.parametrize("value", [SECRET, TOKEN])
def test_every_form_of_a_known_value_is_masked(form: str, value: str) -> None:
    encoded = FORMS[form](value)
    text = f"before {encoded} after"
    redacted = Redactor([SECRET, TOKEN]).text(text)
    assert encoded not in redacted
    assert value not in redacted
    assert redacted.startswith("before ")
    assert redacted.endswith(" after")
    assert MASK in redacted


@pytest.mark.parametrize("user", ["", "u", "us", "use", "user", "a.long.user.name"])
def test_basic_auth_base64_of_user_and_secret_is_masked_whole(user: str) -> None:
    header = _b64(f"{user}:{TOKEN}")
    for text in [f"Authorization: Basic {header}", f"sent creds {header} to the api", f"x={header}"]:
        redacted = Redactor([TOKEN]).text(text)
        assert header not in redacted
        assert header[-6:] not in redacted, "the whole blob goes, not just the value's characters"


def test_a_value_inside_a_longer_base64_blob_is_masked() -> None:
    blob = _b64(json.dumps({"client": "abc", "token": TOKEN, "scope": "read"}))
    assert Redactor([TOKEN]).text(f"state={blob};") == f"state={MASK};"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("postgres://loader:hunter2@db:5432/app", f"postgres://loader:{MASK}@db:5432/app"),
        ("mysql+pymysql://root:p%40ss@127.0.0.1/x?ssl=1", f"mysql+pymysql://root:{MASK}@127.0.0.1/x?ssl=1"),
        ("redis://:only-password@cache:6379/0", f"redis://:{MASK}@cache:6379/0"),
        ("connect 'https://u:pw@h/p' now", f"connect 'https://u:{MASK}@h/p' now"),
        ("https://user@example.com/x", "https://user@example.com/x"),
        ("http://host:8080/path?mail=a@b", "http://host:8080/path?mail=a@b"),
        ("https://example.com:443/", "https://example.com:443/"),
    ],
)
def test_passwords_in_urls_are_masked_without_knowing_them(text: str, expected: str) -> None:
    assert Redactor().text(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("password=abc other", f"password={MASK} other"),
        ("--db-password=abc --port=5", f"--db-password={MASK} --port=5"),
        ("TAP_STRIPE_CLIENT_SECRET=abc", f"TAP_STRIPE_CLIENT_SECRET={MASK}"),
        ("export MYSQL_PWD=xyz;", f"export MYSQL_PWD={MASK};"),
        ('{"clientSecret": "q\\"x", "id": 1}', f'{{"clientSecret": "{MASK}", "id": 1}}'),
        ("{'api_key': 'zz', 'name': 'n'}", f"{{'api_key': '{MASK}', 'name': 'n'}}"),
        ("refresh_token: rt1 expires: 5", f"refresh_token: {MASK} expires: 5"),
        ("Authorization: Bearer eyJhbGciOi.xyz", f"Authorization: Bearer {MASK}"),
        ("authorization=Basic dXNlcjpwdw==", f"authorization=Basic {MASK}"),
        ("host=db user=u password=pw dbname=x", f"host=db user=u password={MASK} dbname=x"),
        ("Server=db;Uid=u;Pwd=pw;Database=x", f"Server=db;Uid=u;Pwd={MASK};Database=x"),
        ("?access_key=AK&x=1", f"?access_key={MASK}&x=1"),
        ('"{\\"password\\": \\"zz\\"}"', f'"{{\\"password\\": \\"{MASK}\\"}}"'),
        ("private_key: '-----BEGIN'", f"private_key: '{MASK}'"),
        (
            "primary_key=id key_properties: [id] event=start",
            "primary_key=id key_properties: [id] event=start",
        ),
        ("the token was refreshed", "the token was refreshed"),
        ('{"password": null, "token": true}', '{"password": null, "token": true}'),
    ],
)
def test_values_under_secret_named_keys_are_masked_in_text(text: str, expected: str) -> None:
    assert Redactor().text(text) == expected


@pytest.mark.parametrize(
    ("key", "secret"),
    [
        ("password", True),
        ("db_passwd", True),
        ("clientSecret", True),
        ("client_secret", True),
        ("TAP_STRIPE_CLIENT_SECRET", True),
        ("apiKey", True),
        ("x-api-key", True),
        ("API_KEY", True),
        ("accessKeyId", True),
        ("private_key", True),
        ("refresh_token", True),
        ("Authorization", True),
        ("credentials", True),
        ("DATABASE_DSN", True),
        ("dsn", True),
        ("Set-Cookie", True),
        ("event", False),
        ("primary_key", False),
        ("key_properties", False),
        ("adsName", False),
        ("tenant", False),
    ],
)
def test_secret_named_keys(key: str, secret: bool) -> None:
    assert is_secret_key(key) is secret


def test_obj_recurses_and_masks_secret_named_keys_whatever_their_value() -> None:
    redactor = Redactor([TOKEN])
    document = {
        "config": {
            "api_key": "short",
            "clientSecret": {"nested": "x"},
            "password": 1234,
            "account": "acct_1",
        },
        "tokens": [TOKEN, {"refresh_token": None, "access_token": ""}, (TOKEN, 1)],
        "enabled": True,
        "note": f"Bearer {TOKEN}",
        5: Path("/tmp") / TOKEN,
    }
    assert redactor.obj(document) == {
        "config": {"api_key": MASK, "clientSecret": MASK, "password": MASK, "account": "acct_1"},
        "tokens": MASK,
        "enabled": True,
        "note": f"Bearer {MASK}",
        "5": f"/tmp/{MASK}",
    }
    assert redactor.obj({"list": [TOKEN, 1, None, 2.5]}) == {"list": [MASK, 1, None, 2.5]}


def test_numbers_that_print_as_a_secret_are_masked() -> None:
    assert Redactor(["12345678"]).obj({"pin": 12345678, "count": 3}) == {"pin": MASK, "count": 3}


def test_short_values_are_only_masked_under_secret_keys() -> None:
    redactor = Redactor(["abc"], min_length=4)
    assert redactor.text("abc is everywhere: abcdef") == "abc is everywhere: abcdef"
    assert redactor.text("password=abc") == f"password={MASK}"
    assert redactor.obj({"token": "abc", "name": "abc"}) == {"token": MASK, "name": "abc"}


def test_the_longest_value_wins() -> None:
    redactor = Redactor(["abcd", "abcdefgh"])
    assert redactor.text("xx abcdefgh yy abcd") == f"xx {MASK} yy {MASK}"


def test_added_values_rebuild_the_matcher() -> None:
    redactor = Redactor(["first-secret"])
    assert redactor.text("second-secret") == "second-secret"
    redactor.add(["second-secret"])
    assert redactor.text("first-secret second-secret") == f"{MASK} {MASK}"
    assert redactor.values == {"first-secret", "second-secret"}


def test_each_line_of_a_multiline_secret_is_masked_alone() -> None:
    body = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7"
    key = f"-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----"
    redacted = Redactor([key]).text(f"parsing line: {body}")
    assert body not in redacted


def test_masking_cannot_assemble_a_value_that_contains_the_mask() -> None:
    # Masking "xxxx" in "axxxxb" writes "a***b", itself a secret: redaction repeats until stable.
    assert "a***b" not in Redactor(["xxxx", "a***b"]).text("axxxxb")


def test_many_values_in_one_matcher() -> None:
    values = [f"secret-value-{i:04d}-{i * 7919 % 10007:05d}" for i in range(500)]
    redactor = Redactor(values)
    line = " | ".join(values[::50])
    redacted = redactor.text(line)
    assert all(value not in redacted for value in values)
    assert redacted == " | ".join([MASK] * 10)


_secret_values = st.text(min_size=4, max_size=40)
_context = st.text(max_size=30)


@settings(max_examples=300, deadline=None)
@given(value=_secret_values, before=_context, after=_context, form=st.sampled_from(sorted(FORMS)))
def test_a_redacted_text_never_contains_the_value(value: str, before: str, after: str, form: str) -> None:
    try:
        encoded = FORMS[form](value)
    except UnicodeEncodeError:  # lone surrogates have no UTF-8 (so no base64) form
        encoded = value
    redacted = Redactor([value]).text(before + encoded + after)
    assert value not in redacted
    assert encoded not in redacted


@settings(max_examples=200, deadline=None)
@given(
    value=st.text(alphabet=st.characters(codec="utf-8"), min_size=7, max_size=40),
    prefix=st.text(alphabet=st.characters(codec="utf-8"), max_size=12),
    suffix=st.text(alphabet=st.characters(codec="utf-8"), max_size=12),
)
def test_a_value_base64_encoded_inside_anything_is_masked(value: str, prefix: str, suffix: str) -> None:
    blob = _b64(prefix + value + suffix)
    redacted = Redactor([value]).text(f"data {blob} end")
    assert blob not in redacted
    assert redacted == f"data {MASK} end"
