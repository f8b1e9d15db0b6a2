"""`python -m luabpf.cli`: the `luabpf` command."""
import sys

from luabpf.cli.app import main

sys.exit(main())
