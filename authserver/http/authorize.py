"""GET /authorize: a redirect to the client, or to the sign-in page."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from authserver.actions import authorize as authorizing
from authserver.actions.authorize import ErrorPage, Redirect, StepUp, ToConsent
from authserver.http import pages
from authserver.http.addresses import client_address
from authserver.http.context import services
from authserver.http.cookies import read_session_cookie
from authserver.http.responses import redirect
from authserver.telemetry import metrics


async def authorize(request: Request) -> Response:
    found = services(request)
    params = request.query_params.multi_items()
    cookie = read_session_cookie(request, found.settings)
    try:
        address = client_address(request, found.settings.trusted_proxies)
        outcome = await authorizing.authorize(found, params, cookie, address=address)
    except ErrorPage as exc:
        metrics.AUTHORIZE.labels("error_page").inc()
        return pages.error_page(request, found.settings, exc.description, 400)
    if isinstance(outcome, Redirect):
        label = "consent" if isinstance(outcome, ToConsent) else "code"
        metrics.AUTHORIZE.labels("error" if outcome.error else label).inc()
        return redirect(outcome.url, 302)
    metrics.AUTHORIZE.labels("sign_in").inc()
    # The request travels to the sign-in page unchanged, in its query string: the password
    # form, or (a step-up) only the second factor's.
    page = "/login/factor" if isinstance(outcome, StepUp) else "/login"
    return redirect(f"{found.settings.issuer}{page}?{request.url.query}", 302)
