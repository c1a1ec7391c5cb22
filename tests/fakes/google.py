"""Local Google APIs: the OAuth 2.0 token endpoint and Drive API v3, as far as the taps call them.

Followed from Google's public documentation:
- token endpoint, POST https://oauth2.googleapis.com/token (form encoded):
  `grant_type=refresh_token` with client_id, client_secret, refresh_token (a wrong client is
  401 invalid_client, a wrong refresh token 400 invalid_grant), and the service account flow
  `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer` with an RS256 `assertion` whose
  signature is checked against the key's public half, `iss` = client_email, `aud` = token_uri,
  `scope`, and at most an hour between `iat` and `exp`. Answers {access_token, expires_in,
  token_type, scope};
- every API call needs `Authorization: Bearer <token this fake issued>`: otherwise 401 with
  Google's error document ({"error": {"code", "message", "status", "errors"}});
- Drive v3 `files.list` (GET /drive/v3/files): `q` with `and`-joined terms (`'<id>' in parents`,
  `trashed = true|false`, `name = '..'`, `name contains '..'`, `mimeType =|!= '..'`,
  `modifiedTime <op> '<RFC 3339>'`; anything else is a 400), `pageSize` (1-1000, default 100;
  like Drive, pages may hold fewer: at most `page_size_cap`), `pageToken`/`nextPageToken`,
  `orderBy=name`, `fields` (a partial response: `nextPageToken,files(id,name,...)`);
  `files.get` (GET /drive/v3/files/<id>) with `fields`; `alt=media` downloads the content, with
  `Range: bytes=a-b` answered 206; Google Docs formats cannot be downloaded (403
  fileNotDownloadable). Drive scopes: media needs drive or drive.readonly, metadata also accepts
  drive.metadata.readonly; a token without them gets 403 insufficientPermissions.

The data lives in this object and changes through its methods; every change moves the file's
`modifiedTime` forward on the fake's own clock (deterministic, one minute per change).
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import re
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from pathlib import Path
from typing import Any, ClassVar

from fakes.base import ApiError, FakeApi, Fault, Request, Response

TOKEN_HOST = "oauth2.googleapis.com"  # noqa: S105 - a host name
TOKEN_URI = f"https://{TOKEN_HOST}/token"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
FOLDER_MIME = "application/vnd.google-apps.folder"
SPREADSHEET_MIME = "application/vnd.google-apps.spreadsheet"
SCOPE = "https://www.googleapis.com/auth/"
DRIVE_MEDIA_SCOPES = frozenset({f"{SCOPE}drive", f"{SCOPE}drive.readonly"})
DRIVE_METADATA_SCOPES = DRIVE_MEDIA_SCOPES | {f"{SCOPE}drive.metadata.readonly"}
CLOCK_START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
TOKEN_LIFETIME_SECONDS = 3599
# DigestInfo of SHA-256 (RFC 8017, 9.2 note 1): what an RS256 signature wraps around the digest.
SHA256_DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420")
STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
}


def rfc3339(moment: datetime) -> str:
    """Drive's time format: UTC, milliseconds, `Z`."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def google_error(status: int, message: str, reason: str | None = None, **extra: Any) -> ApiError:
    """Google's JSON error document (https://cloud.google.com/apis/design/errors)."""
    error: dict[str, Any] = {
        "code": status,
        "message": message,
        "status": STATUS_NAMES.get(status, "UNKNOWN"),
    }
    if reason is not None:
        error["errors"] = [{"message": message, "domain": "global", "reason": reason, **extra}]
    return ApiError(status, {"error": error})


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class ServiceAccountKey:
    """A service account's JSON key (RSA 2048, made by openssl) and its public modulus."""

    info: dict[str, str]
    modulus: int
    exponent: int = 65537

    @classmethod
    def generate(cls, email: str = "ingest-reader@ingest-test.iam.gserviceaccount.com") -> ServiceAccountKey:
        with tempfile.TemporaryDirectory() as folder:
            pem = Path(folder) / "key.pem"
            subprocess.run(
                [
                    "openssl",
                    "genpkey",
                    "-algorithm",
                    "RSA",
                    "-pkeyopt",
                    "rsa_keygen_bits:2048",
                    "-out",
                    str(pem),
                ],
                check=True,
                capture_output=True,
            )
            modulus = subprocess.run(
                ["openssl", "rsa", "-in", str(pem), "-noout", "-modulus"],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            private_key = pem.read_text(encoding="ascii")
        key_id = hashlib.sha1(private_key.encode(), usedforsecurity=False).hexdigest()
        info = {
            "type": "service_account",
            "project_id": "ingest-test",
            "private_key_id": key_id,
            "private_key": private_key,
            "client_email": email,
            "client_id": "104242424242424242424",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": TOKEN_URI,
        }
        return cls(info=info, modulus=int(modulus.strip().removeprefix("Modulus="), 16))

    @property
    def json(self) -> str:
        return json.dumps(self.info)

    def verifies(self, signing_input: bytes, signature: bytes) -> bool:
        """RSASSA-PKCS1-v1_5 with SHA-256 (RS256), checked with the public key."""
        size = (self.modulus.bit_length() + 7) // 8
        if len(signature) != size:
            return False
        encoded = pow(int.from_bytes(signature, "big"), self.exponent, self.modulus).to_bytes(size, "big")
        digest = SHA256_DIGEST_INFO + hashlib.sha256(signing_input).digest()
        return encoded == b"\x00\x01" + b"\xff" * (size - len(digest) - 3) + b"\x00" + digest


@dataclass(frozen=True)
class OAuthClient:
    """An OAuth client and one user's refresh token for it, with the scopes the user granted."""

    client_id: str = "1042-ingest.apps.googleusercontent.com"
    client_secret: str = "GOCSPX-fake-local-secret"  # noqa: S105 - the fake's own test value
    refresh_token: str = "1//fake-local-refresh-token"  # noqa: S105 - the fake's own test value
    scopes: frozenset[str] = frozenset({f"{SCOPE}spreadsheets.readonly", f"{SCOPE}drive.metadata.readonly"})


@dataclass
class DriveFile:
    id: str
    name: str
    mime_type: str
    parents: list[str]
    modified: datetime
    content: bytes = b""
    trashed: bool = False
    version: int = 1

    def resource(self) -> dict[str, Any]:
        """The Drive v3 File resource (the fields the taps can ask for)."""
        found: dict[str, Any] = {
            "kind": "drive#file",
            "id": self.id,
            "name": self.name,
            "mimeType": self.mime_type,
            "parents": list(self.parents),
            "trashed": self.trashed,
            "version": str(self.version),
            "createdTime": rfc3339(CLOCK_START),
            "modifiedTime": rfc3339(self.modified),
        }
        if not self.mime_type.startswith("application/vnd.google-apps."):
            found["size"] = str(len(self.content))  # Drive gives no size for Docs formats or folders
            found["md5Checksum"] = hashlib.md5(self.content, usedforsecurity=False).hexdigest()
        return found


def select_fields(resource: dict[str, Any], fields: str | None) -> dict[str, Any]:
    """A partial response: `a,b,files(c,d)` keeps those keys (https://developers.google.com/drive/api/guides/fields-parameter)."""
    if fields is None or fields.strip() in {"", "*"}:
        return resource
    selected: dict[str, Any] = {}
    for name, nested in _parse_fields(fields):
        if name not in resource:
            continue
        value = resource[name]
        if nested is not None and isinstance(value, list):
            value = [select_fields(item, nested) for item in value]
        elif nested is not None and isinstance(value, dict):
            value = select_fields(value, nested)
        selected[name] = value
    return selected


def _parse_fields(fields: str) -> list[tuple[str, str | None]]:
    parsed, depth, start = [], 0, 0
    for index, char in enumerate(f"{fields},"):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "," and depth == 0:
            part = fields[start:index].strip()
            start = index + 1
            if part:
                name, _, rest = part.partition("(")
                parsed.append((name.strip(), rest[:-1] if rest else None))
    if depth != 0:
        raise google_error(400, f"Invalid field selection {fields}", "invalidParameter", location="fields")
    return parsed


_Q_TERM = re.compile(
    r"^(?:'(?P<parent>[^']+)'\s+in\s+parents"
    r"|trashed\s*=\s*(?P<trashed>true|false)"
    r"|(?P<field>name|mimeType|modifiedTime)\s*(?P<op>!=|<=|>=|=|<|>|contains)\s*'(?P<value>(?:[^'\\]|\\.)*)')$",
    re.IGNORECASE,
)


def _q_filter(q: str) -> list[Any]:
    """Drive's search query, the terms used here (developers.google.com/drive/api/guides/search-files)."""
    tests: list[Any] = []
    for term in re.split(r"\s+and\s+", q.strip(), flags=re.IGNORECASE):
        match = _Q_TERM.match(term.strip())
        if match is None:
            raise google_error(400, "Invalid Value", "invalid", locationType="parameter", location="q")
        if match["parent"]:
            tests.append(_parent_test(match["parent"]))
        elif match["trashed"]:
            tests.append(_trashed_test(match["trashed"].lower() == "true"))
        else:
            tests.append(_field_test(match["field"], match["op"].lower(), match["value"].replace("\\'", "'")))
    return tests


def _parent_test(parent: str) -> Any:
    return lambda f: parent in f.parents


def _trashed_test(wanted: bool) -> Any:
    return lambda f: f.trashed == wanted


def _field_test(name: str, op: str, value: str) -> Any:
    if name == "modifiedTime":
        bound = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if bound.tzinfo is None:
            bound = bound.replace(tzinfo=UTC)  # Drive reads a time without offset as UTC
        compare = {
            "<": bound.__gt__,
            "<=": bound.__ge__,
            ">": bound.__lt__,
            ">=": bound.__le__,
            "=": bound.__eq__,
        }
        if op not in compare:
            raise google_error(400, "Invalid Value", "invalid", locationType="parameter", location="q")
        return lambda f: compare[op](f.modified)
    attribute = "name" if name == "name" else "mime_type"
    if op == "contains" and name == "name":
        return lambda f: value.lower() in f.name.lower()
    if op == "=":
        return lambda f: getattr(f, attribute) == value
    if op == "!=":
        return lambda f: getattr(f, attribute) != value
    raise google_error(400, "Invalid Value", "invalid", locationType="parameter", location="q")


class FakeGoogle(FakeApi):
    """Token endpoint + Drive v3; subclasses add their API's routes in `handle_api`."""

    hosts: ClassVar[tuple[str, ...]] = (TOKEN_HOST, "www.googleapis.com")

    def __init__(self, *, page_size_cap: int = 1000) -> None:
        super().__init__()
        self.oauth = OAuthClient()
        self.service_account: ServiceAccountKey | None = None
        self.page_size_cap = page_size_cap
        self.files: dict[str, DriveFile] = {}
        self.tokens: dict[str, frozenset[str]] = {}  # issued access token -> its scopes
        self._data_lock = threading.RLock()
        self._serial = itertools.count(1)
        self._clock = CLOCK_START

    # --- changing the data ------------------------------------------------------------------
    def tick(self) -> datetime:
        """The fake's clock: one minute per change, so modification times are reproducible."""
        with self._data_lock:
            self._clock += timedelta(minutes=1)
            return self._clock

    def add_file(
        self,
        name: str,
        parent: str,
        content: bytes = b"",
        mime_type: str = "text/csv",
        file_id: str | None = None,
    ) -> DriveFile:
        with self._data_lock:
            serial = next(self._serial)
            file_id = (
                file_id
                or "1"
                + hashlib.sha1(f"{parent}/{name}/{serial}".encode(), usedforsecurity=False).hexdigest()[:27]
            )
            created = DriveFile(file_id, name, mime_type, [parent], self.tick(), content)
            self.files[file_id] = created
            return created

    def add_folder(self, name: str, parent: str = "root") -> DriveFile:
        return self.add_file(name, parent, mime_type=FOLDER_MIME)

    def write(self, file_id: str, content: bytes) -> DriveFile:
        """A new revision of a file: new content, new modifiedTime and version."""
        with self._data_lock:
            changed = self.files[file_id]
            changed.content, changed.modified, changed.version = content, self.tick(), changed.version + 1
            return changed

    def touch(self, file_id: str) -> DriveFile:
        with self._data_lock:
            changed = self.files[file_id]
            changed.modified, changed.version = self.tick(), changed.version + 1
            return changed

    # --- serving ----------------------------------------------------------------------------
    def fault_body(self, fault: Fault) -> Any:
        if fault.body is not None:
            return fault.body
        return google_error(
            fault.status,
            HTTPStatus(fault.status).phrase,
            "rateLimitExceeded" if fault.status == 429 else "backendError",
        ).response.body

    def handle(self, request: Request) -> Response:
        if request.path == "/token":
            return self._token(request)
        scopes = self._authorized(request)
        if request.path.startswith("/drive/v3/files"):
            return self._drive(request, scopes)
        return self.handle_api(request, scopes)

    def handle_api(self, request: Request, scopes: frozenset[str]) -> Response:
        raise google_error(404, f"The requested URL {request.path} was not found on this server.")

    def _authorized(self, request: Request) -> frozenset[str]:
        header = request.headers.get("authorization", "")
        token = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else ""
        with self._data_lock:
            scopes = self.tokens.get(token)
        if scopes is None:
            raise google_error(
                401,
                "Request had invalid authentication credentials. Expected OAuth 2 access token, login "
                "cookie or other valid authentication credential.",
                "authError",
                locationType="header",
                location="Authorization",
            )
        return scopes

    def _issue(self, scopes: frozenset[str]) -> Response:
        with self._data_lock:
            token = f"ya29.fake-{next(self._serial)}"
            self.tokens[token] = scopes
        body = {
            "access_token": token,
            "expires_in": TOKEN_LIFETIME_SECONDS,
            "token_type": "Bearer",
            "scope": " ".join(sorted(scopes)),
        }
        return Response(200, body)

    def _token(self, request: Request) -> Response:
        if request.method != "POST":
            raise ApiError(405, {"error": "invalid_request", "error_description": "POST only"})
        form = request.form()
        grant = form.get("grant_type")
        if grant == "refresh_token":
            if (form.get("client_id"), form.get("client_secret")) != (
                self.oauth.client_id,
                self.oauth.client_secret,
            ):
                raise ApiError(401, {"error": "invalid_client", "error_description": "Unauthorized"})
            if form.get("refresh_token") != self.oauth.refresh_token:
                raise ApiError(
                    400, {"error": "invalid_grant", "error_description": "Token has been expired or revoked."}
                )
            return self._issue(self.oauth.scopes)
        if grant == JWT_BEARER:
            return self._issue(self._verify_assertion(form.get("assertion", "")))
        raise ApiError(
            400, {"error": "unsupported_grant_type", "error_description": f"Invalid grant_type: {grant}"}
        )

    def _verify_assertion(self, assertion: str) -> frozenset[str]:
        def refuse(description: str) -> ApiError:
            return ApiError(400, {"error": "invalid_grant", "error_description": description})

        parts = assertion.split(".")
        key = self.service_account
        if len(parts) != 3 or key is None:
            raise refuse("Invalid JWT: Token must be a short-lived token and in a reasonable timeframe")
        header, claims = (json.loads(_b64url_decode(p)) for p in parts[:2])
        if header.get("alg") != "RS256" or not key.verifies(
            f"{parts[0]}.{parts[1]}".encode(), _b64url_decode(parts[2])
        ):
            raise refuse("Invalid JWT Signature.")
        if claims.get("iss") != key.info["client_email"] or claims.get("aud") != TOKEN_URI:
            raise refuse("Invalid JWT: iss or aud does not match the service account")
        if not 0 < int(claims.get("exp", 0)) - int(claims.get("iat", 0)) <= 3600:
            raise refuse("Invalid JWT: Token must be a short-lived token (60 minutes)")
        scopes = frozenset(str(claims.get("scope", "")).split())
        if not scopes:
            raise refuse("Invalid OAuth scope or ID token audience provided.")
        return scopes

    # --- Drive v3 ---------------------------------------------------------------------------
    def _drive(self, request: Request, scopes: frozenset[str]) -> Response:
        if not scopes & DRIVE_METADATA_SCOPES:
            raise google_error(
                403, "Request had insufficient authentication scopes.", "insufficientPermissions"
            )
        rest = request.path.removeprefix("/drive/v3/files").strip("/")
        if not rest:
            return self._files_list(request)
        with self._data_lock:
            found = self.files.get(rest)
        if found is None:
            raise google_error(
                404, f"File not found: {rest}.", "notFound", locationType="parameter", location="fileId"
            )
        if request.arg("alt") == "media":
            return self._media(request, found, scopes)
        return Response(200, select_fields(found.resource(), request.arg("fields")))

    def _files_list(self, request: Request) -> Response:
        page_size = int(request.arg("pageSize") or 100)
        if not 1 <= page_size <= 1000:
            raise google_error(400, "Invalid Value", "invalid", locationType="parameter", location="pageSize")
        tests = _q_filter(request.arg("q") or "trashed = false")
        order = request.arg("orderBy") or "name"
        with self._data_lock:
            matching = [f for f in self.files.values() if all(test(f) for test in tests)]
        matching.sort(key=(lambda f: (f.name, f.id)) if order.startswith("name") else (lambda f: f.modified))
        start = int(_b64url_decode(request.arg("pageToken") or "MA").decode() or 0)
        page = matching[start : start + min(page_size, self.page_size_cap)]
        body: dict[str, Any] = {
            "kind": "drive#fileList",
            "incompleteSearch": False,
            "files": [f.resource() for f in page],
        }
        if start + len(page) < len(matching):
            body["nextPageToken"] = (
                base64.urlsafe_b64encode(str(start + len(page)).encode()).decode().rstrip("=")
            )
        return Response(200, select_fields(body, request.arg("fields")))

    def _media(self, request: Request, found: DriveFile, scopes: frozenset[str]) -> Response:
        if not scopes & DRIVE_MEDIA_SCOPES:
            raise google_error(
                403, "Request had insufficient authentication scopes.", "insufficientPermissions"
            )
        if found.mime_type.startswith("application/vnd.google-apps."):
            raise google_error(
                403, "Only files with binary content can be downloaded. Use Export with Docs Editors files.",
                "fileNotDownloadable", locationType="parameter", location="alt",
            )  # fmt: skip
        content = found.content
        ranged = re.fullmatch(r"bytes=(\d+)-(\d*)", request.headers.get("range", ""))
        if ranged is None:
            return Response(200, content, {"Content-Type": found.mime_type})
        first = int(ranged[1])
        last = min(int(ranged[2]) if ranged[2] else len(content) - 1, len(content) - 1)
        if first >= len(content):
            raise ApiError(416, {"error": {"code": 416, "message": "Request range not satisfiable"}})
        headers = {"Content-Type": found.mime_type, "Content-Range": f"bytes {first}-{last}/{len(content)}"}
        return Response(206, content[first : last + 1], headers)

    # --- what tests read --------------------------------------------------------------------
    def downloads(self) -> list[str]:
        """Ids of the files whose content was served (alt=media), in order, once per request."""
        return [
            s.path.removeprefix("/drive/v3/files/")
            for s in self.requests_to("/drive/v3/files/")
            if s.query.get("alt") == ["media"] and s.status in {200, 206}
        ]
