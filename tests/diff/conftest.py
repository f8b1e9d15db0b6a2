"""Reports how many differential cases ran (the tally lives in oracle.py)."""
from __future__ import annotations


def pytest_terminal_summary(terminalreporter):
    from .oracle import TALLY
    if TALLY:
        counts = ", ".join(f"{kind}: {n}" for kind, n in sorted(TALLY.items()))
        terminalreporter.write_line(f"differential cases run: {sum(TALLY.values())} ({counts})")
    from .test_differential import LIMITS
    if LIMITS.seen:
        terminalreporter.write_line("refused within the known limits of docs/language.md: "
                                    + ", ".join(f"{k}: {n}" for k, n in sorted(LIMITS.seen.items())))
