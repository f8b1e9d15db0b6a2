"""IR optimisation passes: each a function from ir.Function to ir.Function (in place)."""
from luabpf.compiler.opt.cleanup import optimise  # noqa: F401
