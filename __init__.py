"""luabpf: kernel Lua compiled to eBPF.

The public Python interface (docs/running.md, "Python"): `compile`, `run_function`, `open_running`
(a program `luabpf run` keeps running), and the
errors a caller can catch. The work is done in `luabpf.compiler` (pure, no
kernel access) and `luabpf.runtime` (everything that touches the kernel).
Names are imported on first use, so `import luabpf.compiler` stays free of
the runtime.
"""
__version__ = "0.1.0"      # the one place it is written: setup.cfg reads it (attr:)

_PUBLIC = ("CompileError", "LoadError", "LuaRuntimeError", "Program", "compile", "run_function",
           "open_running")
__all__ = list(_PUBLIC)


def __getattr__(name):
    if name in _PUBLIC:
        from luabpf import api   # PEP 562: the runtime loads on first use of a public name
        return getattr(api, name)
    raise AttributeError(f"module 'luabpf' has no attribute {name!r}")
