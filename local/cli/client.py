"""The running app's HTTP API, as the command line calls it: one request, JSON back, or one clear error.

The standard library's ``urllib`` is enough for a handful of sequential calls, so the command line
needs nothing the host does not already install.
"""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from local.host.errors import HostError
from local.host.http.keys import HEADER, HOST_SETTING, KEYS_FILE, MASTER_SETTING, read_generated_key
from local.host.settings import read_local_settings


class ApiError(Exception):
    """A call that did not get its answer; ``str()`` is the one line the user reads."""


@dataclass(frozen=True)
class Target:
    """Where the app answers and the key it takes."""

    url: str
    key: str | None

    @classmethod
    def find(cls, url: str | None, app_dir: Path, environ: Mapping[str, str]) -> Target:
        """``url``, else ``http://localhost:<Host.LocalHttpPort or 7071>``; the key from the
        environment, the app's local settings, or the host's generated key file, in that order."""
        from local.host.runner import DEFAULT_PORT  # late: the runner imports the whole HTTP stack

        try:
            local = read_local_settings(app_dir)
        except HostError:  # a broken local.settings.json is the host's to report; use the defaults
            local = None
        port = (local.local_http_port if local else None) or DEFAULT_PORT
        key = (
            environ.get(HOST_SETTING)
            or environ.get(MASTER_SETTING)
            or (local.values.get(HOST_SETTING) if local else None)
            or read_generated_key(app_dir / KEYS_FILE)
        )
        return cls(
            (url or f"http://localhost:{port}").rstrip("/"), key.split(",")[0].strip() if key else None
        )


class ApiClient:
    """Calls ``/api/...`` on a :class:`Target`; every failure is an :class:`ApiError` naming its cause."""

    def __init__(self, target: Target, *, timeout: float = 15.0) -> None:
        self._target = target
        self._timeout = timeout

    @property
    def url(self) -> str:
        return self._target.url

    def call(
        self,
        method: str,
        path: str,
        query: Mapping[str, Any] | None = None,
        *,
        not_found: str | None = None,
    ) -> Any:
        """The decoded JSON answer of ``method /api/<path>?<query>`` (``None`` values are left out).

        ``not_found`` is the line for a 404 the app itself answered (a missing route says so instead).
        """
        params = {name: value for name, value in (query or {}).items() if value is not None}
        url = f"{self._target.url}/api/{path}" + (f"?{urllib.parse.urlencode(params)}" if params else "")
        headers = {"accept": "application/json"}
        if self._target.key:
            headers[HEADER] = self._target.key
        request = urllib.request.Request(url, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:
                body = response.read()
        except urllib.error.HTTPError as exc:
            said = _json(exc.read())
            if exc.code == 404 and not_found and isinstance(said, dict) and said.get("error"):
                raise ApiError(f"{not_found} (404)") from exc
            raise ApiError(self._refusal(exc.code, said, exc.headers.get("Retry-After"))) from exc
        except urllib.error.URLError as exc:
            raise ApiError(self._unreachable(exc.reason)) from exc
        except TimeoutError as exc:
            raise ApiError(f"{self._target.url} did not answer within {self._timeout:g} s") from exc
        except (OSError, http.client.HTTPException) as exc:  # reset, or closed before an answer
            raise ApiError(
                f"{self._target.url} broke off the call to {path}: {exc or type(exc).__name__}"
            ) from exc
        found = _json(body)
        if found is None and body:
            raise ApiError(f"{method} {url} answered something that is not JSON: {body[:80]!r}")
        return found

    def _refusal(self, status: int, body: Any, retry_after: str | None) -> str:
        said = body if isinstance(body, dict) else {}
        title = str(said.get("detail") or said.get("error") or "").strip()
        if status == 401:
            hint = f"set {HOST_SETTING}" if self._target.key else f"no key found: set {HOST_SETTING}"
            return (
                f"the app at {self._target.url} refused the key (401): {hint}, or run where "
                f"{KEYS_FILE} is (`python -m local keys` prints it)"
            )
        if status == 503:
            dependency = said.get("dependency")
            what = f"{dependency} is not available" if dependency else title or "the app is not ready"
            later = f"; retry in {retry_after} s" if retry_after else ""
            return f"{what} (503 from {self._target.url}){later}"
        if status == 404 and not title:
            return f"{self._target.url} has no such route (404): is it this app, and up to date?"
        if status == 400 and said.get("details"):
            fields = "; ".join(f"{d.get('field')}: {d.get('message')}" for d in said["details"])
            return f"{title} (400): {fields}"
        return f"{title or 'the app refused the request'} ({status})"

    def _unreachable(self, reason: object) -> str:
        if isinstance(reason, ConnectionRefusedError):
            return (
                f"nothing answers at {self._target.url} (connection refused): "
                "start the app with `python -m local start`, or pass --url"
            )
        if isinstance(reason, TimeoutError):
            return f"{self._target.url} did not answer within {self._timeout:g} s"
        return f"cannot reach {self._target.url}: {reason}"


def _json(body: bytes) -> Any:
    try:
        return json.loads(body) if body else None
    except ValueError:
        return None
