"""`authserver audit`: the audit trail, newest first."""

from __future__ import annotations

import argparse

from authserver.actions.admin import audit as admin_audit
from authserver.audit import AuditQuery
from authserver.cli.common import CommandError, _as_admin, _print_rows
from authserver.config import Settings

AUDIT_COLUMNS = ["id", "at", "actor", "type", "target", "user", "family", "detail"]


def _audit(args: argparse.Namespace, settings: Settings) -> int:
    if not 1 <= args.limit <= 500:
        raise CommandError("--limit must be from 1 to 500")
    query = AuditQuery(args.limit, args.before, args.user, args.family, args.type)

    events = _as_admin(settings, lambda s: admin_audit.audit_events(s, query))
    _print_rows(args, events, AUDIT_COLUMNS)
    return 0
