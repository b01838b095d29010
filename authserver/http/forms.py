"""Reading request bodies and credentials: bounded, strict, and never a 500.

RFC 6749 §3.1: request and response parameters MUST NOT be included more than once.
"""

from __future__ import annotations

import base64
import binascii
import json
from urllib.parse import parse_qsl, unquote_plus

from starlette.requests import Request

from authserver.clients import ClientCredentials
from authserver.errors import InvalidClient, InvalidRequest, PayloadTooLarge, UnsupportedMediaType
from authserver.http.context import services
from authserver.inputs import storable
from authserver.tokens.dpop import DPoPRequest
from authserver_verify.dpop import one_proof
from authserver_verify.jose import reject_duplicate_members

MAX_BODY_BYTES = 16 * 1024
MAX_FIELD_CHARS = 8 * 1024
MAX_FIELDS = 32
FORM = "application/x-www-form-urlencoded"
# RFC 8707 §2 lets `resource` repeat, the one exception to RFC 6749 §3.1's rule.
REPEATABLE = frozenset({"resource"})
JSON = "application/json"


async def read_fields(request: Request) -> dict[str, str]:
    """The body's fields from a form or JSON object; every value a string. An empty body has
    no fields, whatever its media type, so the endpoint can say which one is missing."""
    return fields_of(await read_body(request), request.headers.get("content-type", ""))


def fields_of(body: bytes, content_type: str) -> dict[str, str]:
    """read_fields for a body already read (http/cors.py reads the client_id of /token)."""
    if not body:
        return {}
    media_type = content_type.split(";")[0].strip().lower()
    if media_type == FORM:
        fields = _form_fields(body)
    elif media_type == JSON:
        fields = _json_fields(body)
    else:
        raise UnsupportedMediaType()
    # A form without escapes is ASCII (or refused above): only a NUL could be unstorable.
    escaped = media_type != FORM or b"%" in body or b"\x00" in body
    for name, value in fields.items():
        if len(value) > MAX_FIELD_CHARS:
            raise InvalidRequest(f"The field {_safe(name)} is too long.")
        if escaped and not (storable(name) and storable(value)):
            raise InvalidRequest(f"The field {_safe(name)} contains a character not allowed.")
    return fields


async def read_body(request: Request) -> bytes:
    """The whole body, refused past MAX_BODY_BYTES (declared or as it arrives)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise PayloadTooLarge()
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise PayloadTooLarge()
    return bytes(body)


def _form_fields(body: bytes) -> dict[str, str]:
    if b"%" not in body and b"+" not in body:
        # The token forms (grant_type=...&refresh_token=...) escape nothing: no unquoting to
        # do, so the split parse_qsl would make is made here, at a third of its cost.
        pairs = _plain_pairs(body)
    else:
        pairs = _quoted_pairs(body)
    fields: dict[str, str] = {}
    for name, value in pairs:
        if name in fields and name in REPEATABLE:
            # Joined with a space, which no resource identifier holds: the grant refuses the
            # several (tokens/resources.requested_resource) with invalid_target.
            fields[name] += " " + value
        elif name in fields:
            raise InvalidRequest(f"The field {_safe(name)} is given more than once.")
        else:
            fields[name] = value
    return fields


def _plain_pairs(body: bytes) -> list[tuple[str, str]]:
    """parse_qsl(keep_blank_values=True, max_num_fields=MAX_FIELDS) of a body with no `%` and
    no `+`: the same pairs, the same refusals."""
    try:
        text = body.decode("ascii")
    except UnicodeDecodeError:
        raise InvalidRequest("The form body is malformed.") from None
    if text.count("&") + 1 > MAX_FIELDS:  # parse_qsl counts the separators, as here
        raise InvalidRequest("The form body is malformed.")
    pairs = []
    for field in text.split("&"):
        if field:
            name, _, value = field.partition("=")
            pairs.append((name, value))
    return pairs


def _quoted_pairs(body: bytes) -> list[tuple[str, str]]:
    try:
        return parse_qsl(
            body.decode("ascii"),
            keep_blank_values=True,
            max_num_fields=MAX_FIELDS,
            errors="strict",
        )
    except (UnicodeDecodeError, ValueError):
        raise InvalidRequest("The form body is malformed.") from None


def _json_fields(body: bytes) -> dict[str, str]:
    try:
        value = json.loads(body, object_pairs_hook=reject_duplicate_members)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise InvalidRequest("The JSON body is malformed or repeats a member.") from None
    if not isinstance(value, dict):
        raise InvalidRequest("The JSON body must be an object.")
    if len(value) > MAX_FIELDS:
        raise InvalidRequest("The JSON body has too many members.")
    for name, item in value.items():
        if not isinstance(item, str):
            raise InvalidRequest(f"The field {_safe(name)} must be a string.")
    return value


def token_field(fields: dict[str, str]) -> str:
    token = fields.get("token")
    if not token:
        raise InvalidRequest("token is required.")
    return token


def client_credentials(request: Request, fields: dict[str, str]) -> ClientCredentials:
    """RFC 6749 §2.3.1: HTTP Basic or client_id/client_secret in the body, never both."""
    header = request.headers.get("authorization")
    if header is None or not header[:6].lower() == "basic ":
        return ClientCredentials(fields.get("client_id") or None, fields.get("client_secret"))
    if "client_secret" in fields:
        raise InvalidRequest("Use one client authentication method, not two.")
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise InvalidClient(detail="malformed Basic header") from None
    client_id, colon, secret = decoded.partition(":")
    if not colon:
        raise InvalidClient(detail="Basic header without a colon")
    # The id and secret are form-urlencoded before they are joined (RFC 6749 §2.3.1).
    client_id, secret = unquote_plus(client_id), unquote_plus(secret)
    if not (storable(client_id) and storable(secret)):
        raise InvalidClient(detail="Basic credentials with a NUL character")
    if fields.get("client_id", client_id) != client_id:
        raise InvalidRequest("The client_id in the body differs from the one in the header.")
    return ClientCredentials(client_id or None, secret)


def dpop_token(request: Request, path: str | None = None) -> tuple[str | None, DPoPRequest | None]:
    """The access token of `Authorization: Bearer` (None for the DPoP request) or of
    `Authorization: DPoP` (RFC 9449 §7.1), with its proof and the URL under the issuer that the
    proof must name (`path`: the request's own by default). RFC 9449 §4.3: more than one DPoP
    header is no valid proof ("")."""
    header = request.headers.get("authorization")
    scheme, _, token = (header or "").partition(" ")
    if scheme.lower() != "dpop":
        return bearer_token(request), None
    token_value = token.strip() or None
    url = endpoint(request, request.url.path if path is None else path)
    return token_value, DPoPRequest(dpop_header(request), request.method, url)


def dpop_header(request: Request) -> str | None:
    return one_proof(request.headers.getlist("dpop"))


def endpoint(request: Request, path: str) -> str:
    """The URL a DPoP proof names: the endpoint under the issuer, not the address this instance
    listens on (API.md, "DPoP")."""
    return services(request).settings.issuer.rstrip("/") + path


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _safe(name: str) -> str:
    """A field name fit to echo in an error sentence."""
    if len(name) <= 40 and name.replace("_", "").isalnum():
        return name
    return "(unnamed)"
