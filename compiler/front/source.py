"""Source text and spans: where a piece of a kernel-Lua program came from.

Owns `Source` (a named text with line lookup) and `Span` (file, start and end
line/column, 1-based). Everything a user sees points at a Span.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Span:
    file: str
    line: int
    col: int
    end_line: int
    end_col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


class Source:
    """A kernel-Lua program's text with its file name."""

    def __init__(self, text: str, filename: str = "<string>"):
        self.text = text
        self.filename = filename
        self.lines = text.split("\n")

    def line_text(self, line: int) -> str:
        if 1 <= line <= len(self.lines):
            return self.lines[line - 1].rstrip("\r")
        return ""

    def span(self, line: int, col: int, end_line: int | None = None, end_col: int | None = None) -> Span:
        return Span(self.filename, line, col, end_line or line, end_col or col + 1)
