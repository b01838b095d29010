"""languages.choose: ui_locales, then Accept-Language (weights honoured), then English."""

from __future__ import annotations

import pytest

from authserver.i18n.languages import DEFAULT, choose

AVAILABLE = frozenset({"en", "de", "pt_BR"})


@pytest.mark.parametrize(
    ("ui_locales", "accept_language", "chosen"),
    [
        (None, None, "en"),
        ("", "", "en"),
        (None, "de-DE,de;q=0.9", "de"),  # a German browser
        (None, "de-AT", "de"),  # RFC 4647 §3.4: de-AT, then de
        (None, "en-US,de;q=0.5", "en"),  # English is always there, not skipped for German
        (None, "fr, de;q=0.8, en;q=0.7", "de"),  # the first one we speak
        (None, "en;q=0.2, de;q=0.9", "de"),  # weights, not order
        (None, "de;q=0, en", "en"),  # q=0: not acceptable
        (None, "DE", "de"),  # tags are case-insensitive
        (None, "pt-br", "pt_BR"),  # a folder named pt_BR answers pt-BR
        (None, "*", "en"),
        ("de", "en", "de"),  # ui_locales first
        ("fr-CA fr de", "en", "de"),  # its order, skipping what we do not speak
        ("fr", "de", "de"),  # nothing of ui_locales: Accept-Language next
        ("xx", "yy", "en"),  # nothing at all: English
    ],
)
def test_the_users_first_language_that_we_speak(
    ui_locales: str | None, accept_language: str | None, chosen: str
) -> None:
    assert choose(ui_locales, accept_language, AVAILABLE) == chosen


@pytest.mark.parametrize(
    "accept_language",
    [
        "de;q=abc",
        "de;q=2",
        "de;q=0.12345",
        "de;q=-1",
        "de;q=1.5",
        "de;q",
        "de;;;",
        "de;q=0.5;q=0.9",
        "<script>alert(1)</script>",
        "de\x00",
        "ä",
        ",,,,",
        ";q=1",
        "de-" + "x" * 9,
    ],
)
def test_a_garbled_range_is_skipped_not_refused(accept_language: str) -> None:
    assert choose(None, accept_language, AVAILABLE) == DEFAULT
    assert choose(None, accept_language + ", de;q=0.1", AVAILABLE) == "de"


def test_hostile_sizes_are_read_only_so_far() -> None:
    # 10 KB of ranges nobody speaks, then German: the header is read no further than 1 KB.
    long = ", ".join(["xx"] * 3000) + ", de"
    assert len(long) > 10_000
    assert choose(None, long, AVAILABLE) == DEFAULT
    assert choose(" ".join(["xx"] * 3000) + " de", None, AVAILABLE) == DEFAULT
    assert choose(None, "x" * 10_000, AVAILABLE) == DEFAULT


@pytest.mark.parametrize(
    "ui_locales",
    ['"><script>alert(1)</script>', "de<b>", "de\nen", "de\u00a0en", "de  en", " de"],
)
def test_ui_locales_takes_only_well_formed_tags(ui_locales: str) -> None:
    chosen = choose(ui_locales, None, AVAILABLE)
    assert chosen in {"en", "de"}
    assert chosen == ("de" if ui_locales in {"de  en", " de"} else "en")
