"""Deterministic generator of a Singer stream shaped like Stripe customers.

The output is JSON lines: for every stream a SCHEMA message first, then RECORD
messages (interleaved round-robin across streams), a STATE message every
``--state-every`` records and a final STATE message. The output depends only on
the arguments (and ``--seed``): no clock, no environment.

Example::

    python bench/generate_stream.py --records 1000000 --state-every 10000 \
        --streams 1 --output bench/out/customers_1m.singer
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import orjson

STREAM_BASE_NAME = "customers"
EPOCH_START = 1_577_836_800  # 2020-01-01T00:00:00Z
_MASK64 = (1 << 64) - 1
_BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_BASE62_PAIRS = [a + b for a in _BASE62 for b in _BASE62]  # 3844 two-digit strings
_ID_LOW_BITS = 19  # 64 + 19 = 83 bits < 62**14: every one of the 14 id characters varies
_WRITE_BUFFER = 1 << 20
_NULLABLE_STRING: dict[str, Any] = {"type": ["string", "null"]}


def _words(text: str, sep: str | None = None) -> tuple[str, ...]:
    return tuple(text.split(sep))


FIRST_NAMES = _words(
    "Jenny Liam Olivia Noah Emma Oliver Ava Elijah Sophia Lucas Mia Mateo Amelia Levi Harper Ezra "
    "Evelyn James Luna Asher Camila Leo Gianna Henry Elizabeth Aiden Eleanor Jack Ella Muhammad Zoe "
    "Hiroshi Aiko Chen Wei Priya Arjun Fatima Omar Ingrid Lars Sofia Diego Chloe Hugo Anouk Jan"
)
LAST_NAMES = _words(
    "Rosen Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez Lopez "
    "Gonzalez Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson White Harris "
    "Sanchez Clark Ramirez Lewis Robinson Walker Young Allen King Wright Scott Torres Nguyen Hill "
    "Tanaka Suzuki Müller Schmidt Dubois Rossi Kowalski Novak Jansen Okafor Haddad Kumar Silva"
)
DOMAINS = ("example.com", "mail.example.org", "corp.example.net", "shop.example.io", "inbox.example.dev")
DESCRIPTIONS = (
    "Customer for {email}",
    "Migrated from legacy billing system (account {n})",
    "Enterprise plan, annual invoicing, net-30 terms, contact finance before any change",
    "Self-serve signup via pricing page; trial converted to paid",
    "Reseller account managed by the partner team",
    "VIP support tier; escalations go to the account manager",
)
CITIES = (
    ("San Francisco", "US", "CA", "94107"),
    ("New York", "US", "NY", "10001"),
    ("Austin", "US", "TX", "73301"),
    ("London", "GB", None, "EC1A 1BB"),
    ("Berlin", "DE", None, "10115"),
    ("Paris", "FR", None, "75001"),
    ("Tokyo", "JP", "Tokyo", "100-0001"),
    ("Toronto", "CA", "ON", "M5H 2N2"),
    ("Sydney", "AU", "NSW", "2000"),
    ("São Paulo", "BR", "SP", "01000-000"),
    ("Amsterdam", "NL", None, "1011"),
    ("Dublin", "IE", None, "D02"),
)
STREETS = _words(
    "Market Street|Main St|High Street|Hauptstraße|Rue de Rivoli|King Street West|Elm Avenue|Oak Lane", "|"
)
CURRENCIES = ("usd", "usd", "usd", "eur", "eur", "gbp", "cad", "jpy", "aud", None)
TAX_EXEMPT = ("none", "none", "none", "none", "none", "none", "exempt", "reverse")
LOCALES = ("en", "en-US", "en-GB", "fr", "de", "es", "ja", "pt-BR", "nl")
METADATA_KEYS = ("plan", "crm_id", "segment", "source", "account_owner", "region", "signup_flow", "ref")
METADATA_VALUES = _words(
    "pro enterprise starter smb mid-market organic paid-search emea amer apac v2 partner self-serve"
)
ADDRESS_FIELDS = ("city", "country", "line1", "line2", "postal_code", "state")

# Probability that an optional part of a record is present (or that a flag is true).
P_EMAIL, P_NAME, P_PHONE, P_DESCRIPTION, P_ADDRESS, P_LINE2 = 0.93, 0.9, 0.7, 0.6, 0.85, 0.3
P_METADATA, P_LIVEMODE, P_BALANCE, P_DELINQUENT, P_DISCOUNT, P_ZULU = 0.95, 0.9, 0.35, 0.04, 0.2, 0.7


def customer_schema() -> dict[str, Any]:
    """JSON Schema of one customer record (shaped like Stripe's customer object)."""
    return {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "object": {"type": "string"},
            "created": {"type": "integer"},
            "livemode": {"type": "boolean"},
            "email": _NULLABLE_STRING,
            "name": _NULLABLE_STRING,
            "phone": _NULLABLE_STRING,
            "description": _NULLABLE_STRING,
            "balance": {"type": "integer"},
            "currency": _NULLABLE_STRING,
            "delinquent": {"type": "boolean"},
            "invoice_prefix": {"type": "string"},
            "next_invoice_sequence": {"type": "integer"},
            "tax_exempt": {"type": "string", "enum": ["none", "exempt", "reverse"]},
            "discount_rate": {"type": ["number", "null"]},
            "updated_at": {"type": "string", "format": "date-time"},
            "address": {
                "type": ["object", "null"],
                "properties": dict.fromkeys(ADDRESS_FIELDS, _NULLABLE_STRING),
            },
            "metadata": {"type": ["object", "null"]},
            "preferred_locales": {"type": "array", "items": {"type": "string"}},
        },
    }


