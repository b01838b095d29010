"""Settings: one typed, frozen object built once from an environment mapping.

`load_settings` checks every value and reports all bad ones together, one line each, so an
operator fixes a broken deployment in one go. Tests pass a plain dict.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import ipaddress
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.utils import parseaddr
from pathlib import Path
from typing import Literal, TypeVar
from urllib.parse import unquote, urlsplit

SIGNING_ALGS = ("RS256", "EdDSA")
# AUTHSERVER_SIGNUP (actions/sign_up.py): no sign-up page, one that signs the new user in at
# once, or one whose accounts sign in only once their address is verified.
SIGNUP_MODES = ("off", "open", "verified")
PREFIX = "AUTHSERVER_"
# Secrets may come from a file instead (Docker secrets, Kubernetes secret volumes):
# AUTHSERVER_<NAME>_FILE names a file whose content (stripped) is the value.
FILE_SETTINGS = (
    "DATABASE_URL",
    "KEY_ENCRYPTION_KEY",
    "KEY_ENCRYPTION_KEY_PREVIOUS",
    "SMTP_URL",
)
# AUTHSERVER_ variables that are not settings yet must not be refused as typos:
# - KEY_EPOCH_FILE: set by `serve` for its workers (keys/epoch.py);
# - NEW_KEY_ENCRYPTION_KEY: the input of `authserver keys rewrap` (cli/keys.py);
# - every AUTHSERVER_TEST_* name: the test suite's (tests/_postgres.py, .ci/run), which its
#   `authserver` subprocesses inherit.
NOT_SETTINGS = ("AUTHSERVER_KEY_EPOCH_FILE", "AUTHSERVER_NEW_KEY_ENCRYPTION_KEY")
NOT_SETTINGS_PREFIX = "AUTHSERVER_TEST_"
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

T = TypeVar("T")


# How the mail server is reached (AUTHSERVER_SMTP_URL's scheme): in the clear, TLS from the
# first byte (RFC 8314 §3.3, "implicit TLS"), or upgraded by STARTTLS (RFC 3207).
SMTP_SECURITY: dict[str, Literal["none", "tls", "starttls"]] = {
    "smtp": "none",
    "smtps": "tls",
    "smtp+starttls": "starttls",
}
SMTP_DEFAULT_PORTS = {"smtp": 25, "smtps": 465, "smtp+starttls": 587}


@dataclass(frozen=True)
class SmtpServer:
    """AUTHSERVER_SMTP_URL, parsed. Its password is never shown: not by repr, not by str."""

    scheme: str
    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @property
    def security(self) -> Literal["none", "tls", "starttls"]:
        return SMTP_SECURITY[self.scheme]

    def __str__(self) -> str:
        user = f"{self.username}:***@" if self.username is not None else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{user}{host}:{self.port}"


class SettingsError(ValueError):
    """Raised with every problem found, one per line."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Settings:
    database_url: str = "sqlite+aiosqlite:///./authserver.db"
    issuer: str = "http://127.0.0.1:8000"
    audience: str = "authserver-api"
    signing_alg: str = "RS256"  # for newly made keys
    access_token_ttl: int = 900
    refresh_token_ttl: int = 1_209_600  # idle lifetime of one refresh token (14 days)
    session_ttl: int = 2_592_000  # absolute lifetime of a family (30 days)
    refresh_reuse_grace: int = 0  # 0 = strict: any re-presented token kills its family
    jwks_max_age: int = 300
    allowed_origins: tuple[str, ...] = ()
    cookie_secure: bool = True
    # Peers whose X-Forwarded-For is believed (addresses or networks); empty = the socket's
    # peer is the client, and X-Forwarded-For is ignored.
    trusted_proxies: tuple[IPNetwork, ...] = ()
    # 32 raw bytes; None means "make one once in keys_dir".
    key_encryption_key: bytes | None = field(default=None, repr=False)
    # During a KEK switch: the other KEK, tried when the first does not open a key (README,
    # "Rotating keys"). Never used to seal.
    key_encryption_key_previous: bytes | None = field(default=None, repr=False)
    # Seconds an active key signs before an instance rotates it by the rules; 0 = never.
    key_rotation_interval: int = 0
    keys_dir: Path = Path("keys")
    # Clock skew tolerated when checking exp/iat of tokens presented back to us.
    clock_leeway: int = 30
    # argon2id cost. Defaults are RFC 9106's second recommended option (64 MiB, t=3, p=4).
    argon2_time_cost: int = 3
    argon2_memory_kib: int = 65_536
    argon2_parallelism: int = 4
    # How many hashes may run at once: each holds argon2_memory_kib of RAM.
    password_hash_concurrency: int = 2
    # The password policy's minimum length, in characters after NFKC (password_policy.py).
    password_min_length: int = 12
    db_pool_size: int = 10
    # Postgres itself, not a transaction pooler in front of it: for what a pooler cannot carry
    # (LISTEN for changes other instances make, db/notify.py; `migrate`'s session lock).
    # None = database_url.
    database_direct_url: str | None = None
    # Cleanup (authserver/db/purge.py): seconds between in-process purges (0 = off; run
    # `authserver purge` from cron instead), and how long audit events are kept.
    purge_interval: int = 3600
    audit_retention_days: int = 90
    # Seconds `serve` lets requests in flight finish after SIGTERM before closing them.
    shutdown_timeout: int = 10
    # Slowloris bounds (http/server.py): seconds to receive a request's whole head, counted
    # from the connection's opening or the end of the previous response; seconds to receive
    # its body, counted from the end of its head.
    header_timeout: int = 10
    body_timeout: int = 10
    # Open connections per process; beyond it a new one is answered 503 and closed. `serve`
    # lowers it to fit the file descriptors the process may open (http/server.py).
    max_connections: int = 1000
    # Where `serve` listens, unless --host / --port say otherwise.
    host: str = "127.0.0.1"
    port: int = 8000

    # The hosted sign-in page (http/pages.py): a folder whose templates (login.html,
    # error.html, signed_out.html, signin.css) replace the built-in ones of the same name, and
    # whose locale/ catalogs add languages (translations.py); None = the built-in look.
    templates_dir: Path | None = None
    # The login session (single sign-on cookie): it ends after this many seconds without an
    # /authorize that uses it, and at the latest this many seconds after the password was typed.
    login_session_idle_ttl: int = 3600
    login_session_ttl: int = 86_400

    # Mail (authserver/mail/compose.py and sender.py): the SMTP server and the From of every mail.
    # Unset, mail is off and so is every page that needs it.
    smtp_url: SmtpServer | None = None
    mail_from: str | None = None
    # How long a link in mail lives (links.py): a password reset's, an email verification's.
    password_reset_ttl: int = 1800
    email_verify_ttl: int = 86_400
    # A user's admin token must come from a sign-in with a second factor (acr mfa).
    admin_requires_mfa: bool = False
    # "required": a user without a second factor enrols an authenticator app at their next
    # sign-in, on a page of the sign-in (actions/sign_in_steps.py); "optional": their choice.
    mfa: Literal["optional", "required"] = "optional"
    # Who may make an account on the sign-up page (SIGNUP_MODES); `verified` needs mail.
    signup: str = "off"

    # Dynamic client registration (RFC 7591/7592, actions/registration.py): off, open or token;
    # and how long an open-mode client that never completed a code exchange is kept.
    registration: str = "off"
    registration_idle_purge: int = 7 * 86_400
    # RFC 9449 §8/§9: DPoP proofs must carry a nonce this server handed out (tokens/dpop.py).
    dpop_nonce: Literal["off", "on"] = "off"
    # Client ID metadata documents (metadata_documents/): a client_id that is an https URL names
    # the client's metadata, fetched from it; hosts exempt from the private-address refusal.
    client_id_metadata: bool = False
    client_id_metadata_allow_hosts: tuple[str, ...] = ()

    # OpenTelemetry traces (telemetry/tracing.py): off, or sent over OTLP/HTTP.
    tracing: str = "off"
    # The share of traces started here that are recorded (ParentBased(TraceIdRatioBased)).
    tracing_sample_ratio: float = 1.0

    @property
    def mail_enabled(self) -> bool:
        return self.smtp_url is not None


