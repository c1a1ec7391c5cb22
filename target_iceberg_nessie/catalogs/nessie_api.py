"""A small typed client for Project Nessie's REST API v2 (pynessie speaks only v1).

It covers what the Nessie catalog needs: references (branches, tags), contents, one commit with many
operations, and the commit log. HTTP outcomes are mapped to the target's errors in one place
(`_raise_for`): 409 becomes a commit conflict the coordinator understands, 5xx and transport
failures are retriable and *ambiguous* for commits (the caller settles them from the log).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import quote

import httpx

from target_iceberg_nessie.errors import CommitConflictError, ConfigError, FatalError, RetriableError

ICEBERG_TABLE: Final = "ICEBERG_TABLE"
NAMESPACE: Final = "NAMESPACE"
_KEY_SEPARATOR: Final = "."
_ESCAPED_DOT: Final = "\u001d"  # how Nessie escapes a dot inside one key element in a path


class NessieNotFoundError(FatalError):
    """A reference or content does not exist."""


class NessieConflictError(CommitConflictError):
    """The server refused a commit or reference change: something changed since the expected hash."""


class NessieUnavailableError(RetriableError):
    """No usable answer (timeout, connection reset, 5xx): for a commit, the outcome is unknown."""


@dataclass(frozen=True)
class Reference:
    name: str
    hash: str
    type: str = "BRANCH"

    def as_json(self) -> dict[str, str]:
        return {"type": self.type, "name": self.name, "hash": self.hash}


@dataclass(frozen=True)
class CommitEntry:
    hash: str
    message: str
    properties: Mapping[str, str]
    author: str | None
    parent_hashes: tuple[str, ...] = ()


@dataclass(frozen=True)
class MergeResult:
    head: Reference  # the target branch after the merge
    applied: bool  # False: nothing to merge (already merged)
    common_ancestor: str | None


@dataclass(frozen=True)
class Put:
    """Put content (an Iceberg table or a namespace) at a key; `content_id` when it exists already."""

    key: tuple[str, ...]
    content: Mapping[str, Any]

    def as_json(self) -> dict[str, Any]:
        return {"type": "PUT", "key": {"elements": list(self.key)}, "content": dict(self.content)}


@dataclass(frozen=True)
class Delete:
    key: tuple[str, ...]

    def as_json(self) -> dict[str, Any]:
        return {"type": "DELETE", "key": {"elements": list(self.key)}}


def iceberg_table_content(
    *,
    metadata_location: str,
    snapshot_id: int,
    schema_id: int,
    spec_id: int,
    sort_order_id: int,
    content_id: str | None = None,
) -> dict[str, Any]:
    content: dict[str, Any] = {
        "type": ICEBERG_TABLE,
        "metadataLocation": metadata_location,
        "snapshotId": snapshot_id,
        "schemaId": schema_id,
        "specId": spec_id,
        "sortOrderId": sort_order_id,
    }
    if content_id is not None:
        content["id"] = content_id
    return content


def namespace_content(
    elements: Sequence[str], content_id: str | None = None, properties: Mapping[str, str] | None = None
) -> dict[str, Any]:
    content: dict[str, Any] = {
        "type": NAMESPACE,
        "elements": list(elements),
        "properties": dict(properties or {}),
    }
    if content_id is not None:
        content["id"] = content_id
    return content


def key_path(key: Sequence[str]) -> str:
    return quote(_KEY_SEPARATOR.join(e.replace(_KEY_SEPARATOR, _ESCAPED_DOT) for e in key), safe="")


def ref_path(name: str, hash_: str | None = None) -> str:
    return quote(name if hash_ is None else f"{name}@{hash_}", safe="")


@dataclass
class NessieClient:
    """Nessie REST API v2 at `uri` (e.g. http://127.0.0.1:19120/api/v2)."""

    uri: str
    token: str | None = None  # bearer token; sent, never logged
    timeout: float = 30.0
    _http: httpx.Client = field(init=False, repr=False)

    def __post_init__(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        self._http = httpx.Client(base_url=self.uri.rstrip("/"), headers=headers, timeout=self.timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> NessieClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- one place for HTTP → errors --------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as error:
            msg = f"Nessie at {self.uri} did not answer {method} {path}: {type(error).__name__}"
            raise NessieUnavailableError(msg) from error
        self._raise_for(response, method, path)
        return response.json() if response.content else None

    def _raise_for(self, response: httpx.Response, method: str, path: str) -> None:
        status = response.status_code
        if status < httpx.codes.BAD_REQUEST:
            return
        detail = self._detail(response)
        where = f"Nessie {method} {path}: HTTP {status}: {detail}"
        if status == httpx.codes.CONFLICT:
            raise NessieConflictError(where)
        if status == httpx.codes.NOT_FOUND:
            raise NessieNotFoundError(where)
        if status in (httpx.codes.UNAUTHORIZED, httpx.codes.FORBIDDEN):
            msg = f"{where}; check the Nessie token (setting nessie_token) and its permissions"
            raise ConfigError(msg)
        if status >= httpx.codes.INTERNAL_SERVER_ERROR or status == httpx.codes.TOO_MANY_REQUESTS:
            raise NessieUnavailableError(where)
        raise FatalError(where)

    @staticmethod
    def _detail(response: httpx.Response) -> str:
        try:
            body = response.json()
        except ValueError:
            return response.text[:300]
        if isinstance(body, Mapping):
            return str(body.get("message") or body.get("reason") or body)[:300]
        return str(body)[:300]

    # -- references ----------------------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        found: dict[str, Any] = self._request("GET", "/config")
        return found

    def reference(self, name: str) -> Reference:
        body = self._request("GET", f"/trees/{ref_path(name)}")
        ref = body["reference"]
        return Reference(name=ref["name"], hash=ref["hash"], type=ref["type"])

    def create_branch(self, name: str, source: Reference) -> Reference:
        body = self._request("POST", "/trees", params={"name": name, "type": "BRANCH"}, json=source.as_json())
        ref = body["reference"]
        return Reference(name=ref["name"], hash=ref["hash"], type=ref["type"])

    def delete_branch(self, branch: Reference) -> None:
        self._request("DELETE", f"/trees/{ref_path(branch.name, branch.hash)}")

    def references(self) -> list[Reference]:
        """Every branch and tag, with its head."""
        found: list[Reference] = []
        token: str | None = None
        while True:
            params: dict[str, Any] = {"max-records": 500}
            if token:
                params["page-token"] = token
            body = self._request("GET", "/trees", params=params)
            found.extend(Reference(r["name"], r["hash"], r["type"]) for r in body.get("references", []))
            token = body.get("token")
            if not body.get("hasMore") or not token:
                return found

    def assign(self, reference: Reference, to_hash: str) -> Reference:
        """Move `reference` (expected at its hash) to `to_hash`: a rollback or a fast-forward."""
        self._request(
            "PUT",
            f"/trees/{ref_path(reference.name, reference.hash)}",
            params={"type": reference.type},
            json={"type": reference.type, "name": reference.name, "hash": to_hash},
        )
        return Reference(reference.name, to_hash, reference.type)

    def merge(
        self,
        into: Reference,
        source: Reference,
        *,
        message: str,
        properties: Mapping[str, str],
        author: str,
    ) -> MergeResult:
        """Merge `source` (at its hash) into the branch `into` (expected at its hash) as ONE commit
        carrying `properties`. Merging what is already merged is a no-op (`applied` False)."""
        body = self._request(
            "POST",
            f"/trees/{ref_path(into.name, into.hash)}/history/merge",
            json={
                "fromRefName": source.name,
                "fromHash": source.hash,
                "commitMeta": {"message": message, "authors": [author], "properties": dict(properties)},
            },
        )
        return MergeResult(
            head=Reference(into.name, body["resultantTargetHash"], into.type),
            applied=bool(body.get("wasApplied")),
            common_ancestor=body.get("commonAncestor"),
        )

    # -- contents ------------------------------------------------------------------------------

    def content(self, ref: str, key: Sequence[str]) -> dict[str, Any] | None:
        try:
            body = self._request("GET", f"/trees/{ref_path(ref)}/contents/{key_path(key)}")
        except NessieNotFoundError:
            return None
        found: dict[str, Any] = body["content"]
        return found

    def entries(self, ref: str) -> list[tuple[tuple[str, ...], str]]:
        """(key, content type) of every entry on `ref`."""
        body = self._request("GET", f"/trees/{ref_path(ref)}/entries")
        return [(tuple(e["name"]["elements"]), e["type"]) for e in body.get("entries", [])]

    # -- commits -------------------------------------------------------------------------------

    def commit(
        self,
        branch: Reference,
        operations: Sequence[Put | Delete],
        *,
        message: str,
        properties: Mapping[str, str],
        author: str,
    ) -> Reference:
        """ONE commit of all `operations` on `branch`, expected at `branch.hash`."""
        return self.commit_with_ids(
            branch, operations, message=message, properties=properties, author=author
        )[0]

    def commit_with_ids(
        self,
        branch: Reference,
        operations: Sequence[Put | Delete],
        *,
        message: str,
        properties: Mapping[str, str],
        author: str,
    ) -> tuple[Reference, dict[tuple[str, ...], str]]:
        """`commit`, also returning the content ids Nessie gave the keys this commit created."""
        body = self._request(
            "POST",
            f"/trees/{ref_path(branch.name, branch.hash)}/history/commit",
            json={
                "commitMeta": {"message": message, "authors": [author], "properties": dict(properties)},
                "operations": [op.as_json() for op in operations],
            },
        )
        ref = body["targetBranch"]
        added = {tuple(a["key"]["elements"]): a["contentId"] for a in body.get("addedContents") or []}
        return Reference(name=ref["name"], hash=ref["hash"], type=ref["type"]), added

    def log(self, ref: str, *, until_hash: str | None = None, page_size: int = 100) -> Iterator[CommitEntry]:
        """Commits on `ref`, newest first, stopping before `until_hash` (exclusive) when given."""
        token: str | None = None
        while True:
            params: dict[str, Any] = {"max-records": page_size}
            if token:
                params["page-token"] = token
            body = self._request("GET", f"/trees/{ref_path(ref)}/history", params=params)
            for entry in body.get("logEntries", []):
                meta = entry["commitMeta"]
                if until_hash is not None and meta["hash"] == until_hash:
                    return
                authors = meta.get("authors") or []
                # v2 returns multi-valued `allProperties`; we write one value per key.
                multi = meta.get("allProperties") or {}
                yield CommitEntry(
                    hash=meta["hash"],
                    message=meta.get("message", ""),
                    properties={k: v[-1] for k, v in multi.items() if v}
                    or dict(meta.get("properties") or {}),
                    author=authors[0] if authors else None,
                    parent_hashes=tuple(meta.get("parentCommitHashes") or ()),
                )
            token = body.get("token")
            if not body.get("hasMore") or not token:
                return
