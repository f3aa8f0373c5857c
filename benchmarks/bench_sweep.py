"""Sweep throughput: a 10,000-point design space on qwen2vl-7b, in-process and with 2 workers.

    python benchmarks/bench_sweep.py [--json] [--points 10000]

The space: 2,500 random hardware points around flightllm-u280 (HBM bandwidth, clock, MPE size)
x 4 workloads (W16A16 and W4A8+QE, prefill s=128 and decode at context 512). Each run writes
its Parquet parts and the final file to a fresh temporary directory, so the numbers include
planning, the fast path, the per-group check against ``estimate_graph`` and I/O; the process pool
numbers include starting the workers. Both runs happen in one invocation (one machine state).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path


def space(points: int):
    from qesim.dse.space import space_from_dict

    n_hw = max(1, points // 4)
    return space_from_dict({"space": {
        "name": "bench", "base": "flightllm-u280", "sampling": "random", "samples": n_hw, "seed": 0,
        "hw": {"hbm.bandwidth_gbps": {"min": 100, "max": 2000, "scale": "log"},
               "frequency_mhz": {"min": 150, "max": 400},
               "scale.macs": {"min": 0.25, "max": 4, "scale": "log"}},
        "workload": {"model": "qwen2vl-7b", "setting": ["W16A16", "W4A8"], "method": "qe"},
        "scenarios": [{"stage": "prefill", "seq_len": 128}, {"stage": "decode", "context_len": 512}],
    }}, "bench")


def timed_run(points: int, workers: int) -> tuple[float, int]:
    from qesim.dse import evaluate, runner

    evaluate._EVALUATORS.clear()  # no warm caches from an earlier run in this process
    runner._POINTS.clear()
    sp = space(points)
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        df = runner.run_sweep(sp, Path(d) / "out", workers=workers, quiet=True)
        dt = time.perf_counter() - t
    return dt, len(df)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--points", type=int, default=10000)
    args = ap.parse_args(argv)
    import qesim.perf.planner as planner

    planner.plan_gemm.cache_clear()
    t1, n1 = timed_run(args.points, 0)
    t2, n2 = timed_run(args.points, 2)
    res = {
        "points": n1,
        "points_per_s": n1 / t1,
        "seconds": t1,
        "points_per_s_2_workers": n2 / t2,
        "seconds_2_workers": t2,
        "ratio_2_workers_over_inprocess": (n2 / t2) / (n1 / t1),
        "model": "qwen2vl-7b",
        "base": "flightllm-u280",
        "workloads": 4,
    }
    if args.json:
        print(json.dumps(res))
    else:
        print(f"{n1} points in-process: {t1:.2f} s = {res['points_per_s']:.0f} points/s")
        print(f"{n2} points, 2 workers: {t2:.2f} s = {res['points_per_s_2_workers']:.0f} points/s "
              f"({res['ratio_2_workers_over_inprocess']:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
