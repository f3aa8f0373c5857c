"""``qesim hw list`` / ``qesim hw show NAME|PATH [--json]`` / ``qesim hw schema [--markdown] [--out F]``.

``hw schema`` prints the JSON Schema of a hardware config (draft-07, descriptions and units;
editors' YAML language servers read it), ``--markdown`` the field reference that
``docs/hardware-config.md`` holds.
"""

from __future__ import annotations

import argparse
import json


def register(sub) -> None:
    p = sub.add_parser("hw", help="list or show hardware configs")
    s = p.add_subparsers(dest="hw_cmd", metavar="ACTION")
    s.required = True
    ls = s.add_parser("list", help="known hardware presets")
    ls.set_defaults(func=_list)
    sh = s.add_parser("show", help="one config, validated, with derived numbers")
    sh.add_argument("name")
    sh.add_argument("--json", action="store_true")
    sh.set_defaults(func=_show)
    sc = s.add_parser("schema", help="JSON Schema of a hardware config (or --markdown: the field reference)")
    sc.add_argument("--markdown", action="store_true", help="the field reference (docs/hardware-config.md)")
    sc.add_argument("--out", default=None, help="write to this file instead of stdout")
    sc.set_defaults(func=_schema)


def _schema(args: argparse.Namespace) -> int:
    from qesim.hw.schema import render_markdown, schema_text
    from qesim.safeio import check_out_file

    if args.out is not None:
        check_out_file(args.out)
    text = render_markdown() if args.markdown else schema_text()
    if args.out is None:
        print(text, end="")
        return 0
    try:
        with open(args.out, "w") as f:
            f.write(text)
    except OSError as e:
        from qesim.errors import InputError

        raise InputError(f"--out {args.out}: cannot write ({e.strerror})") from None
    print(f"wrote {args.out}")
    return 0


def _list(args: argparse.Namespace) -> int:
    from qesim.errors import InputError
    from qesim.hw.loader import config_dir, load_hw, preset_names

    if not preset_names():
        raise InputError(f"no hardware presets found in {config_dir()} (a broken install: reinstall qesim)")
    for n in preset_names():
        hw = load_hw(n)
        print(f"{n:<18} {hw.frequency_mhz:>6g} MHz  INT8 MM {hw.mpe.rate('mm', 8, 8) * hw.frequency_hz / 1e12:6.2f} "
              f"TMAC/s  HBM {hw.hbm.bandwidth_gbps:g} GB/s x {hw.hbm.efficiency:g}")
    return 0


def _show(args: argparse.Namespace) -> int:
    from qesim.hw.loader import load_hw

    hw = load_hw(args.name)
    if args.json:
        print(json.dumps(hw.model_dump(), indent=1))
        return 0
    print(f"{hw.name}: {hw.description}")
    for mode in ("mm", "mv"):
        for w, a in ((16, 16), (8, 8), (4, 8), (4, 4)):
            r = hw.mpe.rate(mode, w, a)
            print(f"  {mode.upper()} W{w}A{a}: {r:g} MAC/cycle = {r * hw.frequency_hz / 1e12:.3f} TMAC/s")
    for m in ("hbm", "ddr"):
        if m == "hbm" or hw.ddr is not None:
            print(f"  {m.upper()}: {hw.bytes_per_cycle(m):.1f} B/cycle achieved")
    print(f"  policy: {hw.policy.model_dump()}")
    return 0
