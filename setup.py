"""Build hook: the one packaging fact setup.cfg cannot state.

The repository's top level is the import package `luabpf` (setup.cfg:
`package_dir = luabpf = .`). setuptools' `packages = find:` finds `compiler`,
`compiler.bpf`, … relative to the root and has no option to put them under a
prefix, so the declarative form could only list subpackages by hand — and a
new subpackage missing from that list silently left the wheel while the
editable install hid it. Here every directory with an `__init__.py` under the
root becomes `luabpf.<its dotted path>`, except tests/ and bench/; and this
file, which sits in the root and so in the package `luabpf`, is not shipped as
a module. Everything else (metadata, dependencies, package data, entry points)
stays in setup.cfg.
"""
import os

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

ROOT = os.path.dirname(os.path.abspath(__file__))
NOT_SHIPPED = ["tests", "tests.*", "bench", "bench.*"]


class BuildPy(build_py):
    def find_package_modules(self, package, package_dir):
        return [m for m in super().find_package_modules(package, package_dir)
                if (m[0], m[1]) != ("luabpf", "setup")]


setup(packages=["luabpf"] + ["luabpf." + name for name in find_packages(ROOT, exclude=NOT_SHIPPED)],
      cmdclass={"build_py": BuildPy})