# What each setting means, in one place: docs/configuration.md is generated from these and the
# defaults above (`scripts/docs`), and tests/test_configuration_doc.py fails on a setting that
# has none. The variable is AUTHSERVER_ + the field's name in capitals.
DESCRIPTIONS: dict[str, str] = {
    "database_url": "The database. `sqlite+aiosqlite:///PATH` (embedded, migrated by `serve` "
    "itself) or `postgresql+asyncpg://USER:PASSWORD@HOST:PORT/DB` (production; run "
    "`authserver migrate` first). Also as `AUTHSERVER_DATABASE_URL_FILE`.",
    "database_direct_url": "Postgres itself, when `AUTHSERVER_DATABASE_URL` goes through a "
    "transaction pooler (PgBouncer): `migrate` and the LISTEN connection that hears other "
    "instances' key and client changes use it; set, the main URL keeps no prepared statements "
    "(docs/high-availability.md). Unset: the main URL.",
    "issuer": "The `iss` of every token and the base of every URL in the metadata (RFC 8414). "
    "When unset, `serve` uses the address it binds (`http://HOST:PORT`, 127.0.0.1 for a "
    "wildcard address): set it to the public URL behind a proxy or load balancer, the same on "
    "every instance.",
    "audience": "The `aud` of access tokens; services check it.",
    "signing_alg": "`RS256` or `EdDSA` (Ed25519), for keys made from now on; existing keys "
    "keep theirs.",
    "access_token_ttl": "Lifetime of an access token, seconds (60 to 86400).",
    "refresh_token_ttl": "Idle lifetime of one refresh token, seconds (60 to 31536000; at most "
    "`AUTHSERVER_SESSION_TTL`).",
    "session_ttl": "Absolute lifetime of a refresh-token family (a session), seconds.",
    "refresh_reuse_grace": "Seconds (0 to 60) in which re-presenting a just-rotated refresh "
    "token is not treated as theft; 0 = strict.",
    "jwks_max_age": "Seconds verifiers may cache the JWKS (`Cache-Control: max-age`); a next key "
    "is published at least this long before it signs (0 to 86400).",
    "allowed_origins": "Comma-separated browser origins (`scheme://host[:port]`) allowed for "
    "CORS and the cookie endpoints (`/refresh`, `/logout`). Empty: no browser origin.",
    "cookie_secure": "`false` only for plain-http local development: the refresh cookie then "
    "drops `Secure` and the `__Host-` prefix.",
    "trusted_proxies": "Comma-separated addresses or networks whose `X-Forwarded-For` is "
    "believed (for throttling and logs). Empty: the socket's peer is the client.",
    "key_encryption_key": "Base64 of 32 random bytes: the KEK that seals private signing keys "
    "at rest (AES-256-GCM). Unset: one is made once in `AUTHSERVER_KEYS_DIR/kek` (mode 0600). "
    "Every instance needs the same one. Also as `AUTHSERVER_KEY_ENCRYPTION_KEY_FILE`.",
    "key_encryption_key_previous": "During a KEK switch only: the old KEK, tried when the first "
    "does not open a key; never seals (docs/operations.md). Also as "
    "`AUTHSERVER_KEY_ENCRYPTION_KEY_PREVIOUS_FILE`.",
    "key_rotation_interval": "Seconds an active key signs before an instance rotates it; 0 = "
    "never (rotate with `authserver keys rotate`); else at least 3600.",
    "keys_dir": "Folder of the generated `kek` file when `AUTHSERVER_KEY_ENCRYPTION_KEY` is unset.",
    "clock_leeway": "Clock skew, seconds (0 to 300), tolerated when checking `exp`/`iat` of "
    "tokens presented back to the server.",
    "argon2_time_cost": "argon2id passes (1 to 20). Defaults: RFC 9106's second recommended "
    "option.",
    "argon2_memory_kib": "argon2id memory per hash, KiB (1024 to 4194304).",
    "argon2_parallelism": "argon2id lanes (1 to 16).",
    "password_hash_concurrency": "Hashes one process runs at once (1 to 64); each holds "
    "`AUTHSERVER_ARGON2_MEMORY_KIB` of RAM.",
    "db_pool_size": "Database connections per process (1 to 200).",
    "purge_interval": "Seconds between in-process purges of expired rows (0 = off: run "
    "`authserver purge` from cron instead).",
    "audit_retention_days": "Days audit events are kept (1 to 36500).",
    "shutdown_timeout": "Seconds `serve` lets requests in flight finish after SIGTERM (1 to 600).",
    "header_timeout": "Seconds to receive a request's whole head (1 to 300), else `408` or closed.",
    "body_timeout": "Seconds to receive a request's body once its head is in (1 to 3600), else "
    "`408`.",
    "host": "The address `serve` listens on (`--host` overrides it); `0.0.0.0` for every "
    "interface, as in the container image.",
    "port": "The port `serve` listens on (`--port` overrides it). The container image's "
    "HEALTHCHECK asks this port: set the port here, not with `--port`, in a container.",
    "templates_dir": "A folder whose templates (login.html, error.html, signed_out.html, "
    "confirm_sign_out.html, signin.css, favicon.svg) replace the built-in ones of the hosted "
    "sign-in page, whose mail/ folder the mails' (docs/operations.md#mail), and whose "
    "locale/<lang>/LC_MESSAGES/messages.po catalogs add a language or reword the built-in ones "
    "(docs/sign-in.md); unset: the built-in look and words.",
    "login_session_idle_ttl": "Seconds a login session (the single sign-on cookie) lives "
    "without an /authorize that uses it (60 to 31536000; at most "
    "`AUTHSERVER_LOGIN_SESSION_TTL`).",
    "login_session_ttl": "Seconds a login session lives at most after the password was typed "
    "(60 to 31536000).",
    "password_min_length": "The fewest characters a new password may have (1 to 1024; API.md's "
    "policy: also at most 1,024, not the username, not among zxcvbn's common passwords).",
    "smtp_url": "The mail server: `smtp://[USER:PASSWORD@]HOST[:PORT]` (plain, port 25), "
    "`smtps://…` (TLS from the start, port 465) or `smtp+starttls://…` (STARTTLS, port 587); "
    "USER and PASSWORD percent-encoded. A password over plain `smtp://` is refused but to a "
    "loopback host. Unset: mail is off, and so are the pages that need it "
    "(docs/operations.md#mail). The password is never printed or logged. Also as "
    "`AUTHSERVER_SMTP_URL_FILE`.",
    "mail_from": "The `From` of every mail (`auth@example.com` or `Example <auth@example.com>`); "
    "required with `AUTHSERVER_SMTP_URL`.",
    "password_reset_ttl": "Seconds a password reset link lives (60 to 86400); it also dies once "
    "used, or once the password changes by any way.",
    "email_verify_ttl": "Seconds an email verification link lives (60 to 2592000); it also "
    "dies once used.",
    "admin_requires_mfa": "`true`: the admin API takes a user's token only from a sign-in "
    "with a second factor (`acr` `mfa`, through the sign-in page), and answers any other `401` "
    "`insufficient_user_authentication` (RFC 9470); a client's own (`client_credentials`) "
    "token is no user's and is not affected. Recommended: an administrator's password alone "
    "should not be enough (docs/operators.md#second-factors-policy).",
    "mfa": "`optional` (each user's choice, on the account page) or `required`: a user "
    "without a second factor is asked, right after the password on the sign-in page, to add an "
    "authenticator app (its QR code, one code from it, then the recovery codes), and is signed "
    "in only then, with `acr` `mfa`. The password grant, which has no such page, refuses them "
    "(docs/operators.md#second-factors-policy).",
    "signup": "The sign-up page `/signup`: `off` (it answers `404`), `open` (a new account signs "
    "in at once; its address is verified by a mailed link when mail is on) or `verified` (a new "
    "account signs in only once the link mailed to its address is opened; needs "
    "`AUTHSERVER_SMTP_URL`). docs/accounts.md#sign-up.",
    "registration": "Dynamic client registration at `POST /register` (RFC 7591, RFC 7592): "
    "`off` (`/register` answers `404`), `open` (anyone may register a public client: "
    "authorization_code and refresh_token, https or loopback redirect URIs) or `token` (an "
    "initial access token made by `authserver clients registration-token` is required; it may "
    "also register confidential clients). Throttled per client address.",
    "registration_idle_purge": "Seconds an open-mode registered client that never completed a "
    "code exchange is kept (3600 to 31536000); the purge then deletes it. A week: an app "
    "registers on its first run and signs someone in within minutes; what is left a week later "
    "is a script's litter, and the client can register again. A client ID metadata document's "
    "client nobody used for as long (no code, no session left) is purged too; its next use "
    "fetches the document again (docs/client-id-metadata.md).",
    "dpop_nonce": "`on`: DPoP proofs (RFC 9449) must carry a server nonce (§8 at `/token` and "
    "`/refresh`, §9 at `/userinfo`, `/sessions`, `/logout` and the admin API). A proof without "
    "a valid one, or whose `iat` is out of the window, is answered `400 use_dpop_nonce` "
    '(`401` with `WWW-Authenticate: DPoP error="use_dpop_nonce"` where an access token is '
    "presented) and a `DPoP-Nonce` header; every answer to a request with a proof carries a "
    "fresh one. Nonces need no storage: an HMAC of the minute under a key derived from the "
    "KEK, so every instance accepts every instance's; each is good for 60 to 120 s. `off`: "
    "no nonces (docs/dpop.md#server-nonces).",
    "client_id_metadata": "`on`: a `client_id` that is an `https` URL names a client ID metadata "
    "document (draft-ietf-oauth-client-id-metadata-document) that authserver fetches, caches and "
    "acts on as a public, third-party client (docs/client-id-metadata.md); `off` (the default): "
    "such an id is an unknown client. Discovery says `client_id_metadata_document_supported`.",
    "client_id_metadata_allow_hosts": "Comma-separated host names (or IP addresses) whose "
    "metadata documents may be fetched although they resolve to a private, loopback, "
    "link-local or otherwise non-public address (for tests and in-house clients). Matched "
    "exactly against the URL's host, in lower case.",
    "tracing": "`off` or `otlp`: a span per request (named after its route) and per database "
    "statement, sent over OTLP/HTTP to `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (or "
    "`OTEL_EXPORTER_OTLP_ENDPOINT` + `/v1/traces`; default `http://localhost:4318/v1/traces`). "
    "The other standard `OTEL_` variables are honoured too (`OTEL_SERVICE_NAME`, default "
    "`authserver`; `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_EXPORTER_OTLP_HEADERS`, "
    "`OTEL_PROPAGATORS`, `OTEL_TRACES_SAMPLER`, `OTEL_BSP_*`). No span holds a path, query "
    "string, header, body or bound parameter (docs/tracing.md). `off`: nothing of it is "
    "installed.",
    "tracing_sample_ratio": "With `AUTHSERVER_TRACING=otlp`: the share (0 to 1) of the traces "
    "begun here that are recorded and exported, chosen by trace id; a request whose caller sent "
    "a `traceparent` follows the caller's decision. The default, 1, records every request, as "
    "the OpenTelemetry SDK and Keycloak do by default; a busy server wants 0.01 to 0.1 (a recorded "
    "request costs several times an unrecorded one: docs/tracing.md#what-it-costs). "
    "`OTEL_TRACES_SAMPLER`, when set, replaces this.",
    "max_connections": "Open connections per process (16 to 1000000); past it a new one is "
    "answered `503` and closed. `serve` lowers it to fit the process's file-descriptor limit.",
}


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if environ is None else environ
    problems: list[str] = []
    defaults = Settings()
    known: set[str] = set()

    def read(name: str, parse: Callable[[str], T], default: T) -> T:
        known.add(f"{PREFIX}{name}")
        raw = env.get(f"{PREFIX}{name}")
        if name in FILE_SETTINGS:
            known.add(f"{PREFIX}{name}_FILE")
            raw = _from_file(env, name, raw, problems)
        if raw is None or raw.strip() == "":
            return default
        try:
            return parse(raw.strip())
        except ValueError as exc:
            problems.append(f"AUTHSERVER_{name}: {exc}")
            return default

    settings = Settings(
        database_url=read("DATABASE_URL", _database_url, defaults.database_url),
        issuer=read("ISSUER", _issuer, defaults.issuer),
        audience=read("AUDIENCE", _nonempty, defaults.audience),
        signing_alg=read("SIGNING_ALG", _signing_alg, defaults.signing_alg),
        access_token_ttl=read("ACCESS_TOKEN_TTL", _seconds(60, 86_400), defaults.access_token_ttl),
        refresh_token_ttl=read(
            "REFRESH_TOKEN_TTL", _seconds(60, 31_536_000), defaults.refresh_token_ttl
        ),
        session_ttl=read("SESSION_TTL", _seconds(60, 31_536_000), defaults.session_ttl),
        refresh_reuse_grace=read("REFRESH_REUSE_GRACE", _seconds(0, 60), 0),
        jwks_max_age=read("JWKS_MAX_AGE", _seconds(0, 86_400), defaults.jwks_max_age),
        allowed_origins=read("ALLOWED_ORIGINS", _origins, ()),
        cookie_secure=read("COOKIE_SECURE", _boolean, True),
        trusted_proxies=read("TRUSTED_PROXIES", _networks, ()),
        key_encryption_key=read("KEY_ENCRYPTION_KEY", _kek, None),
        key_encryption_key_previous=read("KEY_ENCRYPTION_KEY_PREVIOUS", _kek, None),
        key_rotation_interval=read("KEY_ROTATION_INTERVAL", _rotation_interval, 0),
        keys_dir=read("KEYS_DIR", Path, defaults.keys_dir),
        clock_leeway=read("CLOCK_LEEWAY", _seconds(0, 300), defaults.clock_leeway),
        argon2_time_cost=read("ARGON2_TIME_COST", _int_between(1, 20), defaults.argon2_time_cost),
        argon2_memory_kib=read(
            "ARGON2_MEMORY_KIB", _int_between(1024, 4_194_304), defaults.argon2_memory_kib
        ),
        argon2_parallelism=read(
            "ARGON2_PARALLELISM", _int_between(1, 16), defaults.argon2_parallelism
        ),
        password_hash_concurrency=read(
            "PASSWORD_HASH_CONCURRENCY", _int_between(1, 64), defaults.password_hash_concurrency
        ),
        password_min_length=read(
            "PASSWORD_MIN_LENGTH", _int_between(1, 1024), defaults.password_min_length
        ),
        db_pool_size=read("DB_POOL_SIZE", _int_between(1, 200), defaults.db_pool_size),
        database_direct_url=read("DATABASE_DIRECT_URL", _postgres_url, None),
        purge_interval=read("PURGE_INTERVAL", _seconds(0, 604_800), defaults.purge_interval),
        audit_retention_days=read(
            "AUDIT_RETENTION_DAYS", _int_between(1, 36_500), defaults.audit_retention_days
        ),
        shutdown_timeout=read("SHUTDOWN_TIMEOUT", _seconds(1, 600), defaults.shutdown_timeout),
        header_timeout=read("HEADER_TIMEOUT", _seconds(1, 300), defaults.header_timeout),
        body_timeout=read("BODY_TIMEOUT", _seconds(1, 3600), defaults.body_timeout),
        max_connections=read(
            "MAX_CONNECTIONS", _int_between(16, 1_000_000), defaults.max_connections
        ),
        host=read("HOST", _nonempty, defaults.host),
        port=read("PORT", _int_between(1, 65_535), defaults.port),
        templates_dir=read("TEMPLATES_DIR", _directory, None),
        login_session_idle_ttl=read(
            "LOGIN_SESSION_IDLE_TTL", _seconds(60, 31_536_000), defaults.login_session_idle_ttl
        ),
        login_session_ttl=read(
            "LOGIN_SESSION_TTL", _seconds(60, 31_536_000), defaults.login_session_ttl
        ),
        smtp_url=read("SMTP_URL", _smtp_url, None),
        mail_from=read("MAIL_FROM", _mail_from, None),
        password_reset_ttl=read(
            "PASSWORD_RESET_TTL", _seconds(60, 86_400), defaults.password_reset_ttl
        ),
        email_verify_ttl=read(
            "EMAIL_VERIFY_TTL", _seconds(60, 2_592_000), defaults.email_verify_ttl
        ),
        admin_requires_mfa=read("ADMIN_REQUIRES_MFA", _boolean, defaults.admin_requires_mfa),
        mfa=read("MFA", _mfa_policy, defaults.mfa),
        signup=read("SIGNUP", _signup_mode, defaults.signup),
        registration=read("REGISTRATION", _registration_mode, defaults.registration),
        registration_idle_purge=read(
            "REGISTRATION_IDLE_PURGE",
            _seconds(3600, 31_536_000),
            defaults.registration_idle_purge,
        ),
        dpop_nonce=read("DPOP_NONCE", _on_off, defaults.dpop_nonce),
        client_id_metadata=read("CLIENT_ID_METADATA", _boolean, defaults.client_id_metadata),
        client_id_metadata_allow_hosts=read("CLIENT_ID_METADATA_ALLOW_HOSTS", _hosts, ()),
        tracing=read("TRACING", _tracing_mode, defaults.tracing),
        tracing_sample_ratio=read("TRACING_SAMPLE_RATIO", _ratio, defaults.tracing_sample_ratio),
    )
    if settings.smtp_url is not None and not env.get("AUTHSERVER_MAIL_FROM", "").strip():
        problems.append("AUTHSERVER_MAIL_FROM: must be set with AUTHSERVER_SMTP_URL")
    if settings.signup == "verified" and settings.smtp_url is None:
        # Its accounts sign in only through a mailed link: without mail, none ever could.
        problems.append("AUTHSERVER_SIGNUP: verified needs mail: set AUTHSERVER_SMTP_URL")
    if settings.login_session_idle_ttl > settings.login_session_ttl:
        problems.append(
            "AUTHSERVER_LOGIN_SESSION_IDLE_TTL: must not exceed AUTHSERVER_LOGIN_SESSION_TTL "
            f"({settings.login_session_idle_ttl} > {settings.login_session_ttl})"
        )
    if settings.refresh_token_ttl > settings.session_ttl:
        problems.append(
            "AUTHSERVER_REFRESH_TOKEN_TTL: must not exceed AUTHSERVER_SESSION_TTL "
            f"({settings.refresh_token_ttl} > {settings.session_ttl})"
        )
    problems.extend(_unknown(env, known))
    if problems:
        raise SettingsError(problems)
    return settings


