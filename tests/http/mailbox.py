"""Helpers of the tests that follow links from mail: an app with mail on, waiting for mail
without blocking the event loop the server's sender runs in, and the links in a mail."""

from __future__ import annotations

import re
from html import unescape

import anyio

from tests._smtp import Received, SmtpServer

MAIL_FROM = "auth@example.test"


def mail_on(smtp: SmtpServer) -> dict[str, str]:
    return {"smtp_url": smtp.url, "mail_from": MAIL_FROM}


async def next_mail(smtp: SmtpServer, count: int = 1, timeout: float = 10) -> Received:
    """The `count`-th message received, once it is there."""
    with anyio.fail_after(timeout):
        while len(smtp.received) < count:
            await anyio.sleep(0.01)
    return smtp.received[count - 1]


def text_part(received: Received) -> str:
    body = received.message.get_body(("plain",))
    assert body is not None
    content: str = body.get_content()
    return content


def html_part(received: Received) -> str:
    body = received.message.get_body(("html",))
    assert body is not None
    content: str = body.get_content()
    return content


def link_in(received: Received, path: str) -> str:
    """The link to `path` in the mail's plain text, which must be the one of its HTML part."""
    found = re.findall(r"https?://\S+" + re.escape(path) + r"\?token=[\w-]+", text_part(received))
    assert len(found) == 1, text_part(received)
    assert f'href="{found[0]}"' in unescape(html_part(received))
    link: str = found[0]
    return link
