"""CONFORMANCE.md is the one conformance text the project cites, and its citations resolve."""

from __future__ import annotations

import re
import subprocess
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONFORMANCE = ROOT / "CONFORMANCE.md"

# Citations of texts a reader of the repository cannot open: an outside
# check list cited by section (in any spelling and case, also across a line
# break or with a few words between the name and the section sign), its file
# name, and machine paths.  Each pattern is assembled from pieces so that this
# file does not contain what it searches for: the test scans this file too,
# and a repository hook greps every file for the machine paths.
_LIST = "check" + "list"
_SECTION = "\N{SECTION SIGN}"
OUTSIDE = [
    re.compile(rf"\b{_LIST}\b[^{_SECTION}]{{0,30}}{_SECTION}", re.IGNORECASE),
    re.compile("pop3" + "-conformance", re.IGNORECASE),
    re.compile("/" + "work/"),
    re.compile(re.escape(".." + "/shared")),
    re.compile("shared" + "/rfc"),
]

# "CONFORMANCE.md §3.2", also wrapped in a comment ("CONFORMANCE.md\n# §3.2")
# and in lists ("CONFORMANCE.md §3.4, §3.5 and §7.3").
CITATION = re.compile(
    r"CONFORMANCE\.md(?:\s|#|\*|/)*((?:§\d+(?:\.\d+)?)(?:(?:\s*(?:,|and|or|/)\s*)§\d+(?:\.\d+)?)*)"
)
SECTION_REF = re.compile(r"§(\d+(?:\.\d+)?)")
# "## 3. Wire format" and "### 3.2 Dot-stuffing".
HEADING = re.compile(r"^(#{2,3}) (\d+)\.(\d+)?\s+(.+?)\s*$", re.MULTILINE)
# A link to a section of this document: "[§3.2](#32-dot-stuffing)".
SECTION_LINK = re.compile(r"\[§(\d+\.\d+)\]\(#([^)]*)\)")


@cache
def _tracked_files() -> tuple[Path, ...]:
    """The files under version control (or, without git, every file not
    in a hidden or build directory)."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        skip = {"__pycache__", "build", "dist"}
        return tuple(
            p
            for p in ROOT.rglob("*")
            if p.is_file()
            and not any(part.startswith(".") or part in skip for part in p.relative_to(ROOT).parts)
        )
    return tuple(ROOT / name for name in out.decode().split("\0") if name)


def _texts() -> list[tuple[Path, str]]:
    """Every tracked text file (not a symbolic link) with its content."""
    texts = []
    for path in _tracked_files():
        if path.is_symlink() or not path.is_file():
            continue
        data = path.read_bytes()
        if b"\0" in data:
            continue  # binary
        texts.append((path, data.decode("utf-8", "replace")))
    return texts


def _line_of(text: str, offset: int) -> str:
    start = text.rfind("\n", 0, offset) + 1
    end = text.find("\n", offset)
    return text[start : end if end >= 0 else len(text)].strip()


@cache
def _sections() -> dict[str, str]:
    """Section number ("3" or "3.2") -> heading text ("3.2 Dot-stuffing")."""
    sections: dict[str, str] = {}
    for level, chapter, sub, title in HEADING.findall(CONFORMANCE.read_text(encoding="utf-8")):
        number = chapter if level == "##" else f"{chapter}.{sub}"
        sections[number] = f"{number}{'.' if level == '##' else ''} {title}"
    return sections


def _slug(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")


def test_no_citation_of_a_text_outside_the_repository() -> None:
    """No tracked file cites an outside conformance text, its file or a machine path."""
    found = [
        f"{path.relative_to(ROOT)}: {_line_of(text, match.start())}"
        for path, text in _texts()
        for pattern in OUTSIDE
        for match in pattern.finditer(text)
    ]
    assert not found, "cite CONFORMANCE.md or the RFC instead:\n" + "\n".join(found)


def test_every_cited_section_exists() -> None:
    """Every "CONFORMANCE.md §N.M" in the repository names a section of CONFORMANCE.md."""
    sections = _sections()
    missing = [
        f"{path.relative_to(ROOT)}: §{number} in {_line_of(text, match.start())!r}"
        for path, text in _texts()
        for match in CITATION.finditer(text)
        for number in SECTION_REF.findall(match.group(1))
        if number not in sections
    ]
    assert not missing, "no such section in CONFORMANCE.md:\n" + "\n".join(missing)


def test_the_citation_pattern_sees_the_forms_in_use() -> None:
    """The citation scanner finds plain, wrapped and listed citations."""
    text = "CONFORMANCE.md §3.2; CONFORMANCE.md\n    # §7.3, §3.4 and §11; CONFORMANCE.md §9"
    refs = [SECTION_REF.findall(m.group(1)) for m in CITATION.finditer(text)]
    assert refs == [["3.2"], ["7.3", "3.4", "11"], ["9"]]


def test_sections_are_numbered_in_order() -> None:
    """Chapters run 1, 2, ...; sections N.1, N.2, ... under chapter N; none twice."""
    headings = HEADING.findall(CONFORMANCE.read_text(encoding="utf-8"))
    chapter = 0
    sub = 0
    for level, number, subnumber, title in headings:
        if level == "##":
            assert not subnumber, title
            assert int(number) == chapter + 1, f"chapter {number} {title} after {chapter}"
            chapter, sub = int(number), 0
        else:
            assert int(number) == chapter, f"{number}.{subnumber} {title} in chapter {chapter}"
            assert int(subnumber) == sub + 1, f"{number}.{subnumber} {title} after {sub}"
            sub = int(subnumber)
    assert chapter >= 10


def test_links_between_sections_resolve() -> None:
    """Every "[§N.M](#anchor)" in CONFORMANCE.md points at section N.M's own anchor."""
    sections = _sections()
    text = CONFORMANCE.read_text(encoding="utf-8")
    links = SECTION_LINK.findall(text)
    assert links
    for number, anchor in links:
        assert number in sections, f"§{number} does not exist"
        assert anchor == _slug(sections[number]), f"§{number} links to #{anchor}"


def test_section_references_in_conformance_are_links() -> None:
    """Inside CONFORMANCE.md a bare "§N.M" is an RFC's section; our own are links."""
    text = CONFORMANCE.read_text(encoding="utf-8")
    text = SECTION_LINK.sub("", text)
    text = re.sub(r"CONFORMANCE\.md §\S+", "", text)
    # "RFC 2449 §6.6", "RFC 1939 §§4-7", "RFC 6856 §2.1, §5", "RFC 2449 §4-5".
    text = re.sub(r"RFC\s+\d+\s+§+[\d.\-]+(?:(?:,\s+|\s+and\s+)§[\d.\-]+)*", "", text)
    left = [_line_of(text, m.start()) for m in re.finditer("§", text)]
    assert not left, "link sections as [§N.M](#anchor):\n" + "\n".join(left)


def test_named_test_folders_exist() -> None:
    """Every tests/<folder> that CONFORMANCE.md names is a test folder."""
    names = set(re.findall(r"\btests/(\w+)", CONFORMANCE.read_text(encoding="utf-8")))
    assert names
    for name in sorted(names):
        assert (ROOT / "tests" / name / "__init__.py").is_file(), f"tests/{name}"
