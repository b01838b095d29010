"""The admin console's use cases (API.md, "Admin console"): signing the operator in through the
server's own code flow (sign_in.py), finding the operator behind a request (operator.py), and
one module per page. Every change calls the admin API's own use case (actions/admin), so it is
checked and audited the same, with the operator's `sub` as the actor."""

from __future__ import annotations

import json
from typing import Any

from authserver.services import Services


class SignInNeeded(Exception):
    """No live console session: the browser signs in (again)."""


class StaleSignIn(Exception):
    """A destructive action asked for by an operator whose sign-in is not recent enough (or,
    with a second factor, did not use it): the browser signs in again, with `max_age` and,
    when `mfa`, `acr_values=mfa`, then comes back to the action's confirmation page."""

    def __init__(self, mfa: bool) -> None:
        super().__init__()
        self.mfa = mfa


class NotAnOperator(Exception):
    """A live sign-in whose token the admin API would refuse (no `admin`, or no `mfa` where
    it is needed)."""


def seal(services: Services, id_hash: str, value: dict[str, Any]) -> bytes:
    # The row's id is the associated data: a sealed value moved to another row does not open.
    return services.factor_sealer.seal(f"console:{id_hash}", json.dumps(value).encode())


def unseal(services: Services, id_hash: str, sealed: bytes) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(services.factor_sealer.open(f"console:{id_hash}", sealed))
    return value
