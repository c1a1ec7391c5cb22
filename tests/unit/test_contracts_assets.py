"""The contracts under assets/: valid ODCS v3.0.2, compiled by the target, and true to what the taps emit.

The taps are not installed in this environment, so the field sets below were read from each tap's
package (the file named next to it) or from a real discovery run, and are recorded here; see
docs/contracts.md for how each was obtained. A new tap version is a new contract version.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from ingestion.registry import load_registry
from target_iceberg_nessie.contracts.model import ContractSet, ObjectContract, contract_files, read_contract

ASSETS = Path(__file__).resolve().parents[2] / "assets"
# <source>/v<M.m>/<object>.yaml, as registry/connectors.yaml's default_contracts name them
LAYOUT = re.compile(r"^[a-z0-9_]+/v(?P<major>[0-9]+)\.(?P<minor>[0-9]+)/[a-z0-9_]+\.yaml$")


@dataclass(frozen=True)
class TapStream:
    """What a tap emits for one stream: its name, key_properties and top-level properties."""

    stream: str
    key: tuple[str, ...]
    fields: frozenset[str]
    source_type: str  # the connector type (registry/connectors.yaml) the contract names
    enforcement: str


def _fields(names: str) -> frozenset[str]:
    return frozenset(names.split())


# tap-stripe 3.3.0: tap_stripe/schemas/<stream>.json (refs resolved by discover()); key_properties from
# STREAM_SDK_OBJECTS in tap_stripe/__init__.py.
STRIPE_CUSTOMERS = _fields("""
    account_balance address balance cards created currency customer_account default_card default_source
    delinquent description discount email id invoice_prefix invoice_settings livemode metadata name
    next_invoice_sequence object phone preferred_locales shipping sources subscriptions tax_exempt
    tax_ids tax_info tax_info_verification updated updated_by_event_type
""")
STRIPE_CHARGES = _fields("""
    amount amount_captured amount_refunded application application_fee application_fee_amount
    balance_transaction billing_details calculated_statement_descriptor captured card created currency
    customer description destination dispute disputed failure_code failure_message fraud_details id
    invoice livemode metadata object on_behalf_of order outcome paid payment_intent payment_method
    payment_method_details receipt_email receipt_number receipt_url refunded refunds review shipping
    source source_transfer statement_description statement_descriptor statement_descriptor_suffix status
    transfer_data transfer_group updated updated_by_event_type
""")
STRIPE_INVOICES = _fields("""
    account_country account_name account_tax_ids amount_due amount_paid amount_remaining application_fee
    application_fee_amount attempt_count attempted auto_advance automatic_tax billing billing_reason
    charge closed collection_method created currency custom_fields customer customer_account
    customer_address customer_email customer_name customer_phone customer_shipping customer_tax_exempt
    customer_tax_ids date default_payment_method default_source default_tax_rates description discount
    discounts due_date ending_balance finalized_at footer forgiven hosted_invoice_url id invoice_pdf
    last_finalization_error lines livemode metadata next_payment_attempt number object on_behalf_of paid
    paid_out_of_band payment payment_intent payment_settings period_end period_start
    post_payment_credit_notes_amount pre_payment_credit_notes_amount quote receipt_number
    starting_balance statement_description statement_descriptor status status_transitions subscription
    subscription_details subtotal tax tax_percent total total_discount_amounts total_tax_amounts
    transfer_data updated updated_by_event_type webhooks_delivered_at
