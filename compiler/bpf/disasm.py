"""eBPF instructions as text, in the kernel verifier's own syntax (kernel/bpf/disasm.c).

This module owns ``disassemble`` (a listing); the text of one instruction,
``format_insn``, sits with the instruction record in ``opcode`` (so ``str(insn)`` needs no
import from here) and is re-exported here.  The spelling, spacing and number bases follow
``print_bpf_insn``: ALU and store immediates in decimal (``r1 += 22``,
``*(u64 *)(r10 -16) = 5``), jump immediates in hex (``if r1 s> 0x4 goto pc+3``), memory
offsets signed (``(r10 -8)``), helper calls as ``call bpf_map_lookup_elem#1``.  Two
deliberate additions, both accepted back by ``asm``:

* ld_imm64 ends in `` ll`` (as LLVM prints it) so ``r1 = 0x5 ll`` cannot be mistaken for
  ``r1 = 5`` when reassembled;
* a map load prints its symbolic name as ``r1 = map[id:NAME] ll`` (bpftool's
  ``map[id:N]`` layout); without a name, the raw fd as ``map[fd:N]``.  Map-value loads
  add ``[0]+OFFSET``.

Unresolved symbolic targets print as ``goto NAME``.  This module does not parse text
(``asm``) or produce bytes (``encode``).
"""

from __future__ import annotations

from collections.abc import Sequence

from .encode import label_slots, resolve
from .opcode import Insn, Label, format_insn

def disassemble(insns: Sequence[Insn | Label], source_lines: list[str] | None = None,
                with_offsets: bool = True) -> str:
    """A listing of ``insns``, one instruction per line.

    ``with_offsets=True`` (default) resolves labels and prints like the verifier log,
    ``3: (bf) r1 = r6``, with jump targets as ``pc+N`` and label names on lines of their
    own.  ``with_offsets=False`` prints plain, indented assembly that keeps symbolic
    targets (``goto Lname``) and ``Lname:`` lines.  Either form reassembles with
    ``asm.assemble``.  When instructions carry a ``loc`` with ``.line`` and
    ``source_lines`` is given, a comment ``; <source line>  @ line N`` precedes the first
    instruction of each new source line."""
    lines: list[str] = []
    last_line = None

    def source_comment(item) -> None:
        nonlocal last_line
        line = getattr(getattr(item, "loc", None), "line", None)
        if source_lines is None or line is None or line == last_line:
            return
        last_line = line
        if 1 <= line <= len(source_lines):
            lines.append(f"; {source_lines[line - 1].strip()}  @ line {line}")

    if not with_offsets:
        for item in insns:
            if isinstance(item, Label):
                lines.append(f"{item.name}:")
            else:
                source_comment(item)
                lines.append(f"    {format_insn(item)}")
        return "\n".join(lines) + ("\n" if lines else "")

    names_at: dict[int, list[str]] = {}
    for name, slot in label_slots(insns).items():
        names_at.setdefault(slot, []).append(name)
    slot = 0
    for insn in resolve(insns):
        for name in names_at.pop(slot, ()):
            lines.append(f"{name}:")
        source_comment(insn)
        lines.append(f"{slot}: ({insn.code:02x}) {format_insn(insn)}")
        slot += insn.slots
    for slot_names in names_at.values():  # labels after the last instruction
        lines.extend(f"{name}:" for name in slot_names)
    return "\n".join(lines) + ("\n" if lines else "")
