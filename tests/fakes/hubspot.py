"""A local HubSpot CRM API (https://developers.hubspot.com/docs/api/crm), as much of it as
meltano-tap-hubspot 0.10.1 calls for contacts, companies and deals.

Served, faithful to the public docs in what the tap relies on:
- auth: a private app's access token as `Authorization: Bearer`, or OAuth: POST /oauth/v1/token
  (grant_type=refresh_token, form-encoded) hands out short-lived access tokens. A wrong token is a
  401 with HubSpot's error document (category INVALID_AUTHENTICATION);
- GET /crm/v3/properties/<object>: the portal's property definitions. The token has the scopes of
  contacts, companies and deals only; every other object type answers 403 MISSING_SCOPES;
- GET /crm/v3/objects/<object>: `limit` (at most 100), `after` cursors (paging.next.after),
  `properties` (comma-separated; only those are returned, null when unset), `archived`;
- POST /crm/v3/objects/<object>/search: `filterGroups` (OR of groups, AND of filters; EQ, NEQ,
  GT, GTE, LT, LTE, HAS_PROPERTY, NOT_HAS_PROPERTY; datetime values in epoch milliseconds or
  ISO 8601), `sorts` (one property, ASCENDING or DESCENDING), `limit` (at most 200), `after`
  (an offset), `properties`; at most 10,000 results per query (a later `after` is a 400);
- 429 (errorType RATE_LIMIT) for injected rate limits, in HubSpot's format.

Every property value is text, as HubSpot sends it. The data is deterministic and mutable: tests
add and update objects between runs and compare the lake with `objects(...)`.
"""

from __future__ import annotations

import copy
import datetime
import itertools
import secrets
import threading
import time
from typing import Any, ClassVar

from fakes.base import ApiError, FakeApi, Fault, Request, Response

ACCESS_TOKEN = "pat-na1-00000000-fake-4000-8000-hubspotlocal"  # noqa: S105 - the fake's own test token
OAUTH_CLIENT_ID = "fake-client-id"
OAUTH_CLIENT_SECRET = "fake-client-secret"  # noqa: S105 - test value
OAUTH_REFRESH_TOKEN = "fake-refresh-token"  # noqa: S105 - test value
SEED_START = datetime.datetime(2025, 3, 1, tzinfo=datetime.UTC)
SEARCH_RESULT_CAP = 10_000
OBJECT_TYPES = ("contacts", "companies", "deals")
# The property holding the last-modified time of each object type (the tap's replication keys).
MODIFIED_PROPERTY = {
    "contacts": "lastmodifieddate",
    "companies": "hs_lastmodifieddate",
    "deals": "hs_lastmodifieddate",
}
# name -> HubSpot property type; HubSpot's default properties plus one custom property each.
PROPERTY_TYPES: dict[str, dict[str, str]] = {
    "contacts": {
        "email": "string",
        "firstname": "string",
        "lastname": "string",
        "phone": "string",
        "mobilephone": "string",
        "city": "string",
        "state": "string",
        "country": "string",
        "company": "string",
        "jobtitle": "string",
        "lifecyclestage": "enumeration",
        "hs_lead_status": "enumeration",
        "hubspot_owner_id": "enumeration",
        "createdate": "datetime",
        "lastmodifieddate": "datetime",
        "hs_object_id": "number",
        "customer_tier": "enumeration",
    },
    "companies": {
        "name": "string",
        "domain": "string",
        "industry": "enumeration",
        "phone": "string",
        "city": "string",
        "state": "string",
        "country": "string",
        "numberofemployees": "number",
        "annualrevenue": "number",
        "lifecyclestage": "enumeration",
        "hubspot_owner_id": "enumeration",
        "createdate": "datetime",
        "hs_lastmodifieddate": "datetime",
        "hs_object_id": "number",
        "account_region": "enumeration",
    },
    "deals": {
        "dealname": "string",
        "amount": "number",
        "dealstage": "enumeration",
        "pipeline": "enumeration",
        "closedate": "datetime",
        "deal_currency_code": "enumeration",
        "hubspot_owner_id": "enumeration",
        "createdate": "datetime",
        "hs_lastmodifieddate": "datetime",
        "hs_object_id": "number",
        "hs_is_closed_won": "bool",
        "deal_source": "enumeration",
    },
}
# What HubSpot returns even when `properties` does not ask for it.
DEFAULT_RETURNED = {
    "contacts": ("createdate", "hs_object_id", "lastmodifieddate"),
    "companies": ("createdate", "hs_lastmodifieddate", "hs_object_id"),
    "deals": ("createdate", "hs_lastmodifieddate", "hs_object_id"),
}
_CUSTOM = {"customer_tier", "account_region", "deal_source"}


