"""Name the extractor setting to fix when a Singer tap dies on an authentication error.

Installed next to a tap in its Meltano plugin venv (`pip_url: tap-x==1.2 <this package>`); a `.pth`
file calls `install()` at interpreter start. The taps' own messages say what the API answered
("Invalid API Key provided", "401 Client Error: Unauthorized") but not which setting holds the
credential. When the process dies of such an error, this prints one more line, after the traceback:

    CRITICAL tap-stripe: authentication failed: the API refused the secret API key with HTTP 401
    (Invalid API Key provided: sk_test_****1234). Fix the extractor setting `client_secret` (env
    TAP_STRIPE_CLIENT_SECRET).

(one line). The exit code and everything else stay as they were. The errors are recognised by class
name and message, so the tap's packages are never imported from here.
"""

from __future__ import annotations

import atexit
import os
import re
import sys
from dataclasses import dataclass

PREFIX = "ingest-tap-errors"


@dataclass(frozen=True)
class Credential:
    """Which setting a tap's authentication failure points at."""

    settings: tuple[str, ...]
    what: str  # what the API refused, in the API's words


# executable -> HTTP status -> the settings to check. 401: the credential; 403: what it may read.
SETTINGS: dict[str, dict[int, Credential]] = {
    "tap-stripe": {
        401: Credential(("client_secret",), "the secret API key"),
        403: Credential(("account_id", "client_secret"), "access to the account"),
    },
    "tap-hubspot": {
        401: Credential(("access_token", "refresh_token", "client_id", "client_secret"), "the token"),
        403: Credential(("access_token",), "the scopes of the token"),
    },
}
_SDK_STATUS = re.compile(r"^(\d{3}) Client Error: (.*?) for path: (\S+?),?(?: content is |$)")
_OAUTH_STATUS = re.compile(r"Failed to update access token \(status=(\d{3}|Unknown)\)")


def _executable() -> str:
    return os.path.basename(os.environ.get("MELTANO_EXTRACTOR_EXECUTABLE") or sys.argv[0])


def _plugin_name() -> str:
    return os.environ.get("MELTANO_EXTRACTOR_NAME") or _executable()


def env_name(plugin: str, setting: str) -> str:
    """Meltano's environment variable for a plugin setting (tap-stripe, client_secret ->
    TAP_STRIPE_CLIENT_SECRET)."""
    return re.sub(r"[^A-Za-z0-9]", "_", f"{plugin}_{setting}").upper()


def classify(error: BaseException) -> tuple[int, str] | None:
    """(HTTP status, what the API said) for an authentication failure; None for anything else."""
    kind = type(error).__name__
    module = type(error).__module__
    if module.startswith("stripe") and kind in {"AuthenticationError", "PermissionError"}:
        status = getattr(error, "http_status", None) or (401 if kind == "AuthenticationError" else 403)
        message = getattr(error, "user_message", None) or str(error)
        return int(status), str(message)
    if kind == "FatalAPIError" and (found := _SDK_STATUS.match(str(error))):
        status = int(found.group(1))
        return (status, f"{found.group(2)} for {found.group(3)}") if status in {401, 403} else None
    if isinstance(error, RuntimeError) and (found := _OAUTH_STATUS.search(str(error))):
        return 401, f"the OAuth token endpoint refused the refresh (status {found.group(1)})"
    return None


def explain(error: BaseException) -> str | None:
    """The one-line message for `error`, or None when it is not an authentication failure."""
    found = classify(error)
    settings = SETTINGS.get(_executable())
    if found is None or settings is None:
        return None
    status, said = found
    credential = settings.get(status) or settings[401]
    plugin = _plugin_name()
    names = ", ".join(f"`{s}` (env {env_name(plugin, s)})" for s in credential.settings)
    return (
        f"{plugin}: authentication failed: the API refused {credential.what} with HTTP {status} ({said}). "
        f"Fix the extractor setting {names}."
    )


def _report() -> None:
    """At exit: if an uncaught exception ends the process, add the line naming the setting.

    Python keeps the uncaught exception in `sys.last_value` after printing it (through whatever
    excepthook the tap installed; singer-sdk installs its own), so this works for every tap.
    """
    error = getattr(sys, "last_value", None)
    if not isinstance(error, BaseException):
        return
    try:
        line = explain(error)
    except Exception:  # noqa: BLE001 - never hide the tap's own error behind ours
        return
    if line is not None:
        sys.stderr.write(f"CRITICAL {line}\n")
        sys.stderr.flush()


_installed = False


def install() -> None:
    """Register the exit check (called by the .pth file; idempotent)."""
    global _installed  # noqa: PLW0603 - one check per process
    if _installed:
        return
    _installed = True
    atexit.register(_report)
