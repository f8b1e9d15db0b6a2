"""Diagnostics: the one type for everything a user is told about a program.

Owns `Diagnostic` (severity, message, span, optional hint), `CompileError`
(raised with every diagnostic collected, not only the first), `InternalError`
(a bug of ours, never a user message) and the plain-text renderer that prints
`file:line:col: error: message`, the source line and a caret under the span.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from luabpf.compiler.front.source import Source, Span


@dataclass(frozen=True)
class Diagnostic:
    message: str
    span: Span
    hint: str | None = None
    severity: str = "error"
    # an error in an inlined function: (its name, the lines of the calls, the hint without
    # the note naming them), so that copies found by several programs merge into one
    inlined: tuple | None = field(default=None, compare=False)

    @property
    def file(self) -> str:
        return self.span.file

    @property
    def line(self) -> int:
        return self.span.line

    @property
    def col(self) -> int:
        return self.span.col

    def __str__(self) -> str:
        return f"{self.span}: {self.severity}: {self.message}"


class CompileError(Exception):
    """A program luabpf will not compile; `.diagnostics` lists every reason."""

    def __init__(self, diagnostics: list[Diagnostic], source: Source | None = None):
        self.diagnostics = list(diagnostics)
        self.source = source
        super().__init__("\n".join(str(d) for d in self.diagnostics))

    def render(self) -> str:
        return "\n".join(render(d, self.source) for d in self.diagnostics)


class InternalError(Exception):
    """An invariant of the compiler itself failed: a bug in luabpf."""


class Diagnostics:
    """Collects the diagnostics of one pass so a file reports all its errors."""

    def __init__(self) -> None:
        self.items: list[Diagnostic] = []

    def error(self, span: Span, message: str, hint: str | None = None) -> None:
        self.items.append(Diagnostic(message, span, hint))

    def raise_if_any(self, source: Source | None = None) -> None:
        if self.items:
            ordered = sorted(self.items, key=lambda d: (d.line, d.col))
            raise CompileError(ordered, source)


def render(diag: Diagnostic, source: Source | None) -> str:
    """`file:line:col: error: msg`, then the source line and a caret marker."""
    out = [str(diag)]
    if source is not None:
        text = source.line_text(diag.line)
        if text:
            width = 1
            if diag.span.end_line == diag.line and diag.span.end_col > diag.col:
                width = diag.span.end_col - diag.col
            out.append(f"  {diag.line:>4} | {text}")
            out.append("       | " + " " * (diag.col - 1) + "^" + "~" * (width - 1))
    if diag.hint:
        out.append(f"  hint: {diag.hint}")
    return "\n".join(out)
