"""Continue tokens: kube-apiserver's format both ways, and a token kext cannot use refused in
kube-apiserver's words (what Go's base64 and encoding/json say of it), never Python's."""

from __future__ import annotations

import base64

import pytest

from kext.storage.continue_token import decode_continue, encode_continue
from kext.storage.errors import InvalidObjectError

PREFIX = "/registry/example.kext.io/widgets/"
INVALID = "invalid continue token: continue key is not valid"


def token(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def test_round_trip() -> None:
    encoded = encode_continue(PREFIX + "ns/a\x00", PREFIX, 42)
    assert "=" not in encoded
    assert decode_continue(encoded, PREFIX) == (PREFIX + "ns/a\x00", 42)
    # kube's "inconsistent" token (a negative revision: the latest) and its root start key
    assert decode_continue(token(b'{"v":"meta.k8s.io/v1","rv":-1,"start":"/"}'), PREFIX) == (
        PREFIX, -1)
    # Go matches field names case-insensitively and ignores unknown ones.
    assert decode_continue(token(b'{"V":"meta.k8s.io/v1","Rv":7,"start":"a","x":[]}'),
                           PREFIX) == (PREFIX + "a", 7)


@pytest.mark.parametrize(("raw_token", "why"), [
    # base64.RawURLEncoding
    ("not base64!", "illegal base64 data at input byte 3"),
    (token(b'{"v":1}') + "==", "illegal base64 data at input byte 10"),  # no padding in Raw
    ("abcde", "illegal base64 data at input byte 4"),
    ("ab\udcffcd", "illegal base64 data at input byte 2"),  # an undecodable byte in the URL
    # encoding/json's syntax errors: the token was bytes that are not UTF-8
    (token(b"\xff\xfe"), "invalid character '\u00ff' looking for beginning of value"),
    (token(b""), "unexpected end of JSON input"),
    (token(b'{"v":"meta.k8s.io/v1","rv":5,'), "unexpected end of JSON input"),
    (token(b"nope"), "invalid character 'o' in literal null (expecting 'u')"),
    (token(b'{"a" 1}'), "invalid character '1' after object key"),
    (token(b'{"a":1,}'), "invalid character '}' looking for beginning of object key string"),
    (token(b"[1,]"), "invalid character ']' looking for beginning of value"),
    (token(b"1."), "invalid character ' ' after decimal point in numeric literal"),
    (token(b"01"), "invalid character '1' after top-level value"),
    (token(b'"a\nb"'), "invalid character '\\n' in string literal"),
    (token(b'"\\x"'), "invalid character 'x' in string escape code"),
    # encoding/json's type errors, into Go's continueToken struct
    (token(b"[1]"), "json: cannot unmarshal array into Go value of type storage.continueToken"),
    (token(b'{"v":1}'),
     "json: cannot unmarshal number into Go struct field continueToken.v of type string"),
    (token(b'{"v":"meta.k8s.io/v1","rv":"5","start":"a"}'),
     "json: cannot unmarshal string into Go struct field continueToken.rv of type int64"),
    (token(b'{"v":"meta.k8s.io/v1","rv":1.5,"start":"a"}'),
     "json: cannot unmarshal number 1.5 into Go struct field continueToken.rv of type int64"),
    (token(b'{"v":"meta.k8s.io/v1","rv":99999999999999999999,"start":"a"}'),
     "json: cannot unmarshal number 99999999999999999999 into Go struct field "
     "continueToken.rv of type int64"),
    # DecodeContinue's own checks
    (token(b'{"v":"v9","rv":1,"start":"a"}'), "server does not recognize this encoded version v9"),
    (token(b"null"), "server does not recognize this encoded version "),
    (token(b'{"v":"meta.k8s.io/v1","rv":0,"start":"a"}'),
     "incorrect encoded start resourceVersion (version meta.k8s.io/v1)"),
    (token(b'{"v":"meta.k8s.io/v1","rv":3}'), "encoded start key empty (version meta.k8s.io/v1)"),
    (encode_continue(PREFIX + "../escape", PREFIX, 5), "../escape"),
    (encode_continue(PREFIX + "a/./b", PREFIX, 5), "a/./b"),
])
def test_unusable_tokens_are_refused_in_kubes_words(raw_token: str, why: str) -> None:
    with pytest.raises(InvalidObjectError) as error:
        decode_continue(raw_token, PREFIX)
    assert str(error.value) == f"{INVALID}: {why}"


def test_strings_decode_as_go_decodes_them() -> None:
    """Bytes that are not UTF-8 and unpaired surrogate escapes become U+FFFD (as in Go), so
    the start key is always one storage can encode."""
    assert decode_continue(token(b'{"v":"meta.k8s.io/v1","rv":5,"start":"a\xffb"}'),
                           PREFIX) == (PREFIX + "a\ufffdb", 5)
    start, _ = decode_continue(token(b'{"v":"meta.k8s.io/v1","rv":5,"start":"\\ud800x"}'),
                               PREFIX)
    assert start == PREFIX + "\ufffdx"