def iso(moment: datetime.datetime) -> str:
    """HubSpot's timestamp format: UTC, milliseconds, Z."""
    return (
        moment.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    )


def _parse_time(value: str) -> datetime.datetime:
    if value.lstrip("-").isdigit():
        return datetime.datetime.fromtimestamp(int(value) / 1000, tz=datetime.UTC)
    return datetime.datetime.fromisoformat(value)


def _hubspot_error(status: int, message: str, category: str, **extra: Any) -> ApiError:
    return ApiError(
        status,
        {
            "status": "error",
            "message": message,
            "correlationId": "00000000-fake",
            "category": category,
            **extra,
        },
    )


class FakeHubSpot(FakeApi):
    hosts: ClassVar[tuple[str, ...]] = ("api.hubapi.com",)

    def __init__(self, *, contacts: int = 180, companies: int = 60, deals: int = 120) -> None:
        super().__init__()
        self.access_token = ACCESS_TOKEN
        self.oauth_tokens: list[str] = []  # access tokens handed out by /oauth/v1/token
        self._data_lock = threading.RLock()
        self._ids = itertools.count(1001)
        self._objects: dict[str, dict[str, dict[str, Any]]] = {t: {} for t in OBJECT_TYPES}
        self.search_bodies: list[tuple[str, dict[str, Any]]] = []  # (object type, body) per search call
        self._seed(contacts, companies, deals)

    # --- seed data ------------------------------------------------------------------------------
    def _seed(self, contacts: int, companies: int, deals: int) -> None:
        for n in range(companies):
            self._put("companies", SEED_START + datetime.timedelta(hours=5 * n), self._company_props(n), n)
        for n in range(contacts):
            self._put(
                "contacts", SEED_START + datetime.timedelta(hours=2 * n, minutes=7), self._contact_props(n), n
            )
        for n in range(deals):
            self._put(
                "deals", SEED_START + datetime.timedelta(hours=3 * n, minutes=13), self._deal_props(n), n
            )

    def _put(
        self, object_type: str, created: datetime.datetime, props: dict[str, str | None], n: int
    ) -> dict[str, Any]:
        object_id = str(next(self._ids))
        # Seeded objects were last modified a while after their creation, in a deterministic order.
        modified = created + datetime.timedelta(days=1 + n % 5, seconds=n)
        values: dict[str, str | None] = dict.fromkeys(PROPERTY_TYPES[object_type])
        values.update(props)
        values.update(hs_object_id=object_id, createdate=iso(created))
        values[MODIFIED_PROPERTY[object_type]] = iso(modified)
        obj = {
            "id": object_id,
            "properties": values,
            "createdAt": iso(created),
            "updatedAt": iso(modified),
            "archived": False,
        }
        self._objects[object_type][object_id] = obj
        return obj

    @staticmethod
    def _contact_props(n: int) -> dict[str, str | None]:
        return {
            "email": f"contact{n}@example.com",
            "firstname": f"First{n}",
            "lastname": f"Last{n}",
            "phone": f"+1555{n:07d}" if n % 3 else None,
            "city": f"City {n % 9}",
            "country": "US",
            "company": f"Company {n % 60}",
            "jobtitle": ["Engineer", "Buyer", "CFO"][n % 3],
            "lifecyclestage": ["lead", "customer", "opportunity", "subscriber"][n % 4],
            "hs_lead_status": ["NEW", "OPEN", "IN_PROGRESS"][n % 3],
            "hubspot_owner_id": str(300 + n % 4),
            "customer_tier": ["gold", "silver"][n % 2],
        }

    @staticmethod
    def _company_props(n: int) -> dict[str, str | None]:
        return {
            "name": f"Company {n}",
            "domain": f"company{n}.example.com",
            "industry": ["COMPUTER_SOFTWARE", "RETAIL", "BANKING"][n % 3],
            "city": f"City {n % 9}",
            "country": ["United States", "Germany"][n % 2],
            "numberofemployees": str(10 * (n + 1)),
            "annualrevenue": str(100000 * (n + 1)),
            "lifecyclestage": "customer",
            "hubspot_owner_id": str(300 + n % 4),
            "account_region": ["emea", "amer"][n % 2],
        }

    @staticmethod
    def _deal_props(n: int) -> dict[str, str | None]:
        won = n % 4 == 0
        return {
            "dealname": f"Deal {n}",
            "amount": f"{1000 + 125 * n}",
            "pipeline": "default",
            "dealstage": "closedwon"
            if won
            else ["appointmentscheduled", "qualifiedtobuy", "contractsent"][n % 3],
            "closedate": iso(SEED_START + datetime.timedelta(days=30 + n)) if won else None,
            "deal_currency_code": "USD",
            "hubspot_owner_id": str(300 + n % 4),
            "hs_is_closed_won": "true" if won else "false",
            "deal_source": ["inbound", "outbound"][n % 2],
        }

    # --- what tests change ----------------------------------------------------------------------
    def add(self, object_type: str, **props: str | None) -> dict[str, Any]:
        """Create an object now (createdAt = last modified = now)."""
        with self._data_lock:
            now = datetime.datetime.now(datetime.UTC)
            obj = self._put(object_type, now, props, 0)
            self._touch(obj, object_type, now)
            return copy.deepcopy(obj)

    def update(self, object_type: str, object_id: str, **props: str | None) -> dict[str, Any]:
        with self._data_lock:
            obj = self._objects[object_type][object_id]
            obj["properties"].update(props)
            self._touch(obj, object_type, datetime.datetime.now(datetime.UTC))
            return copy.deepcopy(obj)

    def _touch(self, obj: dict[str, Any], object_type: str, now: datetime.datetime) -> None:
        obj["updatedAt"] = iso(now)
        obj["properties"][MODIFIED_PROPERTY[object_type]] = iso(now)
        time.sleep(0.002)  # distinct millisecond timestamps, as separate API writes have

    def objects(self, object_type: str) -> list[dict[str, Any]]:
        """The current objects of a type, by id, every property included."""
        with self._data_lock:
            return [
                copy.deepcopy(o)
                for o in sorted(self._objects[object_type].values(), key=lambda o: int(o["id"]))
            ]

    def property_names(self, object_type: str) -> list[str]:
        return list(PROPERTY_TYPES[object_type])

    # --- serving --------------------------------------------------------------------------------
    def fault_body(self, fault: Fault) -> Any:
        if fault.body is not None:
            return fault.body
        if fault.status == 429:
            return {
                "status": "error",
                "message": "You have reached your secondly limit.",
                "errorType": "RATE_LIMIT",
                "correlationId": "00000000-fake",
                "policyName": "SECONDLY",
                "groupName": "publicapi:private-app",
            }
        if fault.status == 401:
            return _hubspot_error(
                401, "Authentication credentials not found.", "INVALID_AUTHENTICATION"
            ).response.body
        return {
            "status": "error",
            "message": "internal error",
            "correlationId": "00000000-fake",
            "category": "INTERNAL_ERROR",
        }

    def handle(self, request: Request) -> Response:
        if request.path == "/oauth/v1/token" and request.method == "POST":
            return self._oauth_token(request)
        self._authenticate(request)
        parts = request.path.strip("/").split("/")
        if parts[:3] == ["crm", "v3", "properties"] and len(parts) == 4 and request.method == "GET":
            return self._properties(parts[3])
        if parts[:3] == ["crm", "v3", "objects"] and len(parts) == 4 and request.method == "GET":
            return self._list(request, self._object_type(parts[3]))
        if parts[:3] == ["crm", "v3", "objects"] and parts[4:] == ["search"] and request.method == "POST":
            return self._search(request, self._object_type(parts[3]))
        raise ApiError(
            404,
            {
                "status": "error",
                "message": f"Unable to route {request.method} {request.path}",
                "correlationId": "00000000-fake",
                "category": "OBJECT_NOT_FOUND",
            },
        )

    def _oauth_token(self, request: Request) -> Response:
        form = request.form() if request.body[:1] != b"{" else {k: str(v) for k, v in request.json().items()}
        if form.get("grant_type") != "refresh_token":
            raise ApiError(400, {"status": "BAD_GRANT_TYPE", "message": "grant_type must be refresh_token"})
        if (form.get("client_id"), form.get("client_secret")) != (OAUTH_CLIENT_ID, OAUTH_CLIENT_SECRET):
            raise ApiError(400, {"status": "BAD_CLIENT_ID", "message": "missing or unknown client id"})
        if form.get("refresh_token") != OAUTH_REFRESH_TOKEN:
            raise ApiError(
                400, {"status": "BAD_REFRESH_TOKEN", "message": "missing or unknown refresh token"}
            )
        token = f"oauth-{secrets.token_hex(8)}"
        self.oauth_tokens.append(token)
        return Response(
            body={
                "token_type": "bearer",
                "refresh_token": OAUTH_REFRESH_TOKEN,
                "access_token": token,
                "expires_in": 1800,
            }
        )

    def _authenticate(self, request: Request) -> None:
        header = request.headers.get("authorization", "")
        token = header.removeprefix("Bearer ") if header.startswith("Bearer ") else ""
        if token != self.access_token and token not in self.oauth_tokens:
            raise _hubspot_error(
                401,
                "Authentication credentials not found. This API supports OAuth 2.0 authentication and you "
                "can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview",
                "INVALID_AUTHENTICATION",
            )

    def _object_type(self, name: str) -> str:
        if name in OBJECT_TYPES:
            return name
        raise _hubspot_error(
            403,
            "This app hasn't been granted all required scopes to make this call. Read more about required "
            "scopes here: https://developers.hubspot.com/scopes.",
            "MISSING_SCOPES",
            errors=[
                {
                    "message": "One or more of the following scopes are required.",
                    "context": {"requiredGranularScopes": [f"crm.objects.{name}.read"]},
                }
            ],
        )

    def _properties(self, name: str) -> Response:
        object_type = self._object_type(name)
        results = []
        for order, (prop, prop_type) in enumerate(PROPERTY_TYPES[object_type].items()):
            results.append(
                {
                    "updatedAt": "2024-01-01T00:00:00.000Z",
                    "createdAt": "2020-01-01T00:00:00.000Z",
                    "name": prop,
                    "label": prop.replace("_", " ").title(),
                    "type": prop_type,
                    "fieldType": {
                        "datetime": "date",
                        "number": "number",
                        "bool": "booleancheckbox",
                        "enumeration": "select",
                    }.get(prop_type, "text"),
                    "description": "",
                    "groupName": f"{object_type[:-1]}information",
                    "options": [],
                    "displayOrder": order,
                    "calculated": False,
                    "externalOptions": False,
                    "hasUniqueValue": prop == "hs_object_id",
                    "hidden": False,
                    "hubspotDefined": prop not in _CUSTOM,
                    "modificationMetadata": {
                        "archivable": prop in _CUSTOM,
                        "readOnlyDefinition": prop not in _CUSTOM,
                        "readOnlyValue": prop in {"hs_object_id", "createdate"},
                    },
                    "formField": prop in {"email", "firstname", "lastname", "phone", "company"},
                    "archived": False,
                }
            )
        return Response(body={"results": results})

    def _render(self, obj: dict[str, Any], object_type: str, wanted: list[str]) -> dict[str, Any]:
        names = [
            *DEFAULT_RETURNED[object_type],
            *(w for w in wanted if w not in DEFAULT_RETURNED[object_type]),
        ]
        props = obj["properties"]
        return {
            "id": obj["id"],
            "properties": {n: props.get(n) for n in names if n in props},
            "createdAt": obj["createdAt"],
            "updatedAt": obj["updatedAt"],
            "archived": obj["archived"],
        }

    def _list(self, request: Request, object_type: str) -> Response:
        limit = int(request.arg("limit", "10") or "10")
        if not 1 <= limit <= 100:
            raise _hubspot_error(400, "limit must be between 1 and 100", "VALIDATION_ERROR")
        wanted = [p for p in (request.arg("properties") or "").split(",") if p]
        after = request.arg("after")
        with self._data_lock:
            items = sorted(self._objects[object_type].values(), key=lambda o: int(o["id"]))
            if after:
                items = [o for o in items if int(o["id"]) >= int(after)]
            page = [self._render(o, object_type, wanted) for o in items[:limit]]
            more = items[limit:]
        body: dict[str, Any] = {"results": page}
        if more:
            cursor = more[0]["id"]
            link = f"https://api.hubapi.com/crm/v3/objects/{object_type}?after={cursor}"
            body["paging"] = {"next": {"after": cursor, "link": link}}
        return Response(body=body)

    def _search(self, request: Request, object_type: str) -> Response:
        body = request.json() or {}
        self.search_bodies.append((object_type, copy.deepcopy(body)))
        limit = int(body.get("limit", 10))
        if not 1 <= limit <= 200:
            raise _hubspot_error(400, "limit must be between 1 and 200", "VALIDATION_ERROR")
        offset = int(body.get("after") or 0)
        if offset + limit > SEARCH_RESULT_CAP:
            raise _hubspot_error(
                400,
                "The search API returns at most 10,000 results for a query; narrow the filter.",
                "VALIDATION_ERROR",
            )
        with self._data_lock:
            groups = body.get("filterGroups") or []
            items = [o for o in self._objects[object_type].values() if self._matches(o, object_type, groups)]
            for sort in reversed(
                body.get("sorts") or [{"propertyName": "hs_object_id", "direction": "ASCENDING"}]
            ):
                name = sort["propertyName"]
                items.sort(
                    key=lambda o, name=name: self._sort_key(o, name),
                    reverse=sort.get("direction", "ASCENDING") == "DESCENDING",
                )
            page = [
                self._render(o, object_type, list(body.get("properties") or []))
                for o in items[offset : offset + limit]
            ]
        answer: dict[str, Any] = {"total": len(items), "results": page}
        if offset + limit < len(items):
            answer["paging"] = {"next": {"after": str(offset + limit)}}
        return Response(body=answer)

    @staticmethod
    def _sort_key(obj: dict[str, Any], name: str) -> tuple[int, Any]:
        value = obj["properties"].get(name) if name != "id" else obj["id"]
        if value is None:
            return (1, "")
        if name in {"hs_object_id", "id"}:
            return (0, int(value))
        return (0, value)

    def _matches(self, obj: dict[str, Any], object_type: str, groups: list[dict[str, Any]]) -> bool:
        if not groups:
            return True
        return any(all(_filter(obj, object_type, f) for f in group.get("filters", [])) for group in groups)


