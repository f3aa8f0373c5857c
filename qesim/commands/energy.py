"""``qesim energy``: energy per op class, per token, power, area and die cost of one pass; or the report.

    qesim energy --model llama2-7b --hw qe-paper-npu --setting W4A8 --method qe --stage decode --context 512
    qesim energy --report [--out reports/]   # energy.md, energy_presets.csv, energy_flightllm.csv, energy_breakdown.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from qesim.commands.estimate import add_model_args, graph_from_args
from qesim.errors import InputError


def register(sub) -> None:
    p = sub.add_parser("energy", help="energy / power / area / cost of one pass, or the energy report",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(p)
    for a in p._actions:  # --model is needed only without --report
        if a.dest == "model":
            a.required = False
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--report", action="store_true", help="write the energy report")
    p.add_argument("--out", default="reports", help="with --report: output directory")
    p.add_argument("--sample-every", type=int, default=128, help="with --report: decode steps between samples")
    p.add_argument("--sweep", default=None, help="with --report: sweep directory for the latency/energy/area "
                   "fronts (default OUT/energy_sweep)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.report:
        from qesim.progress import command_line
        from qesim.report.energy import write_report
        from qesim.safeio import check_out_dir

        if args.sample_every < 1:
            raise InputError(f"--sample-every must be >= 1 (got {args.sample_every})")
        out = check_out_dir(args.out)  # before the report's runs, not after them
        sweep = Path(args.sweep) if args.sweep else None
        cmd = command_line(f"qesim energy --report --out {args.out} --sample-every {args.sample_every}")
        print(f"wrote {write_report(out, sample_every=args.sample_every, sweep_dir=sweep, command=cmd)}")
        return 0
    from qesim.hw.loader import load_hw
    from qesim.perf.terms.costing import cost_graph

    if not args.model:
        raise InputError("qesim energy: --model is required (or --report)")

    hw = load_hw(args.hw)
    graph = graph_from_args(args)
    r = cost_graph(graph, hw)
    d = r.to_dict()
    if args.json:
        print(json.dumps(d))
        return 0
    print(f"{graph.model} {graph.stage} {graph.setting} method={graph.method} on {hw.name}: energy model {r.model}")
    if r.energy_j is None:
        print("energy: not known for this config (no energy section)")
    else:
        print(f"energy {r.energy_j:.4g} J per pass, {r.energy_per_token_j * 1e3:.4g} mJ/token, "
              f"avg power {r.avg_power_w:.4g} W, static {r.static_w:.4g} W")
        by = r.breakdown_by_class()
        print("by class: " + ", ".join(f"{c} {v / r.energy_j * 100:.1f}%" for c, v in by.items() if v > 0))
        print("by op kind: " + ", ".join(f"{k} {v / r.energy_j * 100:.1f}%" for k, v in r.breakdown_by_kind().items()))
    print(f"area: {'not known' if r.area_mm2 is None else f'{r.area_mm2:.4g} mm^2'}"
          + ("" if not r.area_breakdown_mm2 or len(r.area_breakdown_mm2) <= 2 else
             " (" + ", ".join(f"{k} {v:.3g}" for k, v in r.area_breakdown_mm2.items() if k != "total") + ")"))
    print(f"die cost: {'not known' if r.cost_usd is None else f'${r.cost_usd:.4g}'}")
    return 0