def _from_file(
    env: Mapping[str, str], name: str, raw: str | None, problems: list[str]
) -> str | None:
    path = env.get(f"{PREFIX}{name}_FILE", "").strip()
    if not path:
        return raw
    if raw is not None and raw.strip():
        problems.append(f"{PREFIX}{name}: set it or {PREFIX}{name}_FILE, not both")
        return None
    try:
        return Path(path).read_text().strip()
    except OSError as exc:
        problems.append(f"{PREFIX}{name}_FILE: cannot read {path}: {exc.strerror or exc}")
        return None


def _unknown(env: Mapping[str, str], known: set[str]) -> list[str]:
    """A line for each AUTHSERVER_ variable that is no setting (a typo would otherwise leave
    its setting at the default without a word), naming the closest known name."""
    problems = []
    for name in sorted(env):
        if (
            not name.startswith(PREFIX)
            or name in known
            or name in NOT_SETTINGS
            or name.startswith(NOT_SETTINGS_PREFIX)
        ):
            continue
        closest = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0)
        hint = f"; did you mean {closest[0]}?" if closest else ""
        problems.append(f"{name}: not a setting authserver knows{hint}")
    return problems


def _nonempty(raw: str) -> str:
    if not raw:
        raise ValueError("must not be empty")
    return raw


