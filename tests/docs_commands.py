"""The commands README.md and docs/*.md show, as a user types them: every line of a ```bash block (continuation
lines joined, comments dropped), with the file and line it is on. tests/test_docs.py checks each one is parsed by
the command it names and run by a test."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class DocCommand:
    page: str  # relative to the repository root
    line: int
    text: str  # the command as shown, comments dropped, continuations joined, whitespace collapsed

    @property
    def argv(self) -> list[str]:
        return shlex.split(self.text)

    def __str__(self) -> str:
        return f"{self.page}:{self.line}: {self.text}"


def doc_pages() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def _commands_of(path: Path) -> list[DocCommand]:
    page = path.relative_to(REPO).as_posix()
    found: list[DocCommand] = []
    inside = False
    pending: list[str] = []
    start = 0
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.lstrip().startswith("```"):  # a block inside a list item is indented
            inside = line.strip() == "```bash" if not inside else False
            continue
        if not inside:
            continue
        if not pending:
            start = number
        code = " ".join(shlex.split(line, comments=True, posix=False)) if line.strip() else ""
        if line.rstrip().endswith("\\") and not re.search(r"#.*\\$", line):
            pending.append(code.rstrip("\\").rstrip())
            continue
        pending.append(code)
        text = " ".join(" ".join(pending).split())
        pending = []
        last = found[-1] if found else None
        if last and last.text.startswith("for ") and not last.text.endswith("done"):  # a loop is one command
            joiner = " " if last.text.endswith("do") else "; "
            found[-1] = DocCommand(page, last.line, f"{last.text}{joiner}{text}")
        elif text:
            found.append(DocCommand(page, start, text))
    return found


def doc_commands() -> list[DocCommand]:
    return [c for page in doc_pages() for c in _commands_of(page)]


def doc_command(text: str) -> DocCommand:
    """The documented command whose text is ``text`` (whitespace collapsed): a test runs it from here, so a command
    that changes in the docs changes what the test runs, and one that leaves the docs fails the test."""
    wanted = " ".join(text.split())
    matches = [c for c in doc_commands() if c.text == wanted]
    assert matches, f"no page of README.md or docs/ shows the command {wanted!r}"
    return matches[0]
