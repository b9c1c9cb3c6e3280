"""The shell commands a Markdown file shows, taken out of its fenced ``bash`` blocks (and, in docs/, of the
blocks marked ``<!-- runnable -->``), as a reader would type them: a trailing ``\\`` joins lines, comments
are dropped, each ``a | b`` synopsis line is its alternatives."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

_BLOCK = re.compile(r"(<!-- runnable -->\s*\n)?```(bash|sh|shell)\n(.*?)```", re.S)


@dataclass(frozen=True)
class Command:
    source: str  # file:line
    line: str  # as written (comment dropped)
    argv: list[str]

    @property
    def synopsis(self) -> bool:
        """A usage line (``[--date D]``, ``FILE…``, ``a | b``), not a command to run as it stands."""
        return any(
            t.startswith("[") or "…" in t or t in ("|",) or re.fullmatch(r"[A-Z]+", t) for t in self.argv
        )


def commands(path: Path, marked_only: bool = False) -> list[Command]:
    text = path.read_text(encoding="utf-8")
    found = []
    for match in _BLOCK.finditer(text):
        if marked_only and not match.group(1):
            continue
        first = text.count("\n", 0, match.start(3)) + 1
        lines = match.group(3).split("\n")
        i = 0
        while i < len(lines):
            start, line = i, lines[i]
            while line.rstrip().endswith("\\") and i + 1 < len(lines):
                i += 1
                line = line.rstrip()[:-1] + " " + lines[i].strip()
            i += 1
            argv = shlex.split(line, comments=True)
            if argv:
                found.append(Command(f"{path.name}:{first + start}", shlex.join(argv), argv))
    return found
