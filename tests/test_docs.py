"""The repository documents itself: every citation of docs/ points at a file and heading that exist,
and nothing cites a brief or a default path outside the repository."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
TEXT_SUFFIXES = {".py", ".md", ".toml", ".sh"}
SKIPPED_DIRS = {".git", ".venv", "data", "runs", "cache", "exports", "__pycache__"}
# Citations like docs/model.md#encoding in code and prose; Markdown links inside docs/.
CITATION = re.compile(r"docs/([\w-]+\.md)(?:#([\w-]+))?")
DOC_LINK = re.compile(r"\]\(((?:\.\./)?[\w./-]*\.md)?(?:#([\w-]+))?\)")


def repository_files() -> list[Path]:
    return [
        path
        for path in sorted(ROOT.rglob("*"))
        if path.is_file()
        and path.suffix in TEXT_SUFFIXES
        and not SKIPPED_DIRS.intersection(path.relative_to(ROOT).parts[:-1])
    ]


def anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading: lower case, punctuation dropped, spaces to dashes."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = path.read_text(encoding="utf-8")
    text = re.sub(r"```.*?```", "", text, flags=re.S)  # a '#' in a code block is no heading
    return {anchor(m.group(1)) for m in re.finditer(r"^#{1,6} (.+)$", text, flags=re.M)}


def test_anchor_follows_github_rules() -> None:
    assert anchor("Filters and re-ranking") == "filters-and-re-ranking"
    assert anchor("config.toml") == "configtoml"
    assert anchor("MyAnimeList API v2") == "myanimelist-api-v2"


@pytest.mark.parametrize(
    "name", ["architecture.md", "data-formats.md", "model.md", "evaluation.md"]
)
def test_each_doc_exists_with_headings(name: str) -> None:
    assert len(anchors(DOCS / name)) >= 5


def test_every_docs_citation_resolves() -> None:
    missing = []
    for path in repository_files():
        for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            for match in CITATION.finditer(line):
                doc, heading = DOCS / match.group(1), match.group(2)
                if not doc.is_file() or (heading and heading not in anchors(doc)):
                    missing.append(f"{path.relative_to(ROOT)}:{line_no}: {match.group()}")
    assert not missing, "citations of missing docs or headings:\n" + "\n".join(missing)


def test_links_inside_docs_resolve() -> None:
    missing = []
    for doc in sorted(DOCS.glob("*.md")):
        for match in DOC_LINK.finditer(doc.read_text(encoding="utf-8")):
            target = (doc.parent / match.group(1)).resolve() if match.group(1) else doc
            heading = match.group(2)
            if not target.is_file() or (heading and heading not in anchors(target)):
                missing.append(f"{doc.name}: {match.group()}")
    assert not missing, "broken links:\n" + "\n".join(missing)


def test_nothing_cites_the_outside_brief() -> None:
    cited = [
        f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
        for path in repository_files()
        if path != Path(__file__).resolve()
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if re.search(r"\bDESIGN\b(?: §|'s|\.md)", line)
    ]
    assert not cited, "cite docs/ instead:\n" + "\n".join(cited)
