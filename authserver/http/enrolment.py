"""The authenticator app's setup page (actions/enrolment.py), shown by the account page and, under
AUTHSERVER_MFA=required, by the sign-in."""

from __future__ import annotations

import segno
from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import Response

from authserver.actions.enrolment import TotpEnrolment
from authserver.http import pages
from authserver.services import Services


def setup_page(
    request: Request,
    found: Services,
    enrolment: TotpEnrolment,
    csrf_token: str,
    extra: dict[str, object],
    status: int = 200,
    form_targets: tuple[str, ...] = (),
) -> Response:
    """The authenticator app's setup page: the account page's, or (`extra` naming its form's
    `action`) the sign-in's under AUTHSERVER_MFA=required."""
    settings = found.settings
    words = pages.words(request, settings)
    # Inline SVG markup, not an <img>: nothing is fetched (the secret never leaves the page in
    # a URL) and the CSP (img-src 'self', no data:) stays as it is. segno writes only digits
    # and fixed attribute names, so the markup is safe to insert unescaped.
    qr = segno.make(enrolment.uri, error="m").svg_inline(
        scale=4, title=words.gettext("QR code for your authenticator app")
    )
    context = {
        "enrolment": enrolment,
        "qr_svg": Markup(qr),
        "secret_groups": " ".join(
            enrolment.secret[i : i + 4] for i in range(0, len(enrolment.secret), 4)
        ),
        "error": words.gettext(enrolment.problem) if enrolment.problem else None,
        "csrf_token": csrf_token,
        **extra,
    }
    return pages.render(
        request, settings, "account_totp.html", context, status, form_targets=form_targets
    )
