"""A local Stripe API (https://docs.stripe.com/api), as much of it as tap-stripe 3.3.0 calls.

Served: GET /v1/accounts/<id> (the tap's key check), the list endpoints of customers, charges and
invoices, and GET /v1/events. Faithful to the public docs in what the tap relies on:
- auth: the secret key as HTTP basic user or Bearer token; a wrong or missing key is a 401 with
  Stripe's error document, a `Stripe-Account` header naming another account a 403;
- list objects: {"object": "list", "data", "has_more", "url"}, newest first, `limit` 1-100
  (default 10), `starting_after` / `ending_before` cursors, `created[gt|gte|lt|lte]` filters,
  `expand[]` of the expandable fields only (anything else is a 400, as Stripe answers);
- events: `type` with a `*` wildcard (or `types[]`), the same filters; events older than 30 days
  are not listed (Stripe keeps them 30 days). Every change made through this class records the
  event Stripe would send (`customer.created`, `customer.updated`, `charge.refunded`, ...) with
  the object as it is after the change;
- API version 2022-11-15 (the tap's): charges' `refunds` and customers' `sources`,
  `subscriptions`, `tax_ids` appear only when expanded.

The data is deterministic (seeded from fixed timestamps) and mutable: tests add and change objects
between runs, then compare the lake with `objects(...)`.
"""

from __future__ import annotations

import base64
import copy
import itertools
import re
import threading
import time
from typing import Any, ClassVar

from fakes.base import ApiError, FakeApi, Fault, Request, Response

SECRET_KEY = "sk_test_51FakeKeyForTheLocalStripeApi000000000000"  # noqa: S105 - the fake's own test key
ACCOUNT_ID = "acct_1FakeLocalAcct00"
API_VERSION = "2022-11-15"
SEED_START = 1740787200  # 2025-03-01T00:00:00Z: the seeded objects are created from here on
EVENT_RETENTION_SECONDS = 30 * 86400
LIST_PATHS = {"/v1/customers": "customer", "/v1/charges": "charge", "/v1/invoices": "invoice"}
# What `expand[]` may name per list (API version 2022-11-15).
EXPANDABLE = {
    "customer": {"data.sources", "data.subscriptions", "data.tax_ids", "data.default_source"},
    "charge": {"data.refunds", "data.customer", "data.invoice", "data.balance_transaction"},
    "invoice": {"data.customer", "data.charge", "data.subscription", "data.payment_intent"},
    "event": set(),
}
ID_PREFIX = {"customer": "cus", "charge": "ch", "invoice": "in", "event": "evt", "refund": "re"}


def _stripe_error(
    status: int, message: str, error_type: str = "invalid_request_error", **extra: Any
) -> ApiError:
    return ApiError(
        status, {"error": {"message": message, "type": error_type, **extra}}, {"Request-Id": "req_fake"}
    )


def _array_param(request: Request, name: str) -> list[str]:
    """A form-encoded array: `name[]=a&name[]=b` or, as stripe-python sends it, `name[0]=a&name[1]=b`."""
    pattern = re.compile(rf"^{re.escape(name)}\[(\d*)\]$")
    keyed = [(m.group(1), values) for key, values in request.query.items() if (m := pattern.match(key))]
    keyed.sort(key=lambda item: int(item[0] or -1))
    return [value for _, values in keyed for value in values]


