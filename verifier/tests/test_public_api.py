"""The names a service imports from `authserver_verify`: pinned, so one cannot vanish unseen."""

from __future__ import annotations

import authserver_verify
import authserver_verify.starlette

PUBLIC = (
    "BadSignature Expired Fetch Fetched IntrospectionUnavailable Introspector InvalidToken "
    "KeySetUnavailable MalformedToken MissingClaim NotYetValid ProtectedResource Revoked "
    "UnacceptableHeader UnknownKey VerificationError Verifier WrongAudience WrongIssuer "
    "urllib_fetch"
)
STARLETTE = (
    "BearerAuthMiddleware authenticate require_active require_authentication require_role"
    " require_scope resource_metadata_endpoint with_resource_metadata"
)


def test_the_package_exports_exactly_these_names() -> None:
    assert sorted(authserver_verify.__all__) == sorted(PUBLIC.split())
    assert all(hasattr(authserver_verify, name) for name in authserver_verify.__all__)


def test_the_starlette_glue_exports_these_names() -> None:
    assert sorted(authserver_verify.starlette.__all__) == sorted(STARLETTE.split())


def test_every_refusal_is_an_invalid_token_and_every_error_a_verification_error() -> None:
    errors = [getattr(authserver_verify, n) for n in PUBLIC.split() if n[0].isupper()]
    errors = [e for e in errors if isinstance(e, type) and issubclass(e, Exception)]
    assert all(issubclass(e, authserver_verify.VerificationError) for e in errors)
    unavailable = {authserver_verify.KeySetUnavailable, authserver_verify.IntrospectionUnavailable}
    for error in set(errors) - unavailable - {authserver_verify.VerificationError}:
        assert issubclass(error, authserver_verify.InvalidToken), error


def test_the_dpop_module_exports_these_names() -> None:
    import authserver_verify.dpop

    names = (
        "DEFAULT_ALGS MAX_JTI_CHARS MAX_JWK_CHARS MAX_PROOF_CHARS NONCE_WINDOW_SECONDS "
        "SUPPORTED_ALGS WINDOW_SECONDS InvalidDPoPProof Nonces Proof ReplayCache UseDPoPNonce "
        "access_token_hash check_proof jwk_thumbprint normalize_htu one_proof"
    )
    assert sorted(authserver_verify.dpop.__all__) == sorted(names.split())
    assert issubclass(authserver_verify.dpop.InvalidDPoPProof, authserver_verify.VerificationError)
