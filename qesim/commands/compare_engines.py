"""``qesim compare-engines``: per-op agreement of the analytical and the cycle (simpy) engine.

    qesim compare-engines --model llama2-7b --hw flightllm-u280 --setting W4A8 --method qe \\
                          --stage decode --context 512 [--json] [--trace DIR]
    qesim compare-engines --all [--models a,b] [--out reports/]   # the full engines report

Both engines time one shared schedule (``plan_graph``); cycles are per op call, diff % =
100 * (cycle - analytical) / analytical. ``--trace DIR`` also writes the cycle model's Chrome
trace (``DIR/trace_<graph>_<hw>.json``, open in https://ui.perfetto.dev) and Gantt PNG.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from qesim.errors import InputError


def register(sub) -> None:
    p = sub.add_parser("compare-engines", help="per-op agreement of the analytical and cycle engines",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", help="model preset name or a layer-graph JSON file")
    p.add_argument("--hw", default="flightllm-u280", help="hardware preset name or YAML path")
    p.add_argument("--setting", default=None)
    p.add_argument("--method", default=None)
    p.add_argument("--stage", choices=["prefill", "decode"], default="prefill")
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--context", type=int, default=None, help="KV-cache tokens (default 0 prefill, 512 decode)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--density", type=float, default=1.0)
    p.add_argument("--kv-bits", type=int, default=None)
    p.add_argument("--max-sim-steps", type=int, default=256, help="macro-step cap per op (0 = replay every tile)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--trace", default=None, metavar="DIR", help="also write the Chrome trace JSON and Gantt PNG")
    p.add_argument("--all", action="store_true",
                   help="every preset x {prefill 128, decode at 512} x {W16A16,W4A8,W3A16} x 3 FlightLLM/QE configs")
    p.add_argument("--models", default=None, help="with --all: comma-separated model presets (default: all)")
    p.add_argument("--out", default="reports", help="with --all: output directory (default reports/)")
    p.add_argument("--quiet", action="store_true", help="with --all: no progress bar (the paths written are printed)")
    p.set_defaults(func=run)


def run_all(args) -> int:
    from qesim.graph.presets import preset_names
    from qesim.report.engines import exact_replay_check, render_markdown, sweep, variant_rows

    models = args.models.split(",") if args.models else preset_names()
    unknown = sorted(set(models) - set(preset_names()))
    if unknown:
        raise InputError(f"unknown model preset(s): {', '.join(unknown)}")
    from qesim.safeio import check_out_dir

    from qesim.progress import bar, command_line

    out = check_out_dir(args.out)
    from qesim.report.engines import HW_NAMES, SETTINGS, STAGES

    pb = bar(len(models) * len(STAGES) * len(SETTINGS) * len(HW_NAMES), "compare-engines --all", args.quiet)
    cases, outs, skipped = sweep(models, progress=pb)
    pb.close()
    timing_cols = ["model", "stage", "setting", "method", "hw", "events", "wall_s"]
    cases[timing_cols].to_csv(out / "engines_timing.csv", index=False)  # wall times: not reproducible
    cases = cases.drop(columns=["wall_s"])
    cases.to_csv(out / "engines.csv", index=False)
    outs.to_csv(out / "engines_outliers.csv", index=False)
    exact = exact_replay_check() if "llama2-7b" in models else None
    variants = variant_rows() if "llama2-7b" in models else None
    (out / "engines.md").write_text(render_markdown(cases, outs, skipped, exact, variants,
                                                    command_line(f"qesim compare-engines --all --out {args.out}")))
    e2e = cases["diff_pct"].abs()
    print(f"{len(cases)} cases: end-to-end max |diff| {e2e.max():.3f}%, {len(outs)} op rows beyond 3%; "
          f"wrote {out / 'engines.md'}, {out / 'engines.csv'}, {out / 'engines_outliers.csv'}, "
          f"{out / 'engines_timing.csv'}")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.all:
        return run_all(args)
    if not args.model:
        raise InputError("--model is required (or --all)")
    if not 0 < args.density <= 1:
        raise InputError(f"--density must be in (0, 1] (got {args.density})")
    if args.max_sim_steps < 0:
        raise InputError("--max-sim-steps must be >= 0")
    from qesim.commands.estimate import graph_from_args
    from qesim.hw.loader import load_hw
    from qesim.report.engines import TOLERANCE_PCT, compare_engines, why

    from qesim.safeio import check_out_dir, dumps_finite

    hw = load_hw(args.hw)
    graph = graph_from_args(args)
    if args.trace:
        check_out_dir(args.trace, "--trace")  # before the simulation, not after it
    steps = args.max_sim_steps or None
    cmp = compare_engines(graph, hw, max_sim_steps=steps)
    if args.trace:
        from qesim.perf.model import plan_graph
        from qesim.sim.engine import simulate_schedule
        from qesim.sim.trace import gantt_png, write_chrome_trace

        res = simulate_schedule(plan_graph(graph, hw), hw, max_sim_steps=steps, record=True)
        d = Path(args.trace)
        stem = f"{graph.name}_{hw.name}"
        write_chrome_trace(res, d / f"trace_{stem}.json")
        gantt_png(res, d / f"trace_{stem}.png")
        print(f"wrote {d / f'trace_{stem}.json'}, {d / f'trace_{stem}.png'}", file=sys.stderr)
    if args.json:
        print(dumps_finite({
            "graph": cmp.graph, "hw": cmp.hw, "analytical_cycles": cmp.analytical_cycles,
            "cycle_cycles": cmp.cycle_cycles, "diff_pct": cmp.diff_pct, "events": cmp.events, "wall_s": cmp.wall_s,
            "ops": cmp.ops.to_dict(orient="records"),
        }))
        return 0
    print(f"{graph.name} on {hw.name}: analytical {cmp.analytical_cycles:.6g} cycles, cycle model "
          f"{cmp.cycle_cycles:.6g} cycles, diff {cmp.diff_pct:+.3f}%  ({cmp.events:,} events, {cmp.wall_s:.2f} s)")
    hdr = (f"{'op':<22} {'kind':<9} {'x':>3} {'steps':>7} {'analytical':>12} {'cycle':>12} {'diff %':>8} "
           f"{'bound a/c':<16}")
    print(hdr)
    print("-" * len(hdr))
    for r in cmp.ops.itertuples():
        flag = "  <-- " + why(r) if abs(r.diff_pct) > TOLERANCE_PCT else ""
        print(f"{r.name:<22} {r.kind:<9} {r.repeat:>3} {r.steps:>7} {r.analytical:>12.6g} {r.cycle:>12.6g} "
              f"{r.diff_pct:>+8.3f} {r.bound_analytical + '/' + r.bound_cycle:<16}{flag}")
    print(f"{'total':<22} {'':<9} {'':>3} {'':>7} {cmp.analytical_cycles:>12.6g} {cmp.cycle_cycles:>12.6g} "
          f"{cmp.diff_pct:>+8.3f}")
    return 0
