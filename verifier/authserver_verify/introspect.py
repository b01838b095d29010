"""A real-time check for the routes that cannot wait for the revocation feed: RFC 7662
introspection at the issuer, with a short cache. Needs nothing beyond the verifier.

    introspector = Introspector("https://auth.example/introspect", "orders-api", SECRET,
                                cache_seconds=2.0)
    claims = verifier.verify(token)        # offline checks first: signature, typ, iss, aud, exp
    introspector.check(token)              # then: is it still active at the issuer right now?

`check` answers the introspection response of an active token; it raises `Revoked` for an
inactive one and `IntrospectionUnavailable` (answer 503) when the issuer cannot be asked. A
token revoked at the issuer is refused within `cache_seconds` (0 asks every time).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from authserver_verify.errors import IntrospectionUnavailable, Revoked
from authserver_verify.verifier import MAX_DOCUMENT_BYTES, _basic

__all__ = ["IntrospectionUnavailable", "Introspector", "Post", "urllib_post"]

# (url, form, headers) -> the JSON object answered
Post = Callable[[str, dict[str, str], dict[str, str]], dict[str, Any]]


def urllib_post(timeout: float = 5.0) -> Post:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def post(url: str, form: dict[str, str], headers: dict[str, str]) -> dict[str, Any]:
        request = urllib.request.Request(
            url,
            data=urllib.parse.urlencode(form).encode(),
            headers={
                "Accept": "application/json",
                "Content-Type": "application/x-www-form-urlencoded",
                **headers,
            },
            method="POST",
        )
        try:
            with opener.open(request, timeout=timeout) as response:
                body = response.read(MAX_DOCUMENT_BYTES + 1)
        except urllib.error.HTTPError as exc:
            raise OSError(f"HTTP {exc.code} from {url}") from None
        if len(body) > MAX_DOCUMENT_BYTES:
            raise OSError(f"document from {url} is too large")
        document = json.loads(body)
        if not isinstance(document, dict) or not isinstance(document.get("active"), bool):
            raise ValueError("not an introspection response")
        return document

    return post


class Introspector:
    """Asks the issuer's /introspect whether a token is still active; thread- and task-safe.

    Answers are cached by token hash for `cache_seconds` (active and inactive alike, at most
    `cache_size` of them); failures are not cached.
    """

    def __init__(
        self,
        url: str,
        client_id: str,
        client_secret: str,
        *,
        cache_seconds: float = 2.0,
        cache_size: int = 10_000,
        post: Post | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.cache_seconds = cache_seconds
        self._authorization = _basic(client_id, client_secret)
        self._post = post or urllib_post()
        self._monotonic = monotonic
        self._size = cache_size
        self._cache: OrderedDict[bytes, tuple[float, dict[str, Any]]] = OrderedDict()
        self._lock = threading.Lock()
        self.requests = 0  # for tests and metrics

    def check(self, token: str) -> dict[str, Any]:
        """The introspection response of an active token (blocking); Revoked if inactive."""
        digest = hashlib.sha256(token.encode("utf-8", "replace")).digest()
        now = self._monotonic()
        with self._lock:
            cached = self._cache.get(digest)
        if cached is not None and cached[0] > now:
            answer = cached[1]
        else:
            answer = self._ask(token)
            if self.cache_seconds > 0 and self._size > 0:
                with self._lock:
                    self._cache[digest] = (now + self.cache_seconds, answer)
                    self._cache.move_to_end(digest)
                    while len(self._cache) > self._size:
                        self._cache.popitem(last=False)
        if not answer["active"]:
            raise Revoked()
        return dict(answer)

    async def check_async(self, token: str) -> dict[str, Any]:
        """As `check`, the HTTP request in a worker thread."""
        return await asyncio.to_thread(self.check, token)

    def _ask(self, token: str) -> dict[str, Any]:
        self.requests += 1
        try:
            return self._post(
                self.url,
                {"token": token, "token_type_hint": "access_token"},
                {"Authorization": self._authorization},
            )
        except (OSError, ValueError) as exc:
            raise IntrospectionUnavailable() from exc
