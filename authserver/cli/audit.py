"""`authserver audit`: the audit trail, newest first."""

from __future__ import annotations

import argparse

from authserver.actions.admin import audit as admin_audit
from authserver.audit import AuditQuery
from authserver.cli.common import CommandError, as_admin, print_rows
from authserver.config import Settings

AUDIT_COLUMNS = ["id", "at", "actor", "type", "target", "user", "family", "detail"]


def add_audit_command(args: argparse.Namespace, settings: Settings) -> int:
    if not 1 <= args.limit <= admin_audit.MAX_LIMIT:
        raise CommandError(f"--limit must be from 1 to {admin_audit.MAX_LIMIT}")
    query = AuditQuery(args.limit, args.before, args.user, args.family, args.type)
    page = as_admin(settings, lambda s: admin_audit.audit_page(s, query))
    print_rows(args, page.events, AUDIT_COLUMNS)
    return 0