def _filter(obj: dict[str, Any], object_type: str, spec: dict[str, Any]) -> bool:
    name, operator = spec["propertyName"], spec["operator"]
    actual = obj["properties"].get(name)
    if operator == "HAS_PROPERTY":
        return actual is not None
    if operator == "NOT_HAS_PROPERTY":
        return actual is None
    if actual is None:
        return operator == "NEQ"
    wanted = str(spec.get("value"))
    if PROPERTY_TYPES[object_type].get(name) == "datetime":
        left: Any = _parse_time(actual)
        right: Any = _parse_time(wanted)
    elif PROPERTY_TYPES[object_type].get(name) == "number":
        left, right = float(actual), float(wanted)
    else:
        left, right = actual, wanted
    comparisons = {
        "EQ": left == right,
        "NEQ": left != right,
        "GT": left > right,
        "GTE": left >= right,
        "LT": left < right,
        "LTE": left <= right,
    }
    if operator not in comparisons:
        raise _hubspot_error(400, f"Unsupported filter operator {operator}", "VALIDATION_ERROR")
    return comparisons[operator]


def search_filter_value(body: dict[str, Any]) -> tuple[str, str, str]:
    """(property, operator, value) of a single-filter search body, as the tap sends it."""
    (group,) = body["filterGroups"]
    (only,) = group["filters"]
    return only["propertyName"], only["operator"], only["value"]
