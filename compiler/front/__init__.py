"""The front end: source text → a checked syntax tree, and the diagnostics type."""
