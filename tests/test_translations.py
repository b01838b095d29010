"""The message catalogs: in step with the pages, German complete, a deployment's own merged in."""

from __future__ import annotations

import importlib.machinery
import importlib.util
from pathlib import Path
from types import ModuleType

from babel.messages.pofile import read_po

from authserver.i18n import translations
from tests.http.signin import write_catalog

ROOT = Path(__file__).resolve().parent.parent


def _script() -> ModuleType:
    path = ROOT / "scripts" / "messages"
    loader = importlib.machinery.SourceFileLoader("messages_script", str(path))
    spec = importlib.util.spec_from_loader(loader.name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def _ids(path: Path) -> set[object]:
    with path.open("rb") as source:
        return {message.id for message in read_po(source) if message.id}


def test_the_catalogs_hold_every_sentence_the_pages_show() -> None:
    """A sentence added to a page without scripts/messages would show in English only."""
    extracted = {message.id for message in _script().extracted() if message.id}
    assert "The username or password is wrong." in extracted
    assert "The client is not registered." in extracted  # ErrorPage's sentences
    assert _ids(translations.LOCALES / "messages.pot") == extracted, "run scripts/messages"
    for path in translations.LOCALES.glob(f"*/{translations.CATALOG}"):
        assert _ids(path) == extracted, f"{path}: run scripts/messages"


def test_german_translates_each_sentence_with_the_same_placeholders() -> None:
    path = translations.LOCALES / "de" / translations.CATALOG
    with path.open("rb") as source:
        catalog = read_po(source)
    for message in catalog:
        if not message.id:
            continue
        strings = message.string if isinstance(message.string, tuple) else (message.string,)
        assert all(strings) and not message.fuzzy, message.id
        # Babel's checks: the %(name)s placeholders and the plural forms agree with the id.
        assert not list(message.check(catalog)), message.id
    german = translations.translations(None, "de")
    assert german.gettext("Sign in") == "Anmelden"
    assert german.ngettext(
        "Too many failed sign-ins. Try again in %(seconds)d second.",
        "Too many failed sign-ins. Try again in %(seconds)d seconds.",
        1,
    ) == ("Zu viele fehlgeschlagene Anmeldungen. Versuchen Sie es in %(seconds)d Sekunde erneut.")


def test_a_deployments_catalog_adds_a_language_and_replaces_single_sentences(
    tmp_path: Path,
) -> None:
    write_catalog(tmp_path, "fr", {"Sign in": "Se connecter"})
    write_catalog(tmp_path, "de", {"Username": "Anmeldename"})

    assert translations.languages(tmp_path) == {"en", "de", "fr"}
    assert translations.languages(None) == {"en", "de"}
    french = translations.environment(tmp_path, "fr").get_template("signed_in.html")
    assert translations.translations(tmp_path, "fr").gettext("Sign in") == "Se connecter"
    assert "Signed in" in french.render(stylesheet="", favicon="")  # untranslated: English
    german = translations.translations(tmp_path, "de")
    assert german.gettext("Username") == "Anmeldename"  # replaced
    assert german.gettext("Password") == "Passwort"  # the built-in catalog's still
    assert translations.translations(None, "de").gettext("Username") == "Benutzername"


def test_a_template_learns_its_language_tag() -> None:
    env = translations.environment(None, "de")
    assert env.from_string("{{ lang }} {{ _('Sign out') }}").render() == "de Abmelden"
    assert translations.environment(None, "en").from_string("{{ lang }}").render() == "en"
