"""The documents in the repository: the README stays a five-minute read, every link resolves
inside the repository (a clone has nothing else), and docs/ still answers what the README
used to."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [ROOT / "README.md", *DOCS]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces as hyphens."""
    found = set()
    in_code = False
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            found.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return found


def test_the_readme_is_a_five_minute_read() -> None:
    size = len((ROOT / "README.md").read_bytes())
    assert size < 8 * 1024, f"README.md is {size} bytes: move the detail to a page of docs/"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_link_resolves_inside_the_repository(page: Path) -> None:
    broken = []
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.is_relative_to(ROOT):
            broken.append(f"{target} (outside the repository)")
        elif not resolved.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{target} (no such heading)")
    assert not broken, f"{page.relative_to(ROOT)}: {broken}"


def test_nothing_points_at_the_shared_folder() -> None:
    for page in PAGES:
        assert "../shared" not in page.read_text(), page


# What the README used to answer, and the page that answers it now.
TOPICS = {
    "api.md": ["POST /logout/all", "/admin/audit", "/revocations", "invalid_grant", "slow_down"],
    "configuration.md": ["AUTHSERVER_AUDIENCE", "AUTHSERVER_ACCESS_TOKEN_TTL", "_FILE"],
    "operations.md": [
        "authserver migrate",
        "Fail closed",
        "Rotating the key-encryption key",
        "authserver keys rewrap",
        "PROMETHEUS_MULTIPROC_DIR",
        "Backup and restore",
        "Several instances",
        "HEALTHCHECK",
        "AUTHSERVER_PURGE_INTERVAL",
    ],
    "spa.md": ["Web Lock", "Trade-offs", "__Host-authserver_rt", "RFC 9700"],
    "services.md": ["authserver-verify", "Introspector", "revocation feed", "joserfc"],
    "architecture.md": ["tests/test_layering.py", "A request's way through"],
}


@pytest.mark.parametrize("name", sorted(TOPICS))
def test_each_page_answers_its_questions(name: str) -> None:
    text = (ROOT / "docs" / name).read_text()
    missing = [topic for topic in TOPICS[name] if topic not in text]
    assert not missing, f"docs/{name} no longer mentions {missing}"
