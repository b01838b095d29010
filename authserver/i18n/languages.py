"""Which language a page speaks: the request's `ui_locales`, then `Accept-Language`, then English.

Pure: strings in, one of the available language tags out. Both headers are anyone's to write,
so every range that is not a well-formed tag or weight is skipped, never refused: a page in
English beats an error about a header the user never saw.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator

DEFAULT = "en"
# Enough for any real preference list; a longer header is read no further.
MAX_RANGES = 16
MAX_HEADER = 1024
# RFC 5646 §2.1, loosely: alphanumeric subtags of 1-8 characters, the first one letters.
_TAG = re.compile(r"[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*")
# RFC 9110 §12.4.2: qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )
_WEIGHT = re.compile(r"q=(0(?:\.[0-9]{0,3})?|1(?:\.0{0,3})?)", re.IGNORECASE)


def choose(ui_locales: str | None, accept_language: str | None, available: Collection[str]) -> str:
    """The first of the user's languages that `available` has, else English.

    `available` holds tags as the catalogs' folders name them (`de`, `pt_BR` or `pt-BR`); the
    answer is one of them, or DEFAULT.
    """
    # English is always there (the templates' own words), so "en-US, de;q=0.5" stays English.
    known = {DEFAULT: DEFAULT, **{_key(tag): tag for tag in available}}
    for wanted in (*_ui_locales(ui_locales), *_accepted(accept_language)):
        found = _lookup(wanted, known)
        if found is not None:
            return found
    return DEFAULT


def _ui_locales(value: str | None) -> list[str]:
    # OpenID Connect Core §3.1.2.1: "End-User's preferred languages and scripts for the user
    # interface, represented as a space-separated list of BCP47 [RFC5646] language tag values,
    # ordered by preference."
    if not value:
        return []
    words = value[:MAX_HEADER].split(" ")[:MAX_RANGES]
    return [word for word in words if _TAG.fullmatch(word)]


def _accepted(value: str | None) -> list[str]:
    # RFC 9110 §12.5.4: language ranges with optional weights; q=0 means "not acceptable",
    # equal weights keep the header's order (sorted() is stable).
    if not value:
        return []
    weighted = sorted(_ranges(value[:MAX_HEADER]), key=lambda item: -item[1])
    return [tag for tag, weight in weighted if weight > 0]


def _ranges(value: str) -> Iterator[tuple[str, float]]:
    for item in value.split(",")[:MAX_RANGES]:
        tag, *parameters = (part.strip() for part in item.split(";"))
        if not _TAG.fullmatch(tag):  # "*" too: any language is English here
            continue
        weight = 1.0
        if parameters:
            found = _WEIGHT.fullmatch(parameters[0].replace(" ", ""))
            if found is None or len(parameters) > 1:
                continue
            weight = float(found.group(1))
        yield tag, weight


def _lookup(wanted: str, known: dict[str, str]) -> str | None:
    # RFC 4647 §3.4 (Lookup): "de-DE-1996", then "de-DE", then "de".
    parts = _key(wanted).split("-")
    while parts:
        found = known.get("-".join(parts))
        if found is not None:
            return found
        parts.pop()
    return None


def _key(tag: str) -> str:
    return tag.replace("_", "-").lower()
