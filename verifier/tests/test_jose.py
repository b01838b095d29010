"""The keyless checks on their own: what each refuses, and that a refusal says which check."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from authserver_verify import MalformedToken, UnacceptableHeader
from authserver_verify.jose import (
    MAX_TOKEN_BYTES,
    check_header,
    parse_access_token,
    reject_duplicate_members,
)

HEADER = {"alg": "EdDSA", "kid": "k1", "typ": "at+jwt"}
NOT_SEGMENTS = "not three base64url segments"
NOT_BASE64 = "segment is not base64url"
NOT_JSON = "segment is not base64url UTF-8 JSON"
NOT_OBJECT = "segment is not a JSON object"
DUPLICATE_TYP = b'{"alg":"EdDSA","kid":"k1","typ":"JWT","typ":"at+jwt"}'


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def token(header: Any = HEADER, claims: Any = None, signature: bytes = b"sig") -> str:
    def segment(value: Any) -> str:
        return b64(value if isinstance(value, bytes) else json.dumps(value).encode())

    payload = {"sub": "u"} if claims is None else claims
    return f"{segment(header)}.{segment(payload)}.{b64(signature)}"


def test_a_well_formed_token_is_taken_apart() -> None:
    text = token(claims={"sub": "u", "n": 1})
    jws = parse_access_token(text)
    assert (jws.alg, jws.kid, jws.signature) == ("EdDSA", "k1", b"sig")
    assert jws.header == HEADER and jws.claims == {"sub": "u", "n": 1}
    assert jws.signing_input == text.rsplit(".", 1)[0].encode()


MALFORMED = {
    "larger than 8 KiB": (token(claims={"pad": "x" * MAX_TOKEN_BYTES}), "too large"),
    "four segments": (token() + ".e30", NOT_SEGMENTS),
    "two segments": ("a.b", NOT_SEGMENTS),
    "an empty segment": (token().replace(".", "..", 1), NOT_SEGMENTS),
    "a trailing newline": (token() + "\n", NOT_SEGMENTS),
    "the standard base64 alphabet": (token() + "+/", NOT_SEGMENTS),
    "base64 padding": (token() + "==", NOT_SEGMENTS),
    "a segment of one character": (f"{b64(json.dumps(HEADER).encode())}.A.c2ln", NOT_BASE64),
    "not JSON": (token(b"not json"), NOT_JSON),
    "UTF-16 JSON": (token(json.dumps(HEADER).encode("utf-16")), NOT_JSON),
    "a byte order mark": (token(b"\xef\xbb\xbf" + json.dumps(HEADER).encode()), NOT_JSON),
    # Python's JSON parser runs out of recursion on these, which must be a refusal like any
    # other, not an exception the caller does not expect.
    "a header nested 3,000 deep": (token(b"[" * 3000), NOT_JSON),
    "a payload nested 3,000 deep": (token(claims=b"[" * 3000), NOT_JSON),
    "a header array": (token(["EdDSA"]), NOT_OBJECT),
    "a payload string": (token(claims="u"), NOT_OBJECT),
    "a duplicate header member": (token(DUPLICATE_TYP), NOT_JSON),
    "a duplicate payload member": (token(claims=b'{"sub":"a","sub":"b"}'), NOT_JSON),
}


@pytest.mark.parametrize(("text", "detail"), MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_tokens_are_refused(text: str, detail: str) -> None:
    with pytest.raises(MalformedToken) as caught:
        parse_access_token(text)
    assert caught.value.detail == detail
    assert text not in str(caught.value) and text not in caught.value.detail


def test_the_size_bound_is_inclusive() -> None:
    base = token(claims={"pad": ""})
    fits = token(claims={"pad": "x" * ((MAX_TOKEN_BYTES - len(base)) * 3 // 4)})
    assert MAX_TOKEN_BYTES - 4 <= len(fits) <= MAX_TOKEN_BYTES
    parse_access_token(fits)


def test_a_non_string_is_malformed_not_a_type_error() -> None:
    with pytest.raises(MalformedToken):
        parse_access_token(b"abc.def.ghi")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "detail"),
    [
        ({"jku": "https://evil.example/jwks"}, "forbidden header jku"),
        ({"jwk": {"kty": "OKP"}, "x5c": ["MIIB"]}, "forbidden header jwk, x5c"),
        ({"crit": ["exp"]}, "forbidden header crit"),
        ({"alg": "none"}, "alg not accepted"),
        ({"alg": "HS256"}, "alg not accepted"),
        ({"alg": "ES256"}, "alg not accepted"),
        ({"alg": None}, "alg not accepted"),
        ({"kid": None}, "no kid"),
        ({"kid": 1}, "no kid"),
        ({"typ": None}, "typ is not at+jwt"),
        ({"typ": "JWT"}, "typ is not at+jwt"),
        ({"typ": ["at+jwt"]}, "typ is not at+jwt"),
    ],
)
def test_unacceptable_headers_are_refused(changes: dict[str, Any], detail: str) -> None:
    header = {k: v for k, v in {**HEADER, **changes}.items() if v is not None}
    with pytest.raises(UnacceptableHeader) as caught:
        check_header(header)
    assert caught.value.detail == detail
    with pytest.raises(UnacceptableHeader):
        parse_access_token(token(header))


@pytest.mark.parametrize("typ", ["at+jwt", "AT+JWT", "application/at+jwt", "Application/At+JWT"])
def test_typ_is_compared_without_case(typ: str) -> None:
    # RFC 9068 §4 by way of RFC 7515 §4.1.9: media type names are case-insensitive.
    check_header({**HEADER, "typ": typ})


def test_the_duplicate_member_hook() -> None:
    assert json.loads('{"a": 1, "b": {"a": 2}}', object_pairs_hook=reject_duplicate_members) == {
        "a": 1,
        "b": {"a": 2},
    }
    with pytest.raises(ValueError):
        json.loads('{"a": 1, "a": 1}', object_pairs_hook=reject_duplicate_members)