def _database_url(raw: str) -> str:
    if not raw.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://")):
        raise ValueError(
            "must start with sqlite+aiosqlite:// or postgresql+asyncpg:// "
            "(the async drivers authserver ships with)"
        )
    return raw


def _postgres_url(raw: str) -> str:
    if not raw.startswith("postgresql+asyncpg://"):
        raise ValueError("must start with postgresql+asyncpg://")
    return raw


def _issuer(raw: str) -> str:
    parts = urlsplit(raw)
    # RFC 8414 §2: the issuer is an https URL with no query or fragment; plain http is
    # tolerated for local development.
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"must be an http(s) URL, got {raw!r}")
    if parts.query or parts.fragment:
        raise ValueError("must have no query or fragment (RFC 8414 §2)")
    return raw.rstrip("/")


def _directory(raw: str) -> Path:
    path = Path(raw)
    if not path.is_dir():
        raise ValueError(f"must be an existing directory, got {raw!r}")
    return path


def _signing_alg(raw: str) -> str:
    if raw not in SIGNING_ALGS:
        raise ValueError(f"must be one of {', '.join(SIGNING_ALGS)}, got {raw!r}")
    return raw


def _signup_mode(raw: str) -> str:
    if raw not in SIGNUP_MODES:
        raise ValueError(f"must be one of {', '.join(SIGNUP_MODES)}, got {raw!r}")
    return raw


