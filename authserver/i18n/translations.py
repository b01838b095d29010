"""The hosted pages' words in each language: Jinja2 templates and Babel message catalogs.

The templates are written in English, their sentences wrapped in `{% trans %}` or `_()`; the
catalogs say them in other languages, one gettext `.po` file each:

    authserver/http/locale/<lang>/LC_MESSAGES/messages.po          built in (de)
    $AUTHSERVER_TEMPLATES_DIR/locale/<lang>/LC_MESSAGES/messages.po a deployment's own

A deployment's catalog adds a language, or replaces the built-in sentences it translates (the
rest of the built-in catalog stays). The `.po` files are read with Babel as the server starts
(app.py) and kept for the process's life: nothing to compile at install. `environment(folder,
lang)` is the one place a template gets its words, for the pages and for anything else (mails)
rendered from the same folder; languages.choose(user.locale, None, languages(folder)) picks
the `lang` of someone who is not at a browser.
"""

from __future__ import annotations

import functools
import gettext
import io
from collections.abc import Callable
from pathlib import Path

import jinja2
from babel.messages.catalog import Catalog
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

from authserver.i18n.languages import DEFAULT

TEMPLATES = Path(__file__).parents[1] / "http" / "templates"
LOCALES = Path(__file__).parents[1] / "http" / "locale"
CATALOG = Path("LC_MESSAGES") / "messages.po"


def N_(message: str) -> str:
    """Marks a sentence for the catalogs (scripts/messages finds it) that is translated later,
    where the page that shows it knows its language; gettext's name for it."""
    return message


def languages(custom: Path | None) -> frozenset[str]:
    """The language tags the pages speak: English, and each folder with a catalog."""
    return frozenset({DEFAULT, *_catalogs(custom)})


def translations(custom: Path | None, language: str) -> gettext.NullTranslations:
    """The words of `language` (one of `languages()`); English, or an unknown tag: the
    templates' own."""
    return _catalogs(custom).get(language) or gettext.NullTranslations()


@functools.lru_cache(maxsize=64)
def environment(custom: Path | None, language: str) -> jinja2.Environment:
    """The Jinja2 environment whose templates speak `language`: `custom`'s files first, then
    the built-in ones; autoescaping on; `lang` (the BCP 47 tag) known to every template."""
    return _environment(custom, language, True)


@functools.lru_cache(maxsize=64)
def mail_environment(custom: Path | None, language: str) -> jinja2.Environment:
    """As `environment`, for mail: `.html` escaped, the plain text part not (escaping it would
    show `&amp;` to the reader); and the file keeps its last line break."""
    env = _environment(custom, language, jinja2.select_autoescape(["html"], default=False))
    env.keep_trailing_newline = True
    return env


def _environment(
    custom: Path | None, language: str, autoescape: bool | Callable[[str | None], bool]
) -> jinja2.Environment:
    loaders = [jinja2.FileSystemLoader(TEMPLATES)]
    if custom is not None:
        loaders.insert(0, jinja2.FileSystemLoader(custom))
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        autoescape=autoescape,
        undefined=jinja2.StrictUndefined,
        extensions=["jinja2.ext.i18n"],
    )
    # A wrapped sentence's line breaks and indentation are not part of it (the catalogs' ids
    # are the trimmed text, as scripts/messages extracts them).
    env.policies["ext.i18n.trimmed"] = True
    # newstyle: `_()` escapes its %(name)s values and is safe to use under autoescape.
    words = translations(custom, language)
    env.install_gettext_translations(words, newstyle=True)  # type: ignore[attr-defined]
    env.globals["lang"] = language.replace("_", "-")
    return env


@functools.lru_cache(maxsize=8)
def _catalogs(custom: Path | None) -> dict[str, gettext.NullTranslations]:
    folders = [LOCALES] if custom is None else [LOCALES, custom / "locale"]
    found: dict[str, Catalog] = {}
    for folder in folders:
        for path in sorted(folder.glob(f"*/{CATALOG}")):
            language = path.parents[1].name
            with path.open("rb") as source:
                catalog = read_po(source)
            if language in found:
                _replace(found[language], catalog)
            else:
                found[language] = catalog
    return {language: _compiled(catalog) for language, catalog in found.items()}


def _replace(catalog: Catalog, replacements: Catalog) -> None:
    for message in replacements:
        if not message.id or not message.string or message.fuzzy:
            continue
        current = catalog.get(message.id, message.context)
        if current is None:
            catalog[message.id] = message
        else:  # Catalog's [] would merge the two, keeping our string
            current.string = message.string
            current.flags.discard("fuzzy")


def _compiled(catalog: Catalog) -> gettext.NullTranslations:
    # Babel's catalog → the gettext object Jinja2 wants, through an in-memory .mo file. Fuzzy
    # and untranslated messages are left out, so they show in English.
    binary = io.BytesIO()
    write_mo(binary, catalog)
    binary.seek(0)
    return Translations(binary)
