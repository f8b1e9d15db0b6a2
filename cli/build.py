"""The subcommands that compile: `compile`, `check`, `call`, `inspect`, and `demo`.

Owns what each prints; argument errors, exit codes and failure reports are `common`'s.
"""
from __future__ import annotations

import json

from luabpf.api import compile_file, compile_function
from luabpf.cli.common import (EXIT_ERROR, EXIT_OK, UsageError, err, lua_repr, out, parse_value,
                               read_source)
from luabpf.compiler.obj.objfile import write_object
from luabpf.compiler.obj.objread import DAMAGE, ObjectError, describe, disassemble, read_object
from luabpf.demo import demo
from luabpf.runtime.call import arg_kind


def cmd_compile(args) -> int:
    text = read_source(args.file)
    programs = compile_file(text, args.file, hook=args.hook, max_loop=args.max_loop,
                            loops=args.loops, budget=args.budget)
    if args.output:
        data = write_object([prog.compiled for _, prog in programs])
        try:
            with open(args.output, "wb") as f:
                f.write(data)
        except OSError as e:
            raise UsageError(f"{args.output}: cannot write it ({e.strerror})") from None
        if not args.asm:
            out.print(f"{args.output}: {len(programs)} program{'s' if len(programs) != 1 else ''} "
                      f"({', '.join(name for name, _ in programs)}), {len(data):,} bytes",
                      markup=False)
            return EXIT_OK
    if args.asm:
        for name, prog in programs:
            out.print(f"[bold]; program {name}[/bold] ({prog.insn_count} instructions)")
            out.print(prog.asm(), markup=False)
            out.print()
    else:
        for name, prog in programs:
            out.print(f"{args.file}: {name}: {prog.insn_count} instructions, "
                      f"{prog.compiled.stack_size} bytes of stack, {worst_case_words(prog)}",
                      markup=False)
    return EXIT_OK


def cmd_inspect(args) -> int:
    try:
        with open(args.object, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise UsageError(f"{args.object}: cannot read it ({e.strerror})") from None
    try:
        info = read_object(raw)
    except ObjectError as e:
        err.print(f"luabpf: {args.object}: {e}", markup=False)
        return EXIT_ERROR
    out.print(describe(info, args.object), markup=False)
    if args.asm:
        for p in info.programs:
            try:
                listing = disassemble(p)
            except DAMAGE as e:               # code that does not decode
                err.print(f"luabpf: {args.object}: program {p.name}: {e}", markup=False)
                return EXIT_ERROR
            out.print(f"\n; program {p.name} (section {p.section})", markup=False)
            out.print(listing, markup=False)
    return EXIT_OK


def cmd_check(args) -> int:
    text = read_source(args.file)
    programs = compile_file(text, args.file, hook=args.hook, max_loop=args.max_loop,
                            loops=args.loops or "kernel", budget=args.budget)   # it loads them
    rows = []
    for name, prog in programs:
        with prog.load():
            est = prog.compiled.estimate
            rows.append({"program": name, "instructions": prog.insn_count, "verified": True,
                         "worst_case": est.total, "worst_case_budgeted": est.held,
                         "budget": prog.compiled.budget})
    if args.json:
        print(json.dumps(rows))
    else:
        for (name, prog), r in zip(programs, rows):
            out.print(f"{args.file}: {r['program']}: verified by the kernel "
                      f"({r['instructions']} instructions, {worst_case_words(prog)})", markup=False)
    return EXIT_OK


def worst_case_words(prog) -> str:
    """The worst-case estimate as check and compile print it."""
    est = prog.compiled.estimate
    words = f"worst case {est.held:,} of a budget of {prog.compiled.budget:,} per run"
    if est.total != est.held:
        words += f"; {est.total:,} counting luabpf's loops over string bytes at their worst"
    return words


def cmd_call(args) -> int:
    """Call the function in the kernel; what it prints comes first (on stderr as
    `file.lua:LINE: …`, or JSON lines with --json), then what it returns."""
    text = read_source(args.file)
    values = [parse_value(a) for a in args.args]
    prog = compile_function(text, args.function, tuple(arg_kind(v) for v in values), args.file,
                            max_loop=args.max_loop, loops="kernel", budget=args.budget)
    with prog.load() as loaded:
        try:
            result = loaded.call(*values)
        finally:
            stream = loaded.events()
            for event in stream.poll(0) if stream is not None else []:
                if event.error_site is not None:    # its message is the error reported below
                    continue
                if args.json:
                    print(json.dumps(event.as_json()))
                else:
                    err.print(event.render(), markup=False)
    results = list(result) if isinstance(result, tuple) else [result]
    if args.json:
        print(json.dumps(results))
    else:
        print("\t".join(lua_repr(v) for v in results))
    return EXIT_OK


def cmd_demo(args) -> int:
    return demo(out.real)
