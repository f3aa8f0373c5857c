"""``qesim hw list`` / ``qesim hw show NAME|PATH [--json]``: hardware presets."""

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


def _list(args: argparse.Namespace) -> int:
    from qesim.hw.loader import load_hw, preset_names

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
