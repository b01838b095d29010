"""`authserver mail test ADDRESS`: queue a test mail, which a running `serve` sends."""

from __future__ import annotations

import argparse
import sys

from authserver.actions.admin.mail import queue_test_mail
from authserver.cli.common import CommandError, as_admin
from authserver.config import Settings


def add_mail_test(args: argparse.Namespace, settings: Settings) -> int:
    if not settings.mail_enabled:
        raise CommandError("mail is off: set AUTHSERVER_SMTP_URL and AUTHSERVER_MAIL_FROM")
    mail_id = as_admin(settings, lambda s: queue_test_mail(s, args.address, args.locale))
    print(
        f"queued test mail {mail_id} to {args.address}: a running `authserver serve` sends it "
        "within seconds (its log says why if it cannot)",
        file=sys.stderr,
    )
    return 0
