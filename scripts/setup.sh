#!/usr/bin/env bash
# Set up a fresh Debian machine (12/bookworm or later) to build, run and test
# luabpf, from the repository root. Idempotent and silent when nothing is to do.
#   - Debian packages: installed only if missing (apt-get update only then).
#   - .venv: made with Debian's python3 (--system-site-packages, so that
#     python3-bpfcc's `import bcc` works); remade if it cannot import bcc.
#   - pip install -e '.[test]': rerun only when setup.cfg/setup.py/pyproject.toml change.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# What the runtime needs, and what only the benchmark and object-file tests need.
RUNTIME_PACKAGES=(python3-bpfcc python3-venv iproute2 bpftool libbpf1)
BENCH_PACKAGES=(clang-19 llvm-19)   # v4 ISA (signed division) for the C peers
BUILD_PACKAGES=(python3-setuptools python3-wheel)  # the wheel test builds offline with these
PYTHON=/usr/bin/python3           # Debian's: pyenv's or other pythons cannot import bcc
VENV=.venv

say() { printf 'setup: %s\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"
    elif command -v sudo >/dev/null; then sudo "$@"
    else say "need root to run: $*"; exit 1
    fi
}

missing=()
for pkg in "${RUNTIME_PACKAGES[@]}" "${BENCH_PACKAGES[@]}" "${BUILD_PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    [ "$status" = "install ok installed" ] || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    as_root apt-get update -qq
    as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

venv_ok() {
    [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import bcc' >/dev/null 2>&1
}
if ! venv_ok; then
    say "creating $VENV with $PYTHON --system-site-packages"
    "$PYTHON" -m venv --system-site-packages --clear "$VENV"
    rm -f "$VENV/.luabpf-installed"
    venv_ok || { say "$VENV/bin/python still cannot import bcc (is python3-bpfcc installed?)"; exit 1; }
fi

# Reinstall when the packaging metadata or the checkout's location changed.
stamp="$VENV/.luabpf-installed"
want="$(pwd) $(cat setup.cfg setup.py pyproject.toml | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ] \
        || ! "$VENV/bin/python" -c 'import luabpf, lark, pytest, hypothesis, lupa' >/dev/null 2>&1; then
    say "pip install -e '.[test]'"
    log=$(mktemp)
    if ! "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e '.[test]' >"$log" 2>&1; then
        cat "$log" >&2; rm -f "$log"; exit 1
    fi
    rm -f "$log"
    printf '%s\n' "$want" > "$stamp"
fi