class FakeStripe(FakeApi):
    hosts: ClassVar[tuple[str, ...]] = ("api.stripe.com",)

    def __init__(self, *, customers: int = 150, charges: int = 260, invoices: int = 80) -> None:
        super().__init__()
        self.secret_key = SECRET_KEY
        self.account_id = ACCOUNT_ID
        self._data_lock = threading.RLock()
        self._serial = itertools.count(1)
        self._objects: dict[str, dict[str, dict[str, Any]]] = {
            k: {} for k in ("customer", "charge", "invoice")
        }
        self.events: list[dict[str, Any]] = []
        self._seed(customers, charges, invoices)

    # --- seed data ------------------------------------------------------------------------------
    def _new_id(self, kind: str) -> str:
        return f"{ID_PREFIX[kind]}_Fk{next(self._serial):010d}"

    def _seed(self, customers: int, charges: int, invoices: int) -> None:
        customer_ids = [self._put(self._customer(SEED_START + i * 3 * 3600, i)) for i in range(customers)]
        for i in range(charges):  # every 4 hours: a 30-day window holds 180, so it pages
            charge = self._charge(SEED_START + 3600 + i * 4 * 3600, customer_ids[i % len(customer_ids)], i)
            if i % 7 == 3:  # some refunded in part, one or two refunds each
                for n in range(1 + i % 2):
                    self._add_refund(charge, 500 + 100 * n, charge["created"] + 86400 * (n + 1))
            self._put(charge)
        for i in range(invoices):
            self._put(
                self._invoice(SEED_START + 7200 + i * 12 * 3600, customer_ids[i % len(customer_ids)], i)
            )

    def _put(self, obj: dict[str, Any]) -> str:
        self._objects[obj["object"]][obj["id"]] = obj
        return str(obj["id"])

    def _customer(self, created: int, n: int) -> dict[str, Any]:
        return {
            "id": self._new_id("customer"),
            "object": "customer",
            "address": {
                "city": f"City {n % 12}",
                "country": ["US", "DE", "FR"][n % 3],
                "line1": f"{n} Main St",
                "line2": None,
                "postal_code": f"{10000 + n}",
                "state": None,
            },
            "balance": -100 * (n % 4),
            "created": created,
            "currency": "usd",
            "default_source": None,
            "delinquent": n % 10 == 0,
            "description": f"Customer {n}",
            "discount": None,
            "email": f"customer{n}@example.com",
            "invoice_prefix": f"FK{n:04d}",
            "invoice_settings": {"custom_fields": None, "default_payment_method": None, "footer": None},
            "livemode": False,
            "metadata": {"tier": ["gold", "silver", "bronze"][n % 3]},
            "name": f"Customer {n}",
            "next_invoice_sequence": 1 + n % 5,
            "phone": f"+1555{n:07d}" if n % 2 else None,
            "preferred_locales": ["en"] if n % 4 == 0 else [],
            "shipping": None,
            "tax_exempt": "none",
            "test_clock": None,
        }

    def _charge(self, created: int, customer: str, n: int) -> dict[str, Any]:
        amount = 1000 + (n * 137) % 9000
        failed = n % 11 == 5
        return {
            "id": self._new_id("charge"),
            "object": "charge",
            "amount": amount,
            "amount_captured": 0 if failed else amount,
            "amount_refunded": 0,
            "application": None,
            "application_fee": None,
            "application_fee_amount": None,
            "balance_transaction": None if failed else f"txn_Fk{n:010d}",
            "billing_details": {
                "address": {
                    "city": None,
                    "country": "US",
                    "line1": None,
                    "line2": None,
                    "postal_code": f"{94000 + n % 100}",
                    "state": None,
                },
                "email": None,
                "name": f"Card holder {n}",
                "phone": None,
            },
            "calculated_statement_descriptor": "FAKE SHOP",
            "captured": not failed,
            "created": created,
            "currency": ["usd", "eur"][n % 2],
            "customer": customer,
            "description": f"Order {n}",
            "disputed": False,
            "failure_code": "card_declined" if failed else None,
            "failure_message": "Your card was declined." if failed else None,
            "fraud_details": {},
            "invoice": None,
            "livemode": False,
            "metadata": {"order": str(n)},
            "on_behalf_of": None,
            "outcome": {
                "network_status": "declined_by_network" if failed else "approved_by_network",
                "reason": "generic_decline" if failed else None,
                "risk_level": "normal",
                "risk_score": n % 100,
                "seller_message": "Payment complete.",
                "type": "issuer_declined" if failed else "authorized",
            },
            "paid": not failed,
            "payment_intent": f"pi_Fk{n:010d}",
            "payment_method": f"pm_Fk{n:010d}",
            "payment_method_details": {
                "card": {
                    "brand": "visa",
                    "country": "US",
                    "exp_month": 1 + n % 12,
                    "exp_year": 2030,
                    "funding": "credit",
                    "last4": "4242",
                },
                "type": "card",
            },
            "receipt_email": f"customer{n}@example.com",
            "receipt_number": None,
            "receipt_url": f"https://pay.stripe.com/receipts/fake/{n}",
            "refunded": False,
            "refunds": {"object": "list", "data": [], "has_more": False, "total_count": 0, "url": ""},
            "review": None,
            "shipping": None,
            "source_transfer": None,
            "statement_descriptor": None,
            "statement_descriptor_suffix": None,
            "status": "failed" if failed else "succeeded",
            "transfer_data": None,
            "transfer_group": None,
        }

    def _add_refund(self, charge: dict[str, Any], amount: int, created: int) -> dict[str, Any]:
        refund = {
            "id": self._new_id("refund"),
            "object": "refund",
            "amount": amount,
            "balance_transaction": f"txn_Fkre{next(self._serial):06d}",
            "charge": charge["id"],
            "created": created,
            "currency": charge["currency"],
            "metadata": {},
            "payment_intent": charge["payment_intent"],
            "reason": "requested_by_customer",
            "receipt_number": None,
            "source_transfer_reversal": None,
            "status": "succeeded",
            "transfer_reversal": None,
        }
        refunds = charge["refunds"]
        refunds["data"].insert(0, refund)
        refunds["total_count"] = len(refunds["data"])
        refunds["url"] = f"/v1/charges/{charge['id']}/refunds"
        charge["amount_refunded"] += amount
        charge["refunded"] = charge["amount_refunded"] >= charge["amount"]
        return refund

    def _invoice(self, created: int, customer: str, n: int) -> dict[str, Any]:
        invoice_id = self._new_id("invoice")
        paid = n % 3 != 0
        total = 2000 + 250 * (n % 8)
        lines = [
            {
                "id": f"il_Fk{n:06d}{k}",
                "object": "line_item",
                "amount": total // 2,
                "currency": "usd",
                "description": f"Line {k}",
                "quantity": 1,
                "type": "invoiceitem",
                "livemode": False,
                "metadata": {},
                "period": {"end": created, "start": created},
            }
            for k in range(2)
        ]
        return {
            "id": invoice_id,
            "object": "invoice",
            "account_country": "US",
            "account_name": "Fake Shop",
            "amount_due": total,
            "amount_paid": total if paid else 0,
            "amount_remaining": 0 if paid else total,
            "attempt_count": 1 if paid else 0,
            "attempted": paid,
            "auto_advance": not paid,
            "billing_reason": "manual",
            "charge": None,
            "collection_method": "charge_automatically",
            "created": created,
            "currency": "usd",
            "customer": customer,
            "customer_email": f"customer{n % 150}@example.com",
            "customer_name": f"Customer {n % 150}",
            "default_payment_method": None,
            "description": None,
            "discount": None,
            "discounts": [],
            "due_date": None,
            "ending_balance": 0 if paid else None,
            "hosted_invoice_url": f"https://invoice.stripe.com/i/fake/{n}",
            "invoice_pdf": f"https://pay.stripe.com/invoice/fake/{n}/pdf",
            "lines": {
                "object": "list",
                "data": lines,
                "has_more": False,
                "total_count": len(lines),
                "url": f"/v1/invoices/{invoice_id}/lines",
            },
            "livemode": False,
            "metadata": {},
            "number": f"FK-{n:05d}",
            "paid": paid,
            "period_end": created,
            "period_start": created,
            "status": "paid" if paid else "open",
            "subtotal": total,
            "tax": None,
            "total": total,
            "total_tax_amounts": [],
            "webhooks_delivered_at": created,
        }

    # --- what tests change ----------------------------------------------------------------------
    def _now(self) -> int:
        return int(time.time())

    def _event(self, event_type: str, obj: dict[str, Any], previous: dict[str, Any] | None = None) -> None:
        rendered = self._render(obj, expand=set())
        self.events.append(
            {
                "id": self._new_id("event"),
                "object": "event",
                "api_version": API_VERSION,
                "created": self._now(),
                "data": {"object": rendered, **({"previous_attributes": previous} if previous else {})},
                "livemode": False,
                "pending_webhooks": 0,
                "request": {"id": None, "idempotency_key": None},
                "type": event_type,
            }
        )

    def add_customer(self, **fields: Any) -> dict[str, Any]:
        with self._data_lock:
            customer = self._customer(self._now(), len(self._objects["customer"]))
            customer.update(fields)
            self._put(customer)
            self._event("customer.created", customer)
            return copy.deepcopy(customer)

    def update_customer(self, customer_id: str, **fields: Any) -> dict[str, Any]:
        with self._data_lock:
            customer = self._objects["customer"][customer_id]
            previous = {k: customer.get(k) for k in fields}
            customer.update(fields)
            self._event("customer.updated", customer, previous)
            return copy.deepcopy(customer)

    def add_charge(self, customer_id: str, **fields: Any) -> dict[str, Any]:
        with self._data_lock:
            charge = self._charge(self._now(), customer_id, len(self._objects["charge"]))
            charge.update(fields)
            self._put(charge)
            self._event("charge.succeeded", charge)
            return copy.deepcopy(charge)

    def refund_charge(self, charge_id: str, amount: int) -> dict[str, Any]:
        with self._data_lock:
            charge = self._objects["charge"][charge_id]
            previous = {"amount_refunded": charge["amount_refunded"], "refunded": charge["refunded"]}
            self._add_refund(charge, amount, self._now())
            self._event("charge.refunded", charge, previous)
            return copy.deepcopy(charge)

    def pay_invoice(self, invoice_id: str) -> dict[str, Any]:
        with self._data_lock:
            invoice = self._objects["invoice"][invoice_id]
            previous = {"status": invoice["status"], "paid": invoice["paid"]}
            invoice.update(
                status="paid",
                paid=True,
                amount_paid=invoice["amount_due"],
                amount_remaining=0,
                attempted=True,
                attempt_count=invoice["attempt_count"] + 1,
                auto_advance=False,
                ending_balance=0,
            )
            self._event("invoice.paid", invoice, previous)
            return copy.deepcopy(invoice)

    def objects(self, kind: str) -> list[dict[str, Any]]:
        """The current objects of `kind` (customer, charge, invoice), oldest first, as stored."""
        with self._data_lock:
            return [
                copy.deepcopy(o) for o in sorted(self._objects[kind].values(), key=lambda o: o["created"])
            ]

    def events_of(self, prefix: str) -> list[dict[str, Any]]:
        with self._data_lock:
            return [copy.deepcopy(e) for e in self.events if e["type"].startswith(prefix)]

    # --- serving --------------------------------------------------------------------------------
    def fault_body(self, fault: Fault) -> Any:
        if fault.body is not None:
            return fault.body
        if fault.status == 429:
            return {
                "error": {
                    "code": "rate_limit",
                    "type": "invalid_request_error",
                    "message": "Request rate limit exceeded. Learn more about rate limits here "
                    "https://stripe.com/docs/rate-limits.",
                }
            }
        if fault.status == 401:
            return _stripe_error(401, "Invalid API Key provided: sk_test_****0000").response.body
        return {"error": {"type": "api_error", "message": "An unknown error occurred"}}

    def handle(self, request: Request) -> Response:
        self._authenticate(request)
        if request.method != "GET":
            raise _stripe_error(405, f"Unrecognized request URL ({request.method}: {request.path}).")
        if request.path.startswith("/v1/accounts/"):
            return self._account(request.path.removeprefix("/v1/accounts/"))
        if request.path == "/v1/events":
            return self._list(request, "event")
        kind = LIST_PATHS.get(request.path)
        if kind is None:
            raise _stripe_error(
                404,
                f"Unrecognized request URL (GET: {request.path}). Please see https://stripe.com/docs "
                "or we can help at https://support.stripe.com/.",
            )
        return self._list(request, kind)

    def _authenticate(self, request: Request) -> None:
        header = request.headers.get("authorization", "")
        key = ""
        if header.startswith("Bearer "):
            key = header.removeprefix("Bearer ")
        elif header.startswith("Basic "):
            key = base64.b64decode(header.removeprefix("Basic ")).decode().split(":", 1)[0]
        if not key:
            raise _stripe_error(
                401,
                "You did not provide an API key. You need to provide your API key in the "
                "Authorization header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY').",
            )
        if key != self.secret_key:
            raise _stripe_error(401, f"Invalid API Key provided: {key[:8]}{'*' * 8}{key[-4:]}")
        account = request.headers.get("stripe-account")
        if account is not None and account != self.account_id:
            raise _stripe_error(
                403,
                f"The provided key '{key[:8]}{'*' * 8}{key[-4:]}' does not have access to "
                f"account '{account}' (or that account does not exist).",
                "invalid_request_error",
                code="account_invalid",
            )

    def _account(self, account_id: str) -> Response:
        if account_id != self.account_id:
            raise _stripe_error(
                403,
                f"The provided key does not have access to account '{account_id}' "
                "(or that account does not exist).",
                code="account_invalid",
            )
        return Response(
            body={
                "id": self.account_id,
                "object": "account",
                "business_type": "company",
                "country": "US",
                "default_currency": "usd",
                "email": "owner@example.com",
                "type": "standard",
                "settings": {"dashboard": {"display_name": "Fake Shop", "timezone": "Etc/UTC"}},
            }
        )

    def _list(self, request: Request, kind: str) -> Response:
        limit_text = request.arg("limit", "10") or "10"
        if not limit_text.isdigit() or not 1 <= int(limit_text) <= 100:
            raise _stripe_error(400, "Invalid integer: limit must be between 1 and 100.", param="limit")
        limit = int(limit_text)
        expand = set(_array_param(request, "expand"))
        not_expandable = sorted(expand - EXPANDABLE[kind])
        if not_expandable:
            raise _stripe_error(
                400,
                f"This property cannot be expanded ({not_expandable[0].removeprefix('data.')}).",
                param="expand",
            )
        with self._data_lock:
            pool = self.events if kind == "event" else list(self._objects[kind].values())
            items = [o for o in pool if self._matches(o, request, kind)]
            items.sort(key=lambda o: (o["created"], o["id"]), reverse=True)  # newest first
            start = 0
            if (after := request.arg("starting_after")) is not None:
                start = self._position(items, after, "starting_after") + 1
            elif (before := request.arg("ending_before")) is not None:
                end = self._position(items, before, "ending_before")
                start = max(0, end - limit)
                items = items[:end]
            page = items[start : start + limit]
            data = [self._render(o, expand) for o in page]
        url = "/v1/events" if kind == "event" else next(p for p, k in LIST_PATHS.items() if k == kind)
        return Response(
            body={"object": "list", "data": data, "has_more": start + limit < len(items), "url": url}
        )

    def _position(self, items: list[dict[str, Any]], object_id: str, param: str) -> int:
        for index, item in enumerate(items):
            if item["id"] == object_id:
                return index
        raise _stripe_error(400, f"No such object: '{object_id}'", param=param, code="resource_missing")

    def _matches(self, obj: dict[str, Any], request: Request, kind: str) -> bool:
        created = int(obj["created"])
        for op, test in (
            ("gt", created.__gt__),
            ("gte", created.__ge__),
            ("lt", created.__lt__),
            ("lte", created.__le__),
        ):
            value = request.arg(f"created[{op}]")
            if value is not None:
                if not value.lstrip("-").isdigit():
                    raise _stripe_error(400, f"Invalid integer: {value}", param=f"created[{op}]")
                if not test(int(value)):
                    return False
        if kind != "event":
            return True
        if created < self._now() - EVENT_RETENTION_SECONDS:
            return False
        types = _array_param(request, "types") or ([t] if (t := request.arg("type")) else [])
        return not types or any(
            obj["type"].startswith(t[:-1]) if t.endswith("*") else obj["type"] == t for t in types
        )

    def _render(self, obj: dict[str, Any], expand: set[str]) -> dict[str, Any]:
        """The object as API version 2022-11-15 sends it: expandable lists only when expanded."""
        rendered = copy.deepcopy(obj)
        if obj["object"] == "charge" and "data.refunds" not in expand:
            rendered.pop("refunds", None)
        if obj["object"] == "customer":
            for name in ("sources", "subscriptions", "tax_ids"):
                if f"data.{name}" in expand:
                    rendered[name] = {
                        "object": "list",
                        "data": [],
                        "has_more": False,
                        "total_count": 0,
                        "url": f"/v1/customers/{obj['id']}/{name}",
                    }
        return rendered
