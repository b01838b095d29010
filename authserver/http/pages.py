"""The hosted pages (sign-in, errors, signed in/out): server-rendered HTML with strict headers.

Templates are Jinja2 with autoescaping. AUTHSERVER_TEMPLATES_DIR names a folder whose files
replace the built-in ones of the same name (the rest are still found here), so an operator can
restyle `signin.css` alone, or rewrite `login.html` whole.

Every page is sent with a Content-Security-Policy that allows nothing but its own stylesheet
(no script, but for the one line, named by its nonce, that submits /end-session's PostAgain
form: every page works without JavaScript), `frame-ancestors 'none'` and X-Frame-Options DENY
against clickjacking, Cache-Control no-store, and Referrer-Policy same-origin (so the browser
names our origin on the form's post).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jinja2
from starlette.requests import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates

from authserver.config import Settings
from authserver.http.responses import NO_STORE

BUILT_IN = Path(__file__).parent / "templates"
STYLESHEET = "signin.css"


@functools.lru_cache(maxsize=8)
def _templates(custom: Path | None) -> Jinja2Templates:
    loaders: list[jinja2.BaseLoader] = [jinja2.FileSystemLoader(BUILT_IN)]
    if custom is not None:
        loaders.insert(0, jinja2.FileSystemLoader(custom))
    environment = jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders), autoescape=True, undefined=jinja2.StrictUndefined
    )
    return Jinja2Templates(env=environment)


def content_security_policy(
    form_targets: tuple[str, ...] = (), script_nonce: str | None = None
) -> str:
    """`form_targets`: origins a form of the page may end up at. A sign-in form's answer
    redirects to the client, and browsers check form-action on each redirect of a submission.
    `script_nonce`: the one inline script a page may run (/end-session's PostAgain page)."""
    scripts = [f"script-src 'nonce-{script_nonce}'"] if script_nonce else []
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
    page_headers = {
        **NO_STORE,
        "Content-Security-Policy": content_security_policy(form_targets, script_nonce),
        "X-Frame-Options": "DENY",
        # Not the server-wide no-referrer: under it a browser sends `Origin: null` with the
        # page's own form post, which the sign-in form's Origin check refuses (Chromium does).
        # same-origin still sends no Referer (with the request's query) to any other origin.
        "Referrer-Policy": "same-origin",
        **(headers or {}),
    }
    templates = _templates(settings.templates_dir)
    return templates.TemplateResponse(
        request,
        name,
        {"issuer": settings.issuer, "stylesheet": f"/assets/{STYLESHEET}", **context},
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
    context = {"description": description}
    return render(request, settings, "error.html", context, status, headers=headers)


async def stylesheet(request: Request) -> Response:
    settings: Settings = request.app.state.services.settings
    source = _templates(settings.templates_dir).env.loader
    assert source is not None
    css, _, _ = source.get_source(_templates(settings.templates_dir).env, STYLESHEET)
    return Response(css, media_type="text/css", headers={"Cache-Control": "public, max-age=300"})
