"""The `luabpf` command line: `app` (the parser and `main`), `common` (consoles, exit codes,
failure reports), and one module per group of subcommands (`build`, `packets`, `run`, `pins`).
"""
from luabpf.cli.app import main

__all__ = ["main"]
