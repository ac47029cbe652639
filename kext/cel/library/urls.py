"""URLs as Go's net/url.ParseRequestURI reads them: an absolute URI or an absolute path."""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from kext.cel.library import Function, global_, member, types

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*$")
_PORT = re.compile(r"^[0-9]*$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class URLError(ValueError):
    pass


@dataclass(frozen=True)
class URL:
    scheme: str
    host: str  # as written, IPv6 in brackets, with the port
    path: str  # unescaped
    raw_path: str
    raw_query: str


@lru_cache(maxsize=1024)
def parse(text: str) -> URL:
    """The URL, or URLError worded as Go's: `parse "x": invalid URI for request`."""
    if _CONTROL.search(text):
        raise URLError(f"parse {text!r}: net/url: invalid control character in URL")
    rest = text
    if "#" in rest:
        rest = rest.split("#", 1)[0]
    raw_query = ""
    if "?" in rest:
        rest, raw_query = rest.split("?", 1)
    scheme = ""
    colon = rest.find(":")
    slash = rest.find("/")
    if colon > 0 and (slash < 0 or colon < slash) and _SCHEME.match(rest[:colon]):
        scheme, rest = rest[:colon].lower(), rest[colon + 1:]
    elif colon == 0:
        raise URLError(f'parse "{text}": missing protocol scheme')
    if not rest.startswith("/") and not scheme:
        raise URLError(f'parse "{text}": invalid URI for request')
    host = ""
    if scheme and rest.startswith("//"):
        authority, slash_at, path = rest[2:].partition("/")
        path = slash_at + path
        host = authority.rpartition("@")[2]
        _check_host(text, host)
    elif scheme and not rest.startswith("/"):
        # An opaque URI (mailto:x): no host, no path.
        path = ""
    else:
        path = rest
    try:
        unescaped = urllib.parse.unquote(path, errors="strict")
    except UnicodeDecodeError as exc:
        raise URLError(f'parse "{text}": invalid URL escape') from exc
    if re.search(r"%(?![0-9A-Fa-f]{2})", path):
        raise URLError(f'parse "{text}": invalid URL escape')
    return URL(scheme, host, unescaped, path, raw_query)


def _check_host(text: str, host: str) -> None:
    if host.startswith("["):
        end = host.find("]")
        if end < 0:
            raise URLError(f'parse "{text}": missing \']\' in host')
        port = host[end + 1:]
        if port and (not port.startswith(":") or not _PORT.match(port[1:])):
            raise URLError(f'parse "{text}": invalid port "{port}" after host')
        return
    if ":" in host:
        port = host[host.index(":"):]
        if not _PORT.match(port[1:]):
            raise URLError(f'parse "{text}": invalid port "{port}" after host')


def is_url(text: str) -> bool:
    try:
        parse(text)
    except URLError:
        return False
    return True


def hostname(url: URL) -> str:
    host = url.host
    if host.startswith("["):
        return host[1:host.find("]")]
    return host.partition(":")[0]


def port(url: URL) -> str:
    host = url.host
    if host.startswith("["):
        rest = host[host.find("]") + 1:]
        return rest[1:] if rest.startswith(":") else ""
    return host.partition(":")[2]


def escaped_path(url: URL) -> str:
    """Go's URL.EscapedPath: the raw path when it is a valid encoding, else re-escaped."""
    if url.raw_path and urllib.parse.unquote(url.raw_path) == url.path and \
            not re.search(r"[^A-Za-z0-9\-._~!$&'()*+,;=:@/%]", url.raw_path):
        return url.raw_path
    return urllib.parse.quote(url.path, safe="/!$&'()*+,;=:@-._~")


def query(url: URL) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key, value in urllib.parse.parse_qsl(url.raw_query, keep_blank_values=True):
        out.setdefault(key, []).append(value)
    return out


# -- what CEL sees

def _url(text: str) -> Any:
    parse(text)
    return types.URL(value=text)


def _u(u: Any) -> URL:
    return parse(u.value)


U = "kubernetes.URL"
FUNCTIONS: tuple[Function, ...] = (
    global_("url", "string_to_url", ("string",), U, _url),
    global_("isURL", "is_url_string", ("string",), "bool", is_url),
    member("getScheme", "url_get_scheme", (U,), "string", lambda u: _u(u).scheme),
    member("getHost", "url_get_host", (U,), "string", lambda u: _u(u).host),
    member("getHostname", "url_get_hostname", (U,), "string", lambda u: hostname(_u(u))),
    member("getPort", "url_get_port", (U,), "string", lambda u: port(_u(u))),
    member("getEscapedPath", "url_get_escaped_path", (U,), "string",
           lambda u: escaped_path(_u(u))),
    member("getQuery", "url_get_query", (U,), "map(string, list(string))",
           lambda u: query(_u(u))),
)