def _int_between(low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise ValueError(f"must be a whole number, got {raw!r}") from None
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}, got {value}")
        return value

    return parse


def _registration_mode(raw: str) -> str:
    if raw not in ("off", "open", "token"):
        raise ValueError(f"must be off, open or token, got {raw!r}")
    return raw


def _ratio(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:  # NaN too
        raise ValueError(f"must be a number from 0 to 1, got {raw!r}")
    return value


def _tracing_mode(raw: str) -> str:
    if raw not in ("off", "otlp"):
        raise ValueError(f"must be off or otlp, got {raw!r}")
    return raw


def _seconds(low: int, high: int) -> Callable[[str], int]:
    parse = _int_between(low, high)

    def seconds(raw: str) -> int:
        try:
            return parse(raw)
        except ValueError as exc:
            raise ValueError(f"{exc} (seconds)") from None

    return seconds


def _rotation_interval(raw: str) -> int:
    seconds = _int_between(0, 315_360_000)(raw)
    if 0 < seconds < 3600:
        raise ValueError(f"must be 0 (off) or at least 3600 seconds, got {seconds}")
    return seconds


def _mfa_policy(raw: str) -> Literal["optional", "required"]:
    lowered = raw.lower()
    if lowered == "optional":
        return "optional"
    if lowered == "required":
        return "required"
    raise ValueError(f"must be optional or required, got {raw!r}")


def _on_off(raw: str) -> Literal["off", "on"]:
    lowered = raw.lower()
    if lowered == "on":
        return "on"
    if lowered == "off":
        return "off"
    raise ValueError(f"must be on or off, got {raw!r}")


def _boolean(raw: str) -> bool:
    lowered = raw.lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off"):
        return False
    raise ValueError(f"must be true or false, got {raw!r}")


def _hosts(raw: str) -> tuple[str, ...]:
    hosts = tuple(dict.fromkeys(part.strip().lower() for part in raw.split(",") if part.strip()))
    for host in hosts:
        if not host.isascii() or not host.isprintable() or any(c in host for c in " /@#?"):
            raise ValueError(f"must be comma-separated host names, got {host!r}")
    return hosts


def _origins(raw: str) -> tuple[str, ...]:
    origins = []
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        parts = urlsplit(item)
        if item == "*" or parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"each origin must be scheme://host[:port], got {item!r}")
        # A bare trailing slash is common in configuration; a browser's Origin never has one.
        if parts.path not in ("", "/") or parts.query or parts.fragment or "@" in parts.netloc:
            raise ValueError(f"an origin has no user, path, query or fragment, got {item!r}")
        # RFC 6454 §6.1: the serialised origin omits the scheme's default port.
        netloc = parts.netloc.lower().removesuffix({"http": ":80", "https": ":443"}[parts.scheme])
        origins.append(f"{parts.scheme}://{netloc}")
    return tuple(origins)


