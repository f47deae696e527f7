"""The docs stand on their own: nothing points outside the repository, and every link resolves.

Users get the repository and nothing else, so a citation of a file that lives elsewhere (the
research notes the code was written from) is a dead end for them. The PayTabs facts are in
docs/paytabs.md; cite that, docs/webhook-security.md, docs/states.md and so on instead.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
THIS_FILE = Path(__file__).resolve()

#: Places that are not in the repository, and the way they used to be cited.
FORBIDDEN = (
    "../shared",
    "/work/shared",
    "paytabs-pt2.md",
    "reference/",
    "reference §",
    "webhooks-and-reliability",
    "predecessor.md",
)

_LINK = re.compile(r"!?\[(?:[^\]\\]|\\.)*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_DEFINITION = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.M)
_FENCE = re.compile(r"^\s{0,3}(```|~~~).*?^\s{0,3}\1", re.M | re.S)
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.+?)\s*#*\s*$", re.M)
_EXTERNAL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")  # http:, https:, mailto: ...


def _scanned_files() -> Iterator[Path]:
    yield from sorted(ROOT.glob("*.md"))  # README, CHANGELOG ...
    for top in ("src", "tests", "docs", "examples"):
        for path in sorted((ROOT / top).rglob("*")):
            if not path.is_file() or "__pycache__" in path.parts:
                continue
            if path.resolve() == THIS_FILE:
                continue  # it names the forbidden strings in order to look for them
            yield path


def _text(path: Path) -> str | None:
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        return None  # a binary file (an image) cites nothing


def test_nothing_cites_files_outside_the_repository() -> None:
    found = []
    for path in _scanned_files():
        text = _text(path)
        if text is None:
            continue
        for number, line in enumerate(text.splitlines(), start=1):
            for needle in FORBIDDEN:
                if needle in line:
                    found.append(f"{path.relative_to(ROOT)}:{number}: {needle!r}")
    assert not found, (
        "These lines cite files outside the repository; cite docs/paytabs.md §N or another "
        "file under docs/ instead:\n" + "\n".join(found)
    )


def _markdown_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _without_code(text: str) -> str:
    text = _FENCE.sub("", text)
    return re.sub(r"`[^`\n]*`", "", text)


def _slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = text.replace("`", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    anchors = set()
    for heading in _HEADING.findall(_FENCE.sub("", path.read_text(encoding="utf-8"))):
        slug = _slug(heading)
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def _links(path: Path) -> list[str]:
    text = _without_code(path.read_text(encoding="utf-8"))
    return _LINK.findall(text) + _DEFINITION.findall(text)


@pytest.mark.parametrize("page", _markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page: Path) -> None:
    broken = []
    for target in _links(page):
        if _EXTERNAL.match(target):
            continue
        file_part, _, anchor = target.partition("#")
        destination = (page.parent / file_part).resolve() if file_part else page
        if not destination.exists():
            broken.append(f"{target}: no such file")
        elif anchor and destination.suffix == ".md" and anchor not in _anchors(destination):
            broken.append(f"{target}: no heading with that anchor in {destination.name}")
    assert not broken, f"{page.relative_to(ROOT)} has broken links:\n" + "\n".join(broken)


def test_the_checks_see_links_and_anchors() -> None:
    """The patterns above must find what they are meant to (else the tests pass vacuously)."""
    readme_links = _links(ROOT / "README.md")
    assert "docs/paytabs.md" in readme_links
    assert "15-what-is-still-uncertain" in _anchors(ROOT / "docs" / "paytabs.md")
    assert _slug("12.2 Browser `return`") == "122-browser-return"
    assert _links(ROOT / "docs" / "states.md")  # it links into its own sections
