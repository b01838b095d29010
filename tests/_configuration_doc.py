"""Writes docs/configuration.md from authserver/config.py's own declarations: the fields of
`Settings` (name, default) and `DESCRIPTIONS` (meaning). `scripts/docs` runs it;
tests/test_configuration_doc.py fails when the file is stale.
"""

from __future__ import annotations

import sys
from dataclasses import fields
from pathlib import Path

from authserver.config import (
    DESCRIPTIONS,
    FILE_SETTINGS,
    NOT_SETTINGS,
    NOT_SETTINGS_PREFIX,
    PREFIX,
    Settings,
)

DOC = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"

HEAD = """\
# Configuration

<!-- Generated from authserver/config.py by scripts/docs; edit there, not here.
     tests/test_configuration_doc.py fails when this file is stale. -->

authserver reads its settings from environment variables, once, at start. Every command
(`serve`, `migrate`, `users create`, ...) reads the same ones. A bad value stops the command
with one line per problem on stderr, all problems at once, exit status 2; nothing starts
half-configured.

- An empty value means the default.
- A variable starting with `AUTHSERVER_` that is not a setting below stops every command too,
  with one line naming it and the closest known name
  (`AUTHSERVER_DATABSE_URL: not a setting authserver knows; did you mean
  AUTHSERVER_DATABASE_URL?`): a typo must not leave a setting at its default unnoticed.
  Exceptions, which are not settings: {not_settings}, and every name starting with
  `{test_prefix}` (the test suite's own, inherited by the servers it starts).
- Secrets may come from files (Docker secrets, Kubernetes secret volumes): {file_settings}.
  The file's content, stripped of surrounding whitespace, is the value. Setting both a
  variable and its `_FILE` is refused.

| variable | default | meaning |
| --- | --- | --- |
"""

TAIL = """
## `serve`'s flags

`authserver serve [--host HOST] [--port PORT] [--workers 1] [--log-level info]
[--http auto|h11|httptools]`; `--host` and `--port` override `AUTHSERVER_HOST` and
`AUTHSERVER_PORT`. With `AUTHSERVER_ISSUER` unset, the issuer is `http://HOST:PORT` of where
`serve` listens (`127.0.0.1` when the host is a wildcard address such as `0.0.0.0`). At
start, `serve` logs one line (`"msg": "serving …"`) naming the issuer, the database (its
password replaced by `***`), the active key's kid and alg, the number of workers, and whether
mail is on (`"mail": "on via smtps://USER:***@HOST:PORT"`, or off).

## Where each setting is used

- Tokens and sessions: `AUTHSERVER_ISSUER`, `AUTHSERVER_AUDIENCE`, the TTLs,
  `AUTHSERVER_REFRESH_REUSE_GRACE`, `AUTHSERVER_CLOCK_LEEWAY` ([api.md](api.md)).
- Keys: `AUTHSERVER_SIGNING_ALG`, `AUTHSERVER_JWKS_MAX_AGE`, `AUTHSERVER_KEY_ROTATION_INTERVAL`,
  the KEK settings, `AUTHSERVER_KEYS_DIR` ([operators.md](operators.md#keys); the KEK:
  [operations.md](operations.md#rotating-the-key-encryption-key-kek)).
- Browsers: `AUTHSERVER_ALLOWED_ORIGINS`, `AUTHSERVER_COOKIE_SECURE` ([spa.md](spa.md)).
- Capacity and limits: argon2, `AUTHSERVER_PASSWORD_HASH_CONCURRENCY`,
  `AUTHSERVER_DB_POOL_SIZE`, the timeouts, `AUTHSERVER_MAX_CONNECTIONS`
  ([operations.md](operations.md)).
- Mail: `AUTHSERVER_SMTP_URL`, `AUTHSERVER_MAIL_FROM`
  ([operations.md](operations.md#mail)).
"""


def _default(value: object) -> str:
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if isinstance(value, tuple):
        return "empty" if not value else "`" + ",".join(map(str, value)) + "`"
    return f"`{value}`"


def render() -> str:
    defaults = Settings()
    rows = [
        f"| `{PREFIX}{f.name.upper()}` | {_default(getattr(defaults, f.name))} "
        f"| {DESCRIPTIONS[f.name]} |"
        for f in fields(Settings)
    ]
    head = HEAD.format(
        not_settings=", ".join(f"`{n}`" for n in NOT_SETTINGS),
        test_prefix=NOT_SETTINGS_PREFIX,
        file_settings=", ".join(f"`{PREFIX}{n}_FILE`" for n in FILE_SETTINGS),
    )
    return head + "\n".join(rows) + "\n" + TAIL


if __name__ == "__main__":
    DOC.write_text(render())
    print(f"wrote {DOC}", file=sys.stderr)
