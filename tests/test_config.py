"""Settings: the defaults of API.md, every variable parsed, and bad values reported clearly."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from authserver.config import Settings, SettingsError, load_settings

KEK_BYTES = bytes(range(32))
KEK = base64.b64encode(KEK_BYTES).decode()


def problems_for(environ: dict[str, str]) -> list[str]:
    with pytest.raises(SettingsError) as caught:
        load_settings(environ)
    return caught.value.problems


def test_defaults_are_the_table_in_api_md() -> None:
    settings = load_settings({})
    assert settings.database_url == "sqlite+aiosqlite:///./authserver.db"
    assert settings.issuer == "http://127.0.0.1:8000"
    assert settings.audience == "authserver-api"
    assert settings.signing_alg == "RS256"
    assert settings.access_token_ttl == 900
    assert settings.refresh_token_ttl == 1_209_600
    assert settings.session_ttl == 2_592_000
    assert settings.refresh_reuse_grace == 0
    assert settings.jwks_max_age == 300
    assert settings.allowed_origins == ()
    assert settings.cookie_secure is True
    assert settings.key_encryption_key is None
    assert settings == Settings()


def test_unrelated_and_blank_variables_leave_defaults() -> None:
    environ = {"AUTHSERVER_AUDIENCE": "   ", "AUTHSERVER_ISSUER": "", "HOME": "/root"}
    assert load_settings(environ) == Settings()


def test_every_setting_is_read_from_the_mapping() -> None:
    environ = {
        "AUTHSERVER_DATABASE_URL": "postgresql+asyncpg://auth:pw@db:5432/auth",
        "AUTHSERVER_ISSUER": "https://login.example.com",
        "AUTHSERVER_AUDIENCE": "orders-api",
        "AUTHSERVER_SIGNING_ALG": "EdDSA",
        "AUTHSERVER_ACCESS_TOKEN_TTL": "600",
        "AUTHSERVER_REFRESH_TOKEN_TTL": "3600",
        "AUTHSERVER_SESSION_TTL": "86400",
        "AUTHSERVER_REFRESH_REUSE_GRACE": "5",
        "AUTHSERVER_JWKS_MAX_AGE": "120",
        "AUTHSERVER_ALLOWED_ORIGINS": "https://app.example.com, http://localhost:5173",
        "AUTHSERVER_COOKIE_SECURE": "false",
        "AUTHSERVER_KEY_ENCRYPTION_KEY": KEK,
        "AUTHSERVER_KEYS_DIR": "/var/lib/authserver/keys",
        "AUTHSERVER_CLOCK_LEEWAY": "10",
        "AUTHSERVER_ARGON2_TIME_COST": "2",
        "AUTHSERVER_ARGON2_MEMORY_KIB": "19456",
        "AUTHSERVER_ARGON2_PARALLELISM": "1",
        "AUTHSERVER_PASSWORD_HASH_CONCURRENCY": "8",
        "AUTHSERVER_DB_POOL_SIZE": "20",
    }
    assert load_settings(environ) == Settings(
        database_url="postgresql+asyncpg://auth:pw@db:5432/auth",
        issuer="https://login.example.com",
        audience="orders-api",
        signing_alg="EdDSA",
        access_token_ttl=600,
        refresh_token_ttl=3600,
        session_ttl=86400,
        refresh_reuse_grace=5,
        jwks_max_age=120,
        allowed_origins=("https://app.example.com", "http://localhost:5173"),
        cookie_secure=False,
        key_encryption_key=KEK_BYTES,
        keys_dir=Path("/var/lib/authserver/keys"),
        clock_leeway=10,
        argon2_time_cost=2,
        argon2_memory_kib=19456,
        argon2_parallelism=1,
        password_hash_concurrency=8,
        db_pool_size=20,
    )


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("true", True), ("1", True), ("YES", True), ("off", False), ("False", False), ("0", False)],
)
def test_cookie_secure_reads_common_spellings(raw: str, expected: bool) -> None:
    assert load_settings({"AUTHSERVER_COOKIE_SECURE": raw}).cookie_secure is expected


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("DATABASE_URL", "postgresql://db/auth"),
        ("DATABASE_URL", "sqlite:///./authserver.db"),
        ("ISSUER", "login.example.com"),
        ("ISSUER", "ftp://login.example.com"),
        ("SIGNING_ALG", "HS256"),
        ("SIGNING_ALG", "none"),
        ("ACCESS_TOKEN_TTL", "fifteen minutes"),
        ("ACCESS_TOKEN_TTL", "0"),
        ("ACCESS_TOKEN_TTL", "-900"),
        ("ACCESS_TOKEN_TTL", "9e9"),
        ("REFRESH_TOKEN_TTL", "1.5"),
        ("SESSION_TTL", "10"),
        ("REFRESH_REUSE_GRACE", "-1"),
        ("REFRESH_REUSE_GRACE", "3600"),
        ("JWKS_MAX_AGE", "forever"),
        ("ALLOWED_ORIGINS", "*"),
        ("ALLOWED_ORIGINS", "app.example.com"),
        ("ALLOWED_ORIGINS", "https://app.example.com/callback"),
        ("ALLOWED_ORIGINS", "https://app.example.com?x=1"),
        ("ALLOWED_ORIGINS", "https://user@app.example.com"),
        ("ALLOWED_ORIGINS", "https://ok.example.com,null"),
        ("COOKIE_SECURE", "maybe"),
        ("KEY_ENCRYPTION_KEY", base64.b64encode(b"short").decode()),
        ("ARGON2_MEMORY_KIB", "8"),
        ("ARGON2_TIME_COST", "0"),
        ("PASSWORD_HASH_CONCURRENCY", "0"),
        ("DB_POOL_SIZE", "lots"),
        ("DPOP_NONCE", "true"),
        ("TRACING", "on"),
        ("TRACING", "grpc"),
        ("TRACING_SAMPLE_RATIO", "1.5"),
        ("TRACING_SAMPLE_RATIO", "-0.1"),
        ("TRACING_SAMPLE_RATIO", "nan"),
        ("TRACING_SAMPLE_RATIO", "10%"),
    ],
)
def test_a_bad_value_gives_one_line_naming_the_variable(name: str, raw: str) -> None:
    problems = problems_for({f"AUTHSERVER_{name}": raw})
    assert len(problems) == 1
    assert problems[0].startswith(f"AUTHSERVER_{name}: ")
    assert "\n" not in problems[0]
    assert len(problems[0]) > len(f"AUTHSERVER_{name}: ") + 10  # says what is wrong


def test_several_bad_values_are_reported_together() -> None:
    environ = {
        "AUTHSERVER_SIGNING_ALG": "HS256",
        "AUTHSERVER_ACCESS_TOKEN_TTL": "soon",
        "AUTHSERVER_COOKIE_SECURE": "perhaps",
        "AUTHSERVER_AUDIENCE": "fine",
    }
    with pytest.raises(SettingsError) as caught:
        load_settings(environ)
    named = sorted(problem.split(":", 1)[0] for problem in caught.value.problems)
    assert named == [
        "AUTHSERVER_ACCESS_TOKEN_TTL",
        "AUTHSERVER_COOKIE_SECURE",
        "AUTHSERVER_SIGNING_ALG",
    ]
    # The exception's text is the same lines, so a plain `print(exc)` is readable.
    assert str(caught.value).splitlines() == caught.value.problems


def test_refresh_token_ttl_may_not_outlive_the_session() -> None:
    problems = problems_for(
        {"AUTHSERVER_REFRESH_TOKEN_TTL": "7200", "AUTHSERVER_SESSION_TTL": "3600"}
    )
    assert len(problems) == 1
    assert problems[0].startswith("AUTHSERVER_REFRESH_TOKEN_TTL: ")


@pytest.mark.parametrize(
    "secret",
    [
        "c2VjcmV0LWtleS10aGF0LWlzLXRvby1zaG9ydA==",  # valid base64, wrong length
        "not base64 but a passphrase!",
        "hunter2hunter2hunter2hunter2hunter2hunter2==",
    ],
)
def test_a_bad_key_encryption_key_is_never_echoed(secret: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings({"AUTHSERVER_KEY_ENCRYPTION_KEY": secret})
    assert caught.value.problems[0].startswith("AUTHSERVER_KEY_ENCRYPTION_KEY: ")
    for text in (str(caught.value), repr(caught.value), *caught.value.problems):
        assert secret not in text
        assert secret.strip("=") not in text


def test_the_key_encryption_key_is_not_in_the_settings_repr() -> None:
    settings = load_settings({"AUTHSERVER_KEY_ENCRYPTION_KEY": KEK})
    assert settings.key_encryption_key == KEK_BYTES
    assert KEK not in repr(settings)
    assert repr(KEK_BYTES) not in repr(settings)


def test_origins_are_normalised_to_what_browsers_send() -> None:
    raw = " HTTPS://App.Example.COM/ ,,http://localhost:5173 , https://api.example.com:443,"
    settings = load_settings({"AUTHSERVER_ALLOWED_ORIGINS": raw + "http://a.example.com:80"})
    assert settings.allowed_origins == (
        "https://app.example.com",
        "http://localhost:5173",
        "https://api.example.com",
        "http://a.example.com",
    )


def test_origins_keep_a_port_that_is_not_the_default() -> None:
    raw = "https://app.example.com:8443,http://app.example.com:443"
    settings = load_settings({"AUTHSERVER_ALLOWED_ORIGINS": raw})
    assert settings.allowed_origins == (
        "https://app.example.com:8443",
        "http://app.example.com:443",
    )


def test_issuer_trailing_slash_is_stripped() -> None:
    settings = load_settings({"AUTHSERVER_ISSUER": "https://login.example.com/"})
    assert settings.issuer == "https://login.example.com"
    settings = load_settings({"AUTHSERVER_ISSUER": "https://example.com/auth/"})
    assert settings.issuer == "https://example.com/auth"


@pytest.mark.parametrize(
    "issuer", ["https://login.example.com/?tenant=a", "https://login.example.com/#top"]
)
def test_issuer_with_query_or_fragment_is_refused(issuer: str) -> None:
    problems = problems_for({"AUTHSERVER_ISSUER": issuer})
    assert len(problems) == 1
    assert problems[0].startswith("AUTHSERVER_ISSUER: ")


def test_connection_bounds_are_read_and_checked() -> None:
    settings = load_settings(
        {
            "AUTHSERVER_HEADER_TIMEOUT": "5",
            "AUTHSERVER_BODY_TIMEOUT": "60",
            "AUTHSERVER_MAX_CONNECTIONS": "4096",
        }
    )
    assert (settings.header_timeout, settings.body_timeout, settings.max_connections) == (
        5,
        60,
        4096,
    )
    assert (Settings().header_timeout, Settings().body_timeout) == (10, 10)
    for name, raw in [
        ("HEADER_TIMEOUT", "0"),
        ("HEADER_TIMEOUT", "forever"),
        ("BODY_TIMEOUT", "0"),
        ("BODY_TIMEOUT", "86400"),
        ("MAX_CONNECTIONS", "1"),
        ("MAX_CONNECTIONS", "many"),
    ]:
        [problem] = problems_for({f"AUTHSERVER_{name}": raw})
        assert problem.startswith(f"AUTHSERVER_{name}: must be")


def test_an_unknown_variable_is_named_with_the_closest_setting() -> None:
    found = problems_for({"AUTHSERVER_DATABSE_URL": "sqlite+aiosqlite:///x.db"})
    assert found == [
        "AUTHSERVER_DATABSE_URL: not a setting authserver knows; "
        "did you mean AUTHSERVER_DATABASE_URL?"
    ]
    # Unknown even when empty, and one line each, beside the bad values.
    found = problems_for(
        {
            "AUTHSERVER_ACESS_TOKEN_TTL": "",
            "AUTHSERVER_AUDIENCE_X": "a",
            "AUTHSERVER_JWKS_MAX_AGE": "x",
        }
    )
    assert [line.partition(":")[0] for line in found] == [
        "AUTHSERVER_JWKS_MAX_AGE",
        "AUTHSERVER_ACESS_TOKEN_TTL",
        "AUTHSERVER_AUDIENCE_X",
    ]
    assert found[1].endswith("did you mean AUTHSERVER_ACCESS_TOKEN_TTL?")


def test_variables_the_server_and_its_tests_set_are_not_settings_and_not_refused() -> None:
    environ = {
        "AUTHSERVER_KEY_EPOCH_FILE": "/tmp/epoch",  # serve -> its workers
        "AUTHSERVER_NEW_KEY_ENCRYPTION_KEY": KEK,  # keys rewrap's input
        "AUTHSERVER_TEST_DATABASE_URL": "postgresql+asyncpg://postgres@127.0.0.1/x",
        "AUTHSERVER_TEST_PG_PROBE": "127.0.0.1:5432",
        "AUTHSERVERX": "not our prefix",
    }
    assert load_settings(environ) == Settings()


def test_secrets_may_come_from_files(tmp_path: Path) -> None:
    (tmp_path / "kek").write_text(KEK + "\n")
    (tmp_path / "url").write_text("postgresql+asyncpg://auth:pw@db:5432/auth\n")
    settings = load_settings(
        {
            "AUTHSERVER_KEY_ENCRYPTION_KEY_FILE": str(tmp_path / "kek"),
            "AUTHSERVER_DATABASE_URL_FILE": str(tmp_path / "url"),
        }
    )
    assert settings.key_encryption_key == KEK_BYTES
    assert settings.database_url == "postgresql+asyncpg://auth:pw@db:5432/auth"

    missing = tmp_path / "nothing"
    found = problems_for({"AUTHSERVER_KEY_ENCRYPTION_KEY_PREVIOUS_FILE": str(missing)})
    assert found == [
        f"AUTHSERVER_KEY_ENCRYPTION_KEY_PREVIOUS_FILE: cannot read {missing}: "
        "No such file or directory"
    ]
    both = {"AUTHSERVER_KEY_ENCRYPTION_KEY": KEK, "AUTHSERVER_KEY_ENCRYPTION_KEY_FILE": "x"}
    assert problems_for(both) == [
        "AUTHSERVER_KEY_ENCRYPTION_KEY: set it or AUTHSERVER_KEY_ENCRYPTION_KEY_FILE, not both"
    ]
    # A bad value from a file is reported like one from the variable, and not shown.
    (tmp_path / "bad").write_text("short")
    found = problems_for({"AUTHSERVER_KEY_ENCRYPTION_KEY_FILE": str(tmp_path / "bad")})
    assert found[0].startswith("AUTHSERVER_KEY_ENCRYPTION_KEY: ") and "short" not in found[0]


def test_tracing_is_off_unless_asked_for() -> None:
    assert load_settings({}).tracing == "off"
    assert load_settings({"AUTHSERVER_TRACING": "otlp"}).tracing == "otlp"
    assert load_settings({}).tracing_sample_ratio == 1.0
    assert load_settings({"AUTHSERVER_TRACING_SAMPLE_RATIO": "0.01"}).tracing_sample_ratio == 0.01


def test_where_serve_listens_is_a_setting() -> None:
    # The container's HEALTHCHECK reads AUTHSERVER_PORT: it must be what `serve` binds.
    assert (Settings().host, Settings().port) == ("127.0.0.1", 8000)
    settings = load_settings({"AUTHSERVER_HOST": "0.0.0.0", "AUTHSERVER_PORT": "9000"})
    assert (settings.host, settings.port) == ("0.0.0.0", 9000)
    assert problems_for({"AUTHSERVER_PORT": "70000"}) == [
        "AUTHSERVER_PORT: must be between 1 and 65535, got 70000"
    ]


def test_the_sign_in_settings_are_read_and_checked(tmp_path: Path) -> None:
    defaults = load_settings({})
    assert (defaults.login_session_idle_ttl, defaults.login_session_ttl) == (3600, 86_400)
    assert defaults.templates_dir is None
    read = load_settings(
        {
            "AUTHSERVER_LOGIN_SESSION_IDLE_TTL": "600",
            "AUTHSERVER_LOGIN_SESSION_TTL": "7200",
            "AUTHSERVER_TEMPLATES_DIR": str(tmp_path),
        }
    )
    assert (read.login_session_idle_ttl, read.login_session_ttl) == (600, 7200)
    assert read.templates_dir == tmp_path

    with pytest.raises(SettingsError) as refused:
        load_settings(
            {
                "AUTHSERVER_LOGIN_SESSION_IDLE_TTL": "7200",
                "AUTHSERVER_LOGIN_SESSION_TTL": "3600",
            }
        )
    assert refused.value.problems[0].startswith("AUTHSERVER_LOGIN_SESSION_IDLE_TTL: must not")
    with pytest.raises(SettingsError) as missing:
        load_settings(
            {
                "AUTHSERVER_TEMPLATES_DIR": str(tmp_path / "none"),
                "AUTHSERVER_LOGIN_SESSION_TTL": "10",
            }
        )
    assert [p.split(":")[0] for p in missing.value.problems] == [
        "AUTHSERVER_TEMPLATES_DIR",
        "AUTHSERVER_LOGIN_SESSION_TTL",
    ]


# Mail: AUTHSERVER_SMTP_URL and AUTHSERVER_MAIL_FROM


def test_mail_is_off_unless_an_smtp_url_is_set() -> None:
    settings = load_settings({})
    assert (settings.smtp_url, settings.mail_from, settings.mail_enabled) == (None, None, False)


@pytest.mark.parametrize(
    ("url", "security", "host", "port", "username", "password"),
    [
        ("smtp://mail.internal", "none", "mail.internal", 25, None, None),
        ("smtp://127.0.0.1:2525", "none", "127.0.0.1", 2525, None, None),
        ("smtp://relay:p%40ss@localhost:25", "none", "localhost", 25, "relay", "p@ss"),
        ("smtps://auth%40example.com:s3cret@smtp.example.com", "tls", "smtp.example.com", 465,
         "auth@example.com", "s3cret"),
        ("smtp+starttls://u:pw@[2001:db8::1]:2587", "starttls", "2001:db8::1", 2587, "u", "pw"),
        ("SMTPS://smtp.example.com:1465/", "tls", "smtp.example.com", 1465, None, None),
    ],
)  # fmt: skip
def test_smtp_urls_are_read_with_their_security_and_default_ports(
    url: str, security: str, host: str, port: int, username: str | None, password: str | None
) -> None:
    settings = load_settings(
        {"AUTHSERVER_SMTP_URL": url, "AUTHSERVER_MAIL_FROM": "auth@example.com"}
    )
    server = settings.smtp_url
    assert server is not None and settings.mail_enabled
    assert (server.security, server.host, server.port) == (security, host, port)
    assert (server.username, server.password) == (username, password)
    if password:
        assert password not in repr(settings) and password not in str(server)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        (
            "http://hunter2@mail.example.com",
            "must start with smtp://, smtps:// or smtp+starttls://",
        ),
        ("smtp://user:hunter2@mail.example.com", "in the clear: use smtps:// or smtp+starttls://"),
        ("smtps://user:hunter2@", "names no host"),
        ("smtps://user:hunter2@mail.example.com:x", "is not a URL of the form"),
        ("smtps://user:hunter2@mail.example.com:99999", "is not a URL of the form"),
        ("smtps://user:hunter2@mail.example.com:0", "port must be between 1 and 65535"),
        ("smtps://user:hunter2@mail.example.com/inbox", "must have no path, query or fragment"),
        ("smtps://user:hunter2@mail.example.com?tls=1", "must have no path, query or fragment"),
    ],
)
def test_a_bad_smtp_url_is_one_line_that_never_shows_the_password(url: str, problem: str) -> None:
    [line] = problems_for({"AUTHSERVER_SMTP_URL": url, "AUTHSERVER_MAIL_FROM": "a@example.com"})
    assert line.startswith("AUTHSERVER_SMTP_URL: ") and problem in line
    assert "hunter2" not in line


def test_the_smtp_url_may_come_from_a_file(tmp_path: Path) -> None:
    (tmp_path / "smtp").write_text("smtps://u:from-a-file@smtp.example.com\n")
    settings = load_settings(
        {
            "AUTHSERVER_SMTP_URL_FILE": str(tmp_path / "smtp"),
            "AUTHSERVER_MAIL_FROM": "auth@example.com",
        }
    )
    assert settings.smtp_url is not None and settings.smtp_url.password == "from-a-file"


def test_an_smtp_url_needs_a_from_address() -> None:
    assert problems_for({"AUTHSERVER_SMTP_URL": "smtp://localhost"}) == [
        "AUTHSERVER_MAIL_FROM: must be set with AUTHSERVER_SMTP_URL"
    ]


@pytest.mark.parametrize("sender", ["auth@example.com", "Example Auth <auth@example.com>"])
def test_mail_from_takes_an_address_or_a_name_and_address(sender: str) -> None:
    settings = load_settings(
        {"AUTHSERVER_SMTP_URL": "smtp://localhost", "AUTHSERVER_MAIL_FROM": sender}
    )
    assert settings.mail_from == sender


@pytest.mark.parametrize("sender", ["nobody", "@example.com", "a@example.com\nBcc: b@example.com"])
def test_mail_from_refuses_what_is_no_address(sender: str) -> None:
    [line] = problems_for(
        {"AUTHSERVER_SMTP_URL": "smtp://localhost", "AUTHSERVER_MAIL_FROM": sender}
    )
    assert line.startswith("AUTHSERVER_MAIL_FROM: must be an address")


def test_dpop_nonces_are_off_unless_on() -> None:
    base = {"AUTHSERVER_KEY_ENCRYPTION_KEY": KEK}
    assert load_settings(base).dpop_nonce == "off"
    assert load_settings({**base, "AUTHSERVER_DPOP_NONCE": "ON"}).dpop_nonce == "on"
