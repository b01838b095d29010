"""The console's own client, registered by the server for itself at startup.

At startup rather than in a migration: its redirect URI is `AUTHSERVER_ISSUER`'s, which a
migration does not know, and an issuer changed later moves it along. Public (the exchange runs
inside the server, so a secret would guard nothing) and PKCE-bound as every code. An operator
may disable it (the console then signs nobody in); a deleted one is not brought back.
"""

from __future__ import annotations

from authserver.clients import Client, ClientChanges
from authserver.console_sessions import CALLBACK_PATH, CONSOLE_CLIENT_ID
from authserver.services import Services

SCOPES = ("openid", "admin")
NAME = "authserver console"


async def register_console_client(services: Services) -> None:
    redirect_uri = services.settings.issuer.rstrip("/") + CALLBACK_PATH
    now = services.clock()
    found = await services.clients.fresh(CONSOLE_CLIENT_ID)
    if found is None:
        client = Client(
            client_id=CONSOLE_CLIENT_ID,
            secret_hash=None,
            grant_types=("authorization_code", "refresh_token"),
            scopes=SCOPES,
            redirect_uris=(redirect_uri,),
            client_name=NAME,
        )
        # False: another instance registered it first, or an operator deleted it.
        await services.clients.create(client, now)
    elif found.redirect_uris != (redirect_uri,):
        changes = ClientChanges(redirect_uris=(redirect_uri,))
        await services.clients.update(CONSOLE_CLIENT_ID, changes, now, [])
