"""What the account page says of a browser: its User-Agent summarised as "Chrome on Linux", as
Keycloak's and Google's account pages do, rather than the whole header (two lines of version
numbers nobody reads). The whole string stays on the page as the summary's `title`.

Only what the header claims, so only a hint: any client may send any User-Agent.
"""

from __future__ import annotations

import re

# First match wins: browsers name the ones they are built on too (Edge says Chrome and
# Safari, Chrome says Safari), so the most specific comes first.
_BROWSERS = (
    ("Edge", re.compile(r"\bEdg(?:e|A|iOS)?/")),
    ("Opera", re.compile(r"\b(?:OPR|Opera)/")),
    ("Samsung Internet", re.compile(r"\bSamsungBrowser/")),
    ("Firefox", re.compile(r"\b(?:Firefox|FxiOS)/")),
    ("Chrome", re.compile(r"\b(?:Chrome|CriOS|Chromium)/")),
    ("Safari", re.compile(r"\bVersion/[\d.]+.*\bSafari/")),
)
_SYSTEMS = (
    ("iPhone", re.compile(r"\biPhone\b")),
    ("iPad", re.compile(r"\biPad\b")),
    ("Android", re.compile(r"\bAndroid\b")),
    ("ChromeOS", re.compile(r"\bCrOS\b")),
    ("Windows", re.compile(r"\bWindows\b")),
    ("macOS", re.compile(r"\bMac OS X\b|\bMacintosh\b")),
    ("Linux", re.compile(r"\bLinux\b")),
)
_PRODUCT = re.compile(r"[A-Za-z][\w.-]{0,39}")  # RFC 9110 §10.1.5: product/version first
_LONGEST = 1000  # the stored header is bounded already; the patterns never see more


def summary(user_agent: str | None) -> tuple[str | None, str | None]:
    """(browser, operating system), each None when the header does not say; a client that is
    no browser (curl, an SDK) is named by its first product token."""
    if not user_agent:
        return None, None
    text = user_agent[:_LONGEST]
    browser = next((name for name, pattern in _BROWSERS if pattern.search(text)), None)
    system = next((name for name, pattern in _SYSTEMS if pattern.search(text)), None)
    if browser is None and system is None:
        product = _PRODUCT.match(text)
        return (product.group(0) if product else None), None
    return browser, system