def stream_names(count: int) -> list[str]:
    """``customers``, ``customers_2``, ``customers_3``, ..."""
    return [STREAM_BASE_NAME if i == 0 else f"{STREAM_BASE_NAME}_{i + 1}" for i in range(count)]


def customer_id(sequence: int, salt: int) -> str:
    """A unique, random-looking 14-character base-62 id.

    The high 64 bits are a bijective mix (splitmix64) of ``sequence + salt``, so ids never collide
    within a stream; the low bits are filler so that the leading characters vary too.
    """
    x = (sequence * 0x9E3779B97F4A7C15 + salt) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    x ^= x >> 31
    x = (x << _ID_LOW_BITS) | (x & ((1 << _ID_LOW_BITS) - 1))
    pairs = []
    for _ in range(7):
        x, pair = divmod(x, 3844)
        pairs.append(_BASE62_PAIRS[pair])
    return "cus_" + "".join(pairs)


def iso_utc(epoch: int, zulu: bool) -> str:
    """RFC 3339 timestamp, ending in ``Z`` or ``+00:00``."""
    t = time.gmtime(epoch)
    suffix = "Z" if zulu else "+00:00"
    date = f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}"
    return f"{date}T{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}{suffix}"


def make_record_factory(rng: random.Random, salt: int) -> Callable[[int, int], dict[str, Any]]:
    """Return ``make(sequence, created) -> record`` drawing from ``rng``."""
    rand = rng.random
    getrandbits = rng.getrandbits

    def pick(pool: tuple[Any, ...] | list[Any]) -> Any:
        return pool[int(rand() * len(pool))]

    def make(sequence: int, created: int) -> dict[str, Any]:
        first, last = pick(FIRST_NAMES), pick(LAST_NAMES)
        email: str | None = None
        if rand() < P_EMAIL:
            email = f"{first.lower()}.{last.lower()}{sequence % 997}@{pick(DOMAINS)}"
        description: str | None = None
        if rand() < P_DESCRIPTION:
            description = pick(DESCRIPTIONS).format(email=email or "unknown", n=getrandbits(24))
        address: dict[str, Any] | None = None
        if rand() < P_ADDRESS:
            city, country, state, postal = pick(CITIES)
            address = {
                "city": city,
                "country": country,
                "line1": f"{1 + int(rand() * 9999)} {pick(STREETS)}",
                "line2": f"Suite {1 + int(rand() * 999)}" if rand() < P_LINE2 else None,
                "postal_code": postal,
                "state": state,
            }
        metadata: dict[str, str] | None = None
        if rand() < P_METADATA:
            keys = rng.sample(METADATA_KEYS, int(rand() * 4))
            metadata = {key: f"{pick(METADATA_VALUES)}-{getrandbits(16):04x}" for key in keys}
        return {
            "id": customer_id(sequence, salt),
            "object": "customer",
            "created": created,
            "livemode": rand() < P_LIVEMODE,
            "email": email,
            "name": f"{first} {last}" if rand() < P_NAME else None,
            "phone": f"+1{2000000000 + int(rand() * 7999999999)}" if rand() < P_PHONE else None,
            "description": description,
            "balance": int((rand() - 0.7) * 200_000) if rand() < P_BALANCE else 0,
            "currency": pick(CURRENCIES),
            "delinquent": rand() < P_DELINQUENT,
            "invoice_prefix": f"{getrandbits(32):08X}",
            "next_invoice_sequence": 1 + int(rand() * 400),
            "tax_exempt": pick(TAX_EXEMPT),
            "discount_rate": round(rand() * 0.5, 4) if rand() < P_DISCOUNT else None,
            "updated_at": iso_utc(created + int(rand() * 7_776_000), rand() < P_ZULU),
            "address": address,
            "metadata": metadata,
            "preferred_locales": [pick(LOCALES) for _ in range(int(rand() * 3))],
        }

    return make


