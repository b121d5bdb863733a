"""The docs a newcomer reads: the README as a short front door, reference pages under docs/ whose links
resolve, and a settings page generated from cals/settings.py (`make docs`) that cannot drift from it."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from cals.settings import settings_page, variables

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md"),
                *(ROOT / app / "README.md" for app in ("serverless", "trainer", "sampler", "deploy"))])
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
README_MAX_LINES = 250


def anchors(page: Path) -> set[str]:
    """GitHub's anchors of a Markdown page's headings (code blocks skipped)."""
    text = FENCE.sub("", page.read_text())
    found = set()
    for heading in re.findall(r"^#{1,6} (.+?)\s*$", text, re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        found.add(slug)
    return found


def broken_links(page: Path) -> list[str]:
    broken = []
    for target in LINK.findall(FENCE.sub("", page.read_text())):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{target}: no {dest}")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target}: no heading #{anchor} in {dest}")
    return broken


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    assert broken_links(page) == []


def test_the_link_check_sees_a_missing_file_and_a_missing_heading(tmp_path):
    (tmp_path / "other.md").write_text("# Other\n\n## Scale out: GPUs and hosts\n")
    page = tmp_path / "page.md"
    page.write_text("[a](other.md#scale-out-gpus-and-hosts) [b](other.md#nowhere) [c](gone.md) "
                    "[d](https://example.com/x) [e](#page)\n# Page\n```\n[f](in-code.md)\n```\n")
    assert [b.split(":")[0] for b in broken_links(page)] == ["other.md#nowhere", "gone.md"]


def test_the_settings_page_is_generated_from_the_declarations():
    page = (ROOT / "docs" / "settings.md").read_text()
    assert page == settings_page(), "docs/settings.md is stale: run make docs"
    assert all(f"`{name}`" in page for name in variables())


def test_the_readme_is_a_short_front_door():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= README_MAX_LINES
    text = "\n".join(lines)
    for command in ("make demo", "make test", "make deploy-function", "make setup-project", "make round"):
        assert command in text
