"""The hosted pages (sign-in, errors, signed in/out): server-rendered HTML with strict headers.

Templates are Jinja2 with autoescaping. AUTHSERVER_TEMPLATES_DIR names a folder whose files
replace the built-in ones of the same name (the rest are still found here), so an operator can
restyle `signin.css` alone, or rewrite `login.html` whole. Each page speaks the language
languages.choose picks for the request, in the words of translations.py's catalogs.

Every page is sent with a Content-Security-Policy that allows nothing but its own stylesheet
(no script, but for the one line, named by its nonce, that submits /end-session's PostAgain
form: every page works without JavaScript), `frame-ancestors 'none'` and X-Frame-Options DENY
against clickjacking, Cache-Control no-store, and Referrer-Policy same-origin (so the browser
names our origin on the form's post).
"""

from __future__ import annotations

import functools
import gettext
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates

from authserver.config import Settings
from authserver.http.responses import NO_STORE
from authserver.i18n import languages, translations

STYLESHEET = "signin.css"
FAVICON = "favicon.svg"
PASSKEY_SCRIPT = "passkeys.js"
# The files of the templates folder served as they are, and their types.
ASSETS = {STYLESHEET: "text/css", FAVICON: "image/svg+xml", PASSKEY_SCRIPT: "text/javascript"}
# The pages that run the passkeys' one same-origin script (and let it call our JSON endpoints);
# without JavaScript they still offer the password and the codes.
PASSKEY_PAGES = {"login.html", "login_factor.html", "account.html"}


@functools.lru_cache(maxsize=64)
def _templates(custom: Path | None, language: str) -> Jinja2Templates:
    return Jinja2Templates(env=translations.environment(custom, language))


def language(request: Request, settings: Settings) -> str:
    """The page's language: the request's `ui_locales` (in the query string of /authorize and
    /login, or as posted_ui_locales says), then Accept-Language, then English."""
    posted: str | None = getattr(request.state, "ui_locales", None)
    return languages.choose(
        posted or request.query_params.get("ui_locales"),
        request.headers.get("accept-language"),
        translations.languages(settings.templates_dir),
    )


def posted_ui_locales(request: Request, value: str | None) -> None:
    """The `ui_locales` of a request that came as a form (POST /end-session), for its pages."""
    request.state.ui_locales = value


def words(request: Request, settings: Settings) -> gettext.NullTranslations:
    """The page's language's translations, for a sentence a handler puts on the page."""
    return translations.translations(settings.templates_dir, language(request, settings))


def content_security_policy(
    form_targets: tuple[str, ...] = (), script_nonce: str | None = None, passkeys: bool = False
) -> str:
    """`form_targets`: origins a form of the page may end up at. A sign-in form's answer
    redirects to the client, and browsers check form-action on each redirect of a submission.
    `script_nonce`: the one inline script a page may run (/end-session's PostAgain page).
    `passkeys`: the page runs /assets/passkeys.js, a file of ours (no inline script), which
    calls the passkeys' JSON endpoints of this origin."""
    scripts = [f"script-src 'nonce-{script_nonce}'"] if script_nonce else []
    if passkeys:
        scripts = ["script-src 'self'", "connect-src 'self'"]
    return "; ".join(
        [
            "default-src 'none'",
            *scripts,
            "style-src 'self'",
            "img-src 'self'",
            "form-action " + " ".join(["'self'", *form_targets]),
            "frame-ancestors 'none'",
            "base-uri 'none'",
        ]
    )


def origin_of(uri: str) -> str:
    parts = urlsplit(uri)
    return f"{parts.scheme}://{parts.netloc}"


def render(
    request: Request,
    settings: Settings,
    name: str,
    context: dict[str, Any],
    status: int = 200,
    *,
    form_targets: tuple[str, ...] = (),
    headers: dict[str, str] | None = None,
    script_nonce: str | None = None,
) -> Response:
    lang = language(request, settings)
    page_headers = {
        **NO_STORE,
        "Content-Language": lang.replace("_", "-"),
        # The same URL answers in another language for another Accept-Language (RFC 9110
        # §12.5.5); the pages are no-store, but a cache that ignores that still keys on it.
        "Vary": "Accept-Language",
        "Content-Security-Policy": content_security_policy(
            form_targets, script_nonce, name in PASSKEY_PAGES
        ),
        "X-Frame-Options": "DENY",
        # Not the server-wide no-referrer: under it a browser sends `Origin: null` with the
        # page's own form post, which the sign-in form's Origin check refuses (Chromium does).
        # same-origin still sends no Referer (with the request's query) to any other origin.
        "Referrer-Policy": "same-origin",
        **(headers or {}),
    }
    templates = _templates(settings.templates_dir, lang)
    return templates.TemplateResponse(
        request,
        name,
        {
            "issuer": settings.issuer,
            "stylesheet": f"/assets/{STYLESHEET}",
            "favicon": f"/assets/{FAVICON}",
            "passkey_script": f"/assets/{PASSKEY_SCRIPT}" if name in PASSKEY_PAGES else None,
            **context,
        },
        status_code=status,
        headers=page_headers,
    )


def error_page(
    request: Request,
    settings: Settings,
    description: str,
    status: int,
    headers: dict[str, str] | None = None,
) -> Response:
    # The sentences of ErrorPage and the handlers are the catalogs' ids; one the catalog does
    # not know (an OAuth error's own) shows as it is.
    context = {"description": words(request, settings).gettext(description)}
    return render(request, settings, "error.html", context, status, headers=headers)


async def stylesheet(request: Request) -> Response:
    return _asset(request, STYLESHEET)


async def passkey_script(request: Request) -> Response:
    return _asset(request, PASSKEY_SCRIPT)


async def favicon(request: Request) -> Response:
    """The pages' icon, at /assets/favicon.svg (the pages' <link rel="icon">) and at
    /favicon.ico, where a browser looks without being told."""
    return _asset(request, FAVICON)


def _asset(request: Request, name: str) -> Response:
    settings: Settings = request.app.state.services.settings
    env = translations.environment(settings.templates_dir, languages.DEFAULT)
    assert env.loader is not None
    text, _, _ = env.loader.get_source(env, name)
    headers = {"Cache-Control": "public, max-age=300"}
    return Response(text, media_type=ASSETS[name], headers=headers)