def _networks(raw: str) -> tuple[IPNetwork, ...]:
    networks = []
    for item in (part.strip() for part in raw.split(",")):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"each entry must be an IP address or network, got {item!r}") from None
    return tuple(networks)


def _kek(raw: str) -> bytes:
    try:
        key = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("must be base64 (the value is not shown)") from None
    if len(key) != 32:
        raise ValueError(f"must decode to 32 bytes, got {len(key)}")
    return key


def _smtp_url(raw: str) -> SmtpServer:
    # Every message names the part that is wrong, never the URL: it may hold a password.
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError:
        raise ValueError("is not a URL of the form smtp://[user:pass@]host:port") from None
    scheme = parts.scheme.lower()
    if scheme not in SMTP_SECURITY:
        raise ValueError(
            f"must start with smtp://, smtps:// or smtp+starttls://, got {scheme or 'none'}://"
        )
    if not parts.hostname:
        raise ValueError("names no host (smtp://[user:pass@]host:port)")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError("must have no path, query or fragment (smtp://[user:pass@]host:port)")
    if port == 0:
        raise ValueError("port must be between 1 and 65535")
    username = None if parts.username is None else unquote(parts.username)
    password = None if parts.password is None else unquote(parts.password)
    if password is not None and scheme == "smtp" and not loopback_host(parts.hostname):
        raise ValueError(
            "a password over plain smtp:// would cross the network in the clear: use "
            "smtps:// or smtp+starttls://"
        )
    return SmtpServer(
        scheme, parts.hostname, port or SMTP_DEFAULT_PORTS[scheme], username, password
    )


def loopback_host(host: str) -> bool:
    """127.0.0.0/8, ::1 or localhost: where a secret in the clear never leaves the machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _mail_from(raw: str) -> str:
    # A header value: a line break would let it write headers of its own.
    name, address = parseaddr(raw)
    if "\r" in raw or "\n" in raw or "@" not in address or address.startswith("@"):
        raise ValueError(f"must be an address, or a name and <address>, got {raw!r}")
    return raw
