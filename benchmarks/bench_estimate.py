"""Cost of one whole-model estimate (qwen2vl-7b, W4A8 + QE, prefill s=128 + decode at context 512,
on flightllm-u280), cold and warm, through the library path and through the sweep fast path.

    python benchmarks/bench_estimate.py [--json] [--reps 200]

Keys (seconds unless named otherwise):
- ``cold_estimate_s``: ``estimate_graph`` prefill + decode right after
  ``qesim.perf.planner.plan_gemm.cache_clear()`` (the tiling search runs);
- ``warm_estimate_s``: the same again, planner cache warm (median of --reps);
- ``warm_plan_graph_s`` / ``warm_graph_cycles_s``: the parts of that: lowering only, and lowering +
  timing without the per-op DataFrame (``graph_cycles``);
- ``warm_fast_estimate_s``: the same two estimates as ``CompiledGraph.evaluate`` at one fresh
  ``HwPoints`` (lowering memoised, point values new each call, no per-op table), and
  ``cold_fast_estimate_s`` lowering them first;
- ``sweep_points_per_s``: the in-process 10,000-point sweep of ``bench_sweep.py``.
Graphs are built once outside the timings (``build_s`` says what building costs).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path


def _median(fn, reps: int) -> float:
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--sweep-points", type=int, default=10000)
    args = ap.parse_args(argv)

    from qesim.perf.compiled import CompiledGraph
    from qesim.perf.points import HwPoints
    from qesim.graph.builders import build_graph
    from qesim.hw.loader import load_hw
    from qesim.perf import planner
    from qesim.perf.model import estimate_graph, graph_cycles, plan_graph

    hw = load_hw("flightllm-u280")
    t = time.perf_counter()
    graphs = [build_graph("qwen2vl-7b", stage="prefill", seq_len=128, setting="W4A8", method="qe"),
              build_graph("qwen2vl-7b", stage="decode", context_len=512, setting="W4A8", method="qe")]
    build_s = time.perf_counter() - t

    def est():
        return [estimate_graph(g, hw).cycles for g in graphs]

    planner.plan_gemm.cache_clear()
    from qesim.perf.estimate import clear_caches

    clear_caches()
    t = time.perf_counter()
    ref = est()
    cold = time.perf_counter() - t
    warm = _median(est, args.reps)
    warm_plan = _median(lambda: [plan_graph(g, hw) for g in graphs], args.reps)
    warm_cycles = _median(lambda: [graph_cycles(g, hw) for g in graphs], args.reps)

    t = time.perf_counter()
    compiled = [CompiledGraph(g, hw) for g in graphs]
    hv = HwPoints(hw, 1)
    fast_ref = [float(c.evaluate(hv).cycles[0]) for c in compiled]
    cold_fast = time.perf_counter() - t

    def fast():
        h = HwPoints(hw, 1)
        return [c.evaluate(h).cycles[0] for c in compiled]

    warm_fast = _median(fast, args.reps)
    agree = max(abs(a - b) / b for a, b in zip(fast_ref, ref))

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import bench_sweep

    sw_t, sw_n = bench_sweep.timed_run(args.sweep_points, 0)
    res = {
        "cold_estimate_s": cold,
        "warm_estimate_s": warm,
        "warm_plan_graph_s": warm_plan,
        "warm_graph_cycles_s": warm_cycles,
        "cold_fast_estimate_s": cold_fast,
        "warm_fast_estimate_s": warm_fast,
        "fast_vs_estimate_graph_max_rel_diff": agree,
        "sweep_points_per_s": sw_n / sw_t,
        "sweep_points": sw_n,
        "build_s": build_s,
        "ratio_warm_over_fast": warm / warm_fast,
        "what": "qwen2vl-7b W4A8+qe prefill s=128 + decode ctx=512 on flightllm-u280",
    }
    if args.json:
        print(json.dumps(res))
    else:
        for k, v in res.items():
            print(f"{k:40s} {v:.6g}" if isinstance(v, float) else f"{k:40s} {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
