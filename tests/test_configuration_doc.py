"""docs/configuration.md is generated from config.py, and every setting is described there."""

from __future__ import annotations

from dataclasses import fields

from authserver.config import DESCRIPTIONS, PREFIX, Settings, SettingsError, load_settings
from tests._configuration_doc import DOC, render


def test_every_setting_has_a_description_and_every_description_a_setting() -> None:
    names = {f.name for f in fields(Settings)}
    missing = sorted(names - DESCRIPTIONS.keys())
    extra = sorted(DESCRIPTIONS.keys() - names)
    assert not missing, f"add a line for each to DESCRIPTIONS in authserver/config.py: {missing}"
    assert not extra, f"DESCRIPTIONS in authserver/config.py names no Settings field: {extra}"


def test_every_field_is_read_from_its_variable() -> None:
    # The variable of field `x` is AUTHSERVER_X: the document and the typo check rely on it.
    unread = []
    for f in fields(Settings):
        try:
            load_settings({f"{PREFIX}{f.name.upper()}": ""})
        except SettingsError as exc:
            unread.append(exc.problems)
    assert not unread


def test_the_document_is_current() -> None:
    assert DOC.read_text() == render(), "docs/configuration.md is stale: run scripts/docs"
