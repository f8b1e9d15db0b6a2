"""The `luabpf` command as tests run it, and the inputs both test tiers feed it.

`run_luabpf(*args)` runs `python -m luabpf.cli ARGS…` as a real process (from the
checkout, output captured as text, bounded in time), optionally as root holding only
some capabilities (`capabilities=""`: none). `LUABPF_COMMAND` is the same command for
tests that start it in the background with `subprocess.Popen`. `write_script` writes a
script into a test's `tmp_path`; `json_failure` reads the `--json` failure line.

Shared inputs, so that tests/unit and tests/kernel judge the same thing: `DROP_2222`
(a filter dropping TCP data from source port 2222), `FRAMES` (two such segments and two
that pass), `TC_SCRIPT` (a filter of tc verdicts) and `LONG_LOOP` (a loop far over the
packet budget).

Test modules import it as a top-level module (`from cli_runner import run_luabpf`):
tests/ has no __init__.py, so pytest puts tests/ on sys.path when it loads
tests/conftest.py.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

from luabpf.runtime.packets import tcp_frame, udp_frame

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LUABPF_COMMAND = [sys.executable, "-m", "luabpf.cli"]


def run_luabpf(*args: str, cwd=ROOT, timeout: float = 120,
               capabilities: str | None = None) -> subprocess.CompletedProcess:
    """`luabpf ARGS…` in a subprocess. With `capabilities` (setpriv's syntax, "+bpf,+net_admin",
    or "" for none) it runs as root whose bounding and inheritable sets hold only those."""
    cmd = [*LUABPF_COMMAND, *args]
    if capabilities is not None:
        keep = f"-all,{capabilities}" if capabilities else "-all"
        cmd = ["setpriv", f"--bounding-set={keep}", f"--inh-caps={keep}", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd)


def stop_run(proc: subprocess.Popen) -> str:
    """Stop a background `luabpf run` as Ctrl-C would (SIGTERM; SIGKILL after 15 s) and
    return what it wrote on stderr (the process must have been started with stderr=PIPE)."""
    if proc.poll() is None:
        proc.terminate()
    try:
        proc.wait(15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    errs = proc.stderr.read()
    proc.stderr.close()
    return errs


def write_script(tmp_path, text: str, name: str = "filter.lua") -> str:
    """`text` written to `tmp_path/name`; its path."""
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def json_failure(r, code: int) -> list[dict]:
    """The --json failure line: the last line of stdout."""
    assert r.returncode == code, (r.stdout, r.stderr)
    last = json.loads(r.stdout.splitlines()[-1])
    assert last["event"] == "error" and last["exit"] == code, last
    for d in last["diagnostics"]:
        assert set(d) == {"file", "line", "column", "message", "hint", "severity"}
    return last["diagnostics"]


DROP_2222 = """
function filter(hdr, pld)
  if hdr.tcp and hdr.tcp.sport == 2222 and #pld > 0 then
    return false
  end
  return true
end
"""

FRAMES = [
    tcp_frame("10.0.0.1", "10.0.0.2", 2222, 5555, b"SSH-2.0-OpenSSH_6.4\r\n"),
    tcp_frame("10.0.0.1", "10.0.0.2", 2223, 5555, b"SSH-2.0-OpenSSH_9.6\r\n"),
    tcp_frame("10.0.0.1", "10.0.0.2", 2222, 5555, flags="S"),
    udp_frame("10.0.0.1", "10.0.0.2", 2222, 53, b"x"),
]

TC_SCRIPT = """
function filter(hdr, pld)
  if hdr.udp and hdr.udp.dport == 53 then
    return tc.SHOT
  end
  return tc.OK
end
"""

LONG_LOOP = """function filter(hdr, pld)
  local n = 0
  --@bound 100000000
  while n < 100000000 do
    n = n + 1
  end
  return true
end
"""
