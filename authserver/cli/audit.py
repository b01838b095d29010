"""`authserver audit`: the audit trail, newest first."""

from __future__ import annotations

import argparse
from typing import Any

from authserver.audit import AuditQuery
from authserver.cli.common import CommandError, _as_admin, _print_rows
from authserver.config import Settings
from authserver.services import Services

AUDIT_COLUMNS = ["id", "at", "actor", "type", "target", "user", "family", "detail"]


def _audit(args: argparse.Namespace, settings: Settings) -> int:
    if not 1 <= args.limit <= 500:
        raise CommandError("--limit must be from 1 to 500")
    query = AuditQuery(args.limit, args.before, args.user, args.family, args.type)

    async def page(services: Services) -> list[dict[str, Any]]:
        return [
            {
                "id": e.id,
                "at": e.at,
                "actor": e.actor,
                "type": e.action,
                "target": e.target,
                "user": e.user,
                "family": e.family,
                "detail": e.detail,
            }  # fmt: skip
            for e in await services.audit.page(query)
        ]

    _print_rows(args, _as_admin(settings, page), AUDIT_COLUMNS)
    return 0
