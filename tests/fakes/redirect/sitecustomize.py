"""TEST ONLY: send a tap's HTTPS calls for real API hosts to local fake servers.

Never installed in a plugin environment. A test runs the tap through a wrapper script that puts
this folder on PYTHONPATH (Meltano drops an inherited PYTHONPATH) and sets INGEST_TEST_REDIRECT to
a JSON object {"api.stripe.com": "http://127.0.0.1:PORT", ...}; see `redirect_extractor` in
tests/e2e/_commands.py. The tap's own code is unchanged: its request URLs are rewritten where the
HTTP libraries send them (requests, httplib2, httpx), keeping path and query.
"""

# ruff: noqa: PLC0415 - each HTTP library is patched only if the tap's venv has it

from __future__ import annotations

import json
import os
import urllib.parse

_TARGETS = {
    host.lower(): urllib.parse.urlsplit(url)
    for host, url in json.loads(os.environ.get("INGEST_TEST_REDIRECT") or "{}").items()
}


def rewrite(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    target = _TARGETS.get((parts.hostname or "").lower())
    if target is None:
        return url
    return urllib.parse.urlunsplit((target.scheme, target.netloc, parts.path, parts.query, parts.fragment))


def _patch_requests() -> None:
    try:
        import requests.adapters
    except ImportError:
        return
    original = requests.adapters.HTTPAdapter.send

    def send(self, request, *args, **kwargs):  # type: ignore[no-untyped-def]
        request.url = rewrite(request.url)
        return original(self, request, *args, **kwargs)

    requests.adapters.HTTPAdapter.send = send


def _patch_httplib2() -> None:
    try:
        import httplib2
    except ImportError:
        return
    original = httplib2.Http.request

    def request(self, uri, *args, **kwargs):  # type: ignore[no-untyped-def]
        return original(self, rewrite(uri), *args, **kwargs)

    httplib2.Http.request = request


def _patch_httpx() -> None:
    try:
        import httpx
    except ImportError:
        return
    original = httpx.HTTPTransport.handle_request

    def handle_request(self, request):  # type: ignore[no-untyped-def]
        request.url = httpx.URL(rewrite(str(request.url)))
        return original(self, request)

    httpx.HTTPTransport.handle_request = handle_request


if _TARGETS:
    _patch_requests()
    _patch_httplib2()
    _patch_httpx()
