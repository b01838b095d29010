"""The discovery documents: RFC 8414 authorization server metadata, the same document as OpenID
Connect Discovery 1.0 §3's configuration (GET /.well-known/oauth-authorization-server and
/.well-known/openid-configuration)."""

from __future__ import annotations

from typing import Any

from authserver.accounts.login_sessions import ACR_VALUES
from authserver.accounts.profiles import EMAIL_CLAIMS, PROFILE_CLAIMS
from authserver.actions.registration import PATH
from authserver.actions.token import GRANTS
from authserver.registration import OFF
from authserver.services import Services
from authserver.tokens.scopes import IDENTITY_SCOPES
from authserver_verify import dpop

CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]
# What ID tokens (id_tokens.py) and /userinfo (actions/userinfo.py) may carry.
CLAIMS = [
    "iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "azp", "amr", "acr", "at_hash",
    *PROFILE_CLAIMS, *EMAIL_CLAIMS,
]  # fmt: skip


async def metadata(services: Services) -> dict[str, Any]:
    issuer = services.settings.issuer
    algs = services.keys.ring.signing_algs
    return {
        "issuer": issuer,
        "jwks_uri": f"{issuer}/.well-known/jwks.json",
        "token_endpoint": f"{issuer}/token",
        "revocation_endpoint": f"{issuer}/revoke",
        "introspection_endpoint": f"{issuer}/introspect",
        "authorization_endpoint": f"{issuer}/authorize",
        "userinfo_endpoint": f"{issuer}/userinfo",
        "end_session_endpoint": f"{issuer}/end-session",
        # The grants actions/token.issue serves, from its registry.
        "grant_types_supported": list(GRANTS),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        # RFC 9700 §2.1.1: PKCE for every client, and only S256 (pkce.py).
        "code_challenge_methods_supported": ["S256"],
        # RFC 9207: every authorization response names its issuer.
        "authorization_response_iss_parameter_supported": True,
        "scopes_supported": sorted({*IDENTITY_SCOPES, *await services.clients.scopes_in_use()}),
        "token_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
        "revocation_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
        "introspection_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS[:2],
        "access_token_signing_alg_values_supported": algs,
        # OpenID Connect Discovery 1.0 §3.
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": algs,
        "claims_supported": CLAIMS,
        # The levels `acr` names and /authorize's acr_values asks for (login_sessions.acr_of).
        "acr_values_supported": list(ACR_VALUES),
        # /authorize refuses request objects (request_not_supported, request_uri_not_supported);
        # request_uri_parameter_supported must say so, as it defaults to true.
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
        # RFC 8707: `resource` at /authorize and /token binds a token to a registered resource
        # server (tokens/resources.py).
        "resource_indicators_supported": True,
        # RFC 9449 §5.1: the algorithms /token and /userinfo accept in DPoP proofs.
        "dpop_signing_alg_values_supported": sorted(dpop.DEFAULT_ALGS),
        # RFC 7591 dynamic client registration, when on (actions/registration.py).
        **registration_endpoint(services),
        # draft-ietf-oauth-client-id-metadata-document: https client_ids name their metadata
        # (metadata_documents/), when on.
        **(
            {"client_id_metadata_document_supported": True}
            if services.settings.client_id_metadata
            else {}
        ),
    }


def registration_endpoint(services: Services) -> dict[str, str]:
    if services.settings.registration == OFF:
        return {}
    return {"registration_endpoint": f"{services.settings.issuer}{PATH}"}
