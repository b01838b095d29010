"""`authserver sessions revoke`: end one session (actions/admin/sessions.py)."""

from __future__ import annotations

import argparse
import sys

from authserver.actions.admin import sessions as admin_sessions
from authserver.cli.common import CLI, as_admin
from authserver.config import Settings


def add_revoke_session(args: argparse.Namespace, settings: Settings) -> int:
    as_admin(settings, lambda s: admin_sessions.revoke_session(s, CLI, args.sid))
    print(f"revoked session {args.sid}", file=sys.stderr)
    return 0
