"""``Set-Cookie`` of an ``HttpResponse``: read as the Python worker reads it, written as the host writes it.

The worker does not pass ``Set-Cookie`` headers through. The library's ``HttpResponseConverter``
parses each with ``http.cookies.SimpleCookie`` (a header it cannot parse yields no cookie at all),
and the worker turns every cookie into an ``RpcHttpCookie`` (``parse_to_rpc_http_cookie_list`` in
azure_functions_worker/bindings/datumdef.py, ``nullable_converters.py``): an ``Expires`` dateutil
cannot read, or a ``Max-Age`` that is no number, fails the invocation. The host then appends each
through ASP.NET Core's ``Response.Cookies.Append`` (``RpcHttpCookieConverter`` in
GrpcMessageExtensionUtilities.cs), so attribute names come out lower-case in a fixed order, the value
percent-encoded, and a missing ``Path`` written as ``path=`` (the worker always sends one).
"""

from __future__ import annotations

import enum
import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.cookies import Morsel, SimpleCookie
from urllib.parse import quote

log = logging.getLogger(__name__)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
#: RFC 7230 ``tchar``: what .NET accepts in a cookie name (Python also allows ``:``).
_TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_TICKS_PER_SECOND = 10_000_000
_MAX_TICKS = 2**63 - 1


class SameSite(enum.IntEnum):
    """``RpcHttpCookie.SameSite``: ``NONE`` is "not given", ``EXPLICIT_NONE`` is ``SameSite=None``."""

    NONE = 0
    LAX = 1
    STRICT = 2
    EXPLICIT_NONE = 3


@dataclass(frozen=True)
class RpcCookie:
    """One cookie as the worker sends it to the host; ``None`` is an unset nullable field."""

    name: str
    value: str
    domain: str | None = None
    path: str | None = None
    #: Seconds since the epoch (the worker drops fractions).
    expires: int | None = None
    secure: bool | None = None
    http_only: bool | None = None
    same_site: SameSite = SameSite.NONE
    max_age: float | None = None


class CookieHeaderError(ValueError):
    """A cookie the worker sent but ASP.NET Core refuses to write: the host answers 500."""


def rpc_cookies(cookies: Iterable[SimpleCookie] | None) -> tuple[RpcCookie, ...]:
    """The worker's cookie list for the parsed ``Set-Cookie`` headers; raises as the worker raises."""
    found: list[RpcCookie] = []
    for cookie in cookies or ():
        for name, morsel in cookie.items():
            found.append(
                RpcCookie(
                    name=name,
                    value=morsel.value,
                    domain=morsel["domain"],
                    path=morsel["path"],
                    expires=_nullable_timestamp(_expires(morsel), "cookie.expires"),
                    secure=bool(morsel["secure"]),
                    http_only=bool(morsel["httponly"]),
                    same_site=_same_site(morsel),
                    max_age=_nullable_double(morsel["max-age"], "cookie.maxAge"),
                )
            )
    return tuple(found)


def _expires(morsel: Morsel[str]) -> datetime | None:
    expires = morsel["expires"]
    if not expires:
        return None
    # dateutil is what the worker parses with; imported here, where a cookie first needs it.
    from dateutil import parser as date_parser  # type: ignore[import-untyped]

    try:
        parsed: datetime = date_parser.parse(expires)
    except date_parser.ParserError:
        # The worker logs these on the root logger, inside the invocation, before re-raising.
        logging.getLogger().error(
            "Can not parse value %s of expires in the cookie due to invalid format.", expires
        )
        raise
    except OverflowError:
        logging.getLogger().error(
            "Can not parse value %s of expires in the cookie because the parsed date exceeds the "
            "largest valid C integer on your system.",
            expires,
        )
        raise
    return parsed


def _nullable_timestamp(moment: datetime | None, property_name: str) -> int | None:
    if moment is None:
        return None
    try:
        return int(moment.timestamp())  # a naive time is local time, as in the worker
    except Exception:
        raise TypeError(
            f"A 'datetime' or 'int' type was expected instead of a '{type(moment)}' type. "
            f"Cannot parse value {moment} of '{property_name}'."
        ) from None


def _nullable_double(raw: str, property_name: str) -> float | None:
    if not raw:
        return None
    try:
        return float(raw)
    except Exception:
        raise TypeError(f"Cannot parse value {raw} of '{property_name}' to float.") from None


def _same_site(morsel: Morsel[str]) -> SameSite:
    return {"lax": SameSite.LAX, "strict": SameSite.STRICT, "none": SameSite.EXPLICIT_NONE}.get(
        str(morsel["samesite"]).lower(), SameSite.NONE
    )


def set_cookie_header(cookie: RpcCookie) -> str:
    """The ``Set-Cookie`` value ASP.NET Core writes for ``cookie`` (``SetCookieHeaderValue.ToString``).

    Raises :class:`CookieHeaderError` where .NET throws: a name that is not an HTTP token, a
    ``Max-Age`` that is not a number or too large for a ``TimeSpan``.
    """
    if not cookie.name or not set(cookie.name) <= _TOKEN:
        raise CookieHeaderError(f"Invalid cookie name: {cookie.name!r}")
    parts = [f"{cookie.name}={quote(cookie.value, safe='')}"]  # Uri.EscapeDataString
    if cookie.expires is not None:
        parts.append(f"expires={_http_date(_EPOCH + timedelta(seconds=cookie.expires))}")
    if cookie.max_age is not None:
        parts.append(f"max-age={_whole_seconds(cookie.max_age)}")
    if cookie.domain is not None:
        parts.append(f"domain={cookie.domain}")
    # CookieOptions' Path defaults to "/"; the worker always sends one, "" when none was set.
    parts.append(f"path={cookie.path if cookie.path is not None else '/'}")
    if cookie.secure:
        parts.append("secure")
    same_site = {SameSite.LAX: "lax", SameSite.STRICT: "strict", SameSite.EXPLICIT_NONE: "none"}
    if cookie.same_site in same_site:
        parts.append(f"samesite={same_site[cookie.same_site]}")
        if cookie.same_site is SameSite.EXPLICIT_NONE and not cookie.secure:
            log.warning("The cookie '%s' has set 'SameSite=None' and must also set 'Secure'.", cookie.name)
    if cookie.http_only:
        parts.append("httponly")
    return "; ".join(parts)


def _whole_seconds(seconds: float) -> int:
    """``(long)TimeSpan.FromSeconds(seconds).TotalSeconds``: whole ticks, truncated toward zero."""
    if math.isnan(seconds):
        raise CookieHeaderError("TimeSpan does not accept floating point Not-a-Number values.")
    ticks = seconds * _TICKS_PER_SECOND
    if abs(ticks) >= _MAX_TICKS:
        raise CookieHeaderError("TimeSpan overflowed because the duration is too long.")
    return int(int(ticks) / _TICKS_PER_SECOND)


def _http_date(moment: datetime) -> str:
    """RFC 1123, with English names whatever the locale (``HeaderUtilities.FormatDate``)."""
    return (
        f"{_DAYS[moment.weekday()]}, {moment.day:02d} {_MONTHS[moment.month - 1]} {moment.year:04d} "
        f"{moment:%H:%M:%S} GMT"
    )
