"""The account page's name for a browser (http/user_agents.py), from real User-Agent headers."""

from __future__ import annotations

import pytest

from authserver.http.user_agents import summary

CHROME_LINUX = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)


@pytest.mark.parametrize(
    ("user_agent", "expected"),
    [
        (CHROME_LINUX, ("Chrome", "Linux")),
        ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
         "Chrome/131.0.0.0 Safari/537.36 Edg/131.0.2903.86", ("Edge", "Windows")),
        ("Mozilla/5.0 (Macintosh; Intel Mac OS X 14_7_1) AppleWebKit/605.1.15 (KHTML, like "
         "Gecko) Version/18.1 Safari/605.1.15", ("Safari", "macOS")),
        ("Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, "
         "like Gecko) Version/18.1 Mobile/15E148 Safari/604.1", ("Safari", "iPhone")),
        ("Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, "
         "like Gecko) CriOS/131.0.6778.73 Mobile/15E148 Safari/604.1", ("Chrome", "iPhone")),
        ("Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
         ("Firefox", "Linux")),
        ("Mozilla/5.0 (Linux; Android 14; SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) "
         "SamsungBrowser/26.0 Chrome/122.0.0.0 Mobile Safari/537.36",
         ("Samsung Internet", "Android")),
        ("Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) "
         "Chrome/131.0.0.0 Safari/537.36", ("Chrome", "ChromeOS")),
        ("curl/8.5.0", ("curl", None)),
        ("python-httpx/0.28.1", ("python-httpx", None)),
        ('"><script>', (None, None)),
        ("", (None, None)),
        (None, (None, None)),
    ],
)  # fmt: skip
def test_a_user_agent_is_named_as_people_name_it(
    user_agent: str | None, expected: tuple[str | None, str | None]
) -> None:
    assert summary(user_agent) == expected


def test_only_the_start_of_a_long_header_is_read() -> None:
    assert summary("Mozilla/5.0 (" + "a " * 100_000 + "Linux)") == ("Mozilla", None)
