"""kube-apiserver's continue tokens (cf. k8s.io/apiserver pkg/storage/continue.go): where the
next page of a list starts and the revision every page is read at.

Shared by every storage.Interface implementation, so a token handed out by one (the watch
cache) is understood by another (etcd)."""

from __future__ import annotations

import base64
import binascii
import posixpath

import orjson

from kext.storage.errors import InvalidObjectError

_CONTINUE_VERSION = "meta.k8s.io/v1"


def encode_continue(key: str, key_prefix: str, resource_version: int) -> str:
    """The token for a list of key_prefix that goes on at key (under key_prefix) at revision
    resource_version: unpadded URL-safe base64 of
    {"v":"meta.k8s.io/v1","rv":<rev>,"start":"<key after key_prefix>"}."""
    if not key.startswith(key_prefix) or key == key_prefix:
        raise ValueError(f"key {key!r} is not under {key_prefix!r}")
    token = {"v": _CONTINUE_VERSION, "rv": resource_version, "start": key[len(key_prefix):]}
    return base64.urlsafe_b64encode(orjson.dumps(token)).rstrip(b"=").decode("ascii")


def decode_continue(token: str, key_prefix: str) -> tuple[str, int]:
    """(start key, revision) of a continue token; InvalidObjectError when malformed.

    A negative revision means "the most recent" (kube-apiserver hands out such tokens with a
    410 when the original revision is compacted)."""

    def invalid(why: str) -> InvalidObjectError:
        return InvalidObjectError(key_prefix, f"continue key is not valid: {why}")

    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = orjson.loads(raw)
    except (binascii.Error, ValueError) as exc:
        raise invalid(str(exc)) from None
    if not isinstance(data, dict):
        raise invalid("not a JSON object")
    if data.get("v") != _CONTINUE_VERSION:
        raise invalid(f"server does not recognize this encoded version {data.get('v')!r}")
    rv, start = data.get("rv"), data.get("start")
    if isinstance(rv, int) and not -(2**63) <= rv < 2**63:  # continueToken.rv is an int64
        raise invalid(f"json: cannot unmarshal number {rv} into Go struct field "
                      "continueToken.rv of type int64")
    if not isinstance(rv, int) or isinstance(rv, bool) or rv == 0:
        raise invalid("incorrect encoded start resourceVersion (version meta.k8s.io/v1)")
    if not isinstance(start, str) or not start:
        raise invalid("encoded start key empty (version meta.k8s.io/v1)")
    # As path.Clean in Go: a start key that is not already clean could climb out of the
    # prefix ("../"), so it is refused rather than cleaned.
    key = start if start.startswith("/") else "/" + start
    cleaned = posixpath.normpath(key)
    if cleaned.startswith("//"):
        cleaned = "/" + cleaned.lstrip("/")
    if cleaned != key:
        raise invalid(start)
    return key_prefix + cleaned[1:], rv