def generate(records: int, streams: int, state_every: int, seed: int) -> Iterator[bytes]:
    """Yield the serialized Singer messages, each ending with a newline."""
    dumps = orjson.dumps
    opt = orjson.OPT_APPEND_NEWLINE
    names = stream_names(streams)
    schema = customer_schema()
    for name in names:
        message = {"type": "SCHEMA", "stream": name, "schema": schema, "key_properties": ["id"]}
        yield dumps(message, option=opt)
    # Not for security: a seeded PRNG makes the output reproducible. String seeds are hashed with
    # SHA-512, so this does not depend on PYTHONHASHSEED.
    rngs = [random.Random(f"{seed}:{name}") for name in names]  # noqa: S311
    factories = [make_record_factory(rng, salt=rng.getrandbits(64)) for rng in rngs]
    created = [EPOCH_START] * streams
    emitted = [0] * streams
    bookmarks: dict[str, dict[str, int]] = {}

    def state() -> bytes:
        return dumps({"type": "STATE", "value": {"bookmarks": bookmarks}}, option=opt)

    for i in range(records):
        s = i % streams
        created[s] += 1 + int(rngs[s].random() * 90)
        record = factories[s](emitted[s], created[s])
        emitted[s] += 1
        bookmarks[names[s]] = {"created": created[s]}
        yield dumps({"type": "RECORD", "stream": names[s], "record": record}, option=opt)
        if state_every > 0 and (i + 1) % state_every == 0 and i + 1 < records:
            yield state()
    yield state()


def write_stream(out: BinaryIO, records: int, streams: int, state_every: int, seed: int) -> int:
    """Write the stream to ``out`` (give it a large buffer); return the number of bytes written."""
    write = out.write
    return sum(write(line) for line in generate(records, streams, state_every, seed))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=100_000, help="total RECORD messages (all streams)")
    parser.add_argument(
        "--state-every", type=int, default=10_000, help="emit STATE every N records (0: only at the end)"
    )
    parser.add_argument("--streams", type=int, default=1, help="number of interleaved streams")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--output", default="-", help="output file, or '-' for stdout (default)")
    args = parser.parse_args(argv)
    if args.records < 0 or args.streams < 1 or args.state_every < 0:
        parser.error("--records and --state-every must be >= 0 and --streams >= 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.output == "-":
        with open(sys.stdout.fileno(), "wb", buffering=_WRITE_BUFFER, closefd=False) as out:
            write_stream(out, args.records, args.streams, args.state_every, args.seed)
        return 0
    path = Path(args.output)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    started = time.perf_counter()
    with tmp.open("wb", buffering=_WRITE_BUFFER) as out:
        size = write_stream(out, args.records, args.streams, args.state_every, args.seed)
    tmp.replace(path)
    elapsed = time.perf_counter() - started
    print(
        f"wrote {args.records} records ({size / 1e6:.1f} MB, {size / max(args.records, 1):.0f} B/record) "
        f"to {path} in {elapsed:.1f}s",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