""")
# meltano-tap-hubspot 0.10.1: DynamicIncrementalHubspotStream.schema in tap_hubspot/client.py (the
# portal's properties nest inside `properties`) plus the stream's replication_key, and primary_keys,
# in tap_hubspot/streams.py (ContactStream, CompanyStream, DealStream).
HUBSPOT_BASE = "id properties createdAt updatedAt archived"

EXPECTED: dict[str, TapStream] = {
    "stripe/v1.0/customers.yaml": TapStream("customers", ("id",), STRIPE_CUSTOMERS, "stripe", "quarantine"),
    "stripe/v1.0/charges.yaml": TapStream("charges", ("id",), STRIPE_CHARGES, "stripe", "quarantine"),
    "stripe/v1.0/invoices.yaml": TapStream("invoices", ("id",), STRIPE_INVOICES, "stripe", "quarantine"),
    "hubspot/v1.0/contacts.yaml": TapStream(
        "contacts", ("id",), _fields(f"{HUBSPOT_BASE} lastmodifieddate"), "hubspot", "quarantine"
    ),
    "hubspot/v1.0/companies.yaml": TapStream(
        "companies", ("id",), _fields(f"{HUBSPOT_BASE} hs_lastmodifieddate"), "hubspot", "quarantine"
    ),
    "hubspot/v1.0/deals.yaml": TapStream(
        "deals", ("id",), _fields(f"{HUBSPOT_BASE} hs_lastmodifieddate"), "hubspot", "quarantine"
    ),
    # meltanolabs-tap-postgres 0.10.0: `tap-postgres --discover` on the DDL in the contract's header
    # (PostgreSQL 15); stream <schema>-<table>, key = the table's primary key.
    "postgres/v1.0/orders.yaml": TapStream(
        "public-orders",
        ("order_id",),
        _fields("""
            amount currency customer_email customer_id is_gift item_count notes order_id order_uuid
            ordered_at shipped_on shipping_address status tax_amount updated_at
        """),
        "postgres",
        "fail",
    ),
    # pipelinewise-tap-mysql 1.6.0: discover_catalog() / schema_for_column() in
    # tap_mysql/discover_utils.py on the DDL in the contract's header; messages name the stream by its
    # tap_stream_id, <database>-<table> (seen in tests/e2e/test_tap_mysql.py), key = the PRI columns;
    # INCREMENTAL, so no _sdc_deleted_at (binlog.add_automatic_properties).
    "mysql/v1.0/orders.yaml": TapStream(
        "shop-orders",
        ("id",),
        _fields("""
            created_at currency customer_email customer_id id is_gift quantity shipped_on status total
            updated_at
        """),
        "mysql",
        "fail",
    ),
    # tap-google-sheets 3.1.2: get_sheet_schema_columns() in tap_google_sheets/schema.py (the header
    # row verbatim, plus __sdc_spreadsheet_id, __sdc_sheet_id, __sdc_row); key __sdc_row from
    # get_schemas() in tap_google_sheets/streams.py; stream = the sheet's title.
    "google_sheets/v1.0/sales_targets.yaml": TapStream(
        "sales_targets",
        ("__sdc_row",),
        _fields("""
            __sdc_row __sdc_sheet_id __sdc_spreadsheet_id approved comment owner_email owner_name
            quarter region target_eur updated_at
        """),
        "google_sheets",
        "quarantine",
    ),
    # tap-spreadsheets 1.1.2: SpreadsheetStream.schema in tap_spreadsheets/stream.py (snake_case header
    # of demo/data/customers.csv, plus _sdc_last_modified, _sdc_filename, _sdc_stream; _sdc_worksheet
    # dropped by the stream map of extractors/tap-spreadsheets.meltano.yml); key = primary_keys.
    "google_drive/v1.0/customers.yaml": TapStream(
        "drive_customers",
        ("customer_id",),
        _fields("""
            _sdc_filename _sdc_last_modified _sdc_stream country credit_limit customer_id email
            first_name is_active last_name notes phone segment signup_date
        """),
        "google_drive",
        "quarantine",
    ),
}

# Connector types the contracts name that registry/connectors.yaml does not declare yet; once one is
# registered, list its contracts in its `default_contracts` and drop it here.
NOT_YET_REGISTERED = frozenset({"stripe", "hubspot", "postgres", "mysql"})

ALL_FILES = sorted(str(p.relative_to(ASSETS)) for p in contract_files([ASSETS]))


@functools.cache  # validating a contract takes a while; each file is read once per session
def _only(file: str) -> ObjectContract:
    objects = read_contract(ASSETS / file)
    assert len(objects) == 1, f"{file}: one schema object per contract file"
    return objects[0]


def _document(file: str) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((ASSETS / file).read_text(encoding="utf-8"))
    return document


def test_every_required_contract_exists() -> None:
    missing = [file for file in EXPECTED if not (ASSETS / file).is_file()]
    assert not missing
    assert set(ALL_FILES) >= set(EXPECTED)


@pytest.mark.parametrize("file", ALL_FILES)
def test_contract_validates_and_compiles(file: str) -> None:
    """read_contract is what the target does: YAML, ODCS v3.0.2, our extensions, compiled rules."""
    obj = _only(file)
    assert obj.columns
    assert obj.primary_key, f"{file}: every platform table has a key"


@pytest.mark.parametrize("file", ALL_FILES)
def test_contract_lives_at_its_versioned_path(file: str) -> None:
    match = LAYOUT.match(file)
    assert match, f"{file} is not at <source>/v<M.m>/<object>.yaml"
    major, minor, *_ = _document(file)["version"].split(".")
    assert (match["major"], match["minor"]) == (major, minor), f"{file}: folder and `version` differ"


def test_assets_load_as_one_contract_set() -> None:
    """The target may be pointed at all of assets/: no stream has two contracts."""
    contracts = ContractSet.load([ASSETS])
    assert {expected.stream for expected in EXPECTED.values()} <= set(contracts.objects)


def test_contract_ids_are_unique() -> None:
    ids = [_document(file)["id"] for file in ALL_FILES]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("file", sorted(EXPECTED))
def test_contract_matches_what_the_tap_emits(file: str) -> None:
    expected, obj = EXPECTED[file], _only(file)
    assert obj.name == expected.stream
    assert set(obj.columns) == expected.fields
    assert obj.primary_key == expected.key
    assert (obj.source_type, obj.enforcement, obj.write_mode) == (
        expected.source_type,
        expected.enforcement,
        "append",
    )


@pytest.mark.parametrize("file", ALL_FILES)
def test_governance_is_complete(file: str) -> None:
    document, obj = _document(file), _only(file)
    for key in ("tenant", "domain", "dataProduct", "description", "team", "tags", "slaProperties"):
        assert document.get(key), f"{file}: `{key}` is missing"
    properties = obj.table_properties()
    for key in ("governance.owner", "governance.retention", "finops.cost-center", "classification.levels"):
        assert key in properties, f"{file}: no {key}"
    assert obj.source_object, f"{file}: customProperties source.object is missing"
    assert any(c.critical for c in obj.columns.values()), f"{file}: no critical data element"


@pytest.mark.parametrize("file", ALL_FILES)
def test_partition_columns_are_top_level_columns(file: str) -> None:
    obj = _only(file)
    for column, _transform in obj.partition_fields:
        assert column in obj.columns


def test_registry_default_contracts_exist() -> None:
    for connector_id, connector in load_registry().connectors.items():
        for path in connector.default_contracts:
            assert (ASSETS / path).is_file(), f"{connector_id}: default contract {path} does not exist"


def test_source_types_are_connector_types() -> None:
    registered = set(load_registry().connectors)
    for file in ALL_FILES:
        source_type = _only(file).source_type
        assert source_type in registered | NOT_YET_REGISTERED, f"{file}: unknown connector type {source_type}"
