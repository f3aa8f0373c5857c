#!/usr/bin/env python
"""Benchmark of the cycle (simpy) model: qwen2vl-7b prefill (s = 128) + 16 decode steps.

    python benchmarks/bench_cycle.py [--json] [--hw flightllm-u280] [--setting W4A8 --method qe]
                                     [--max-sim-steps 256]

Every pass is planned (``plan_graph``) and then simulated event by event (no result caching);
decode step j runs over a KV cache of 128 + j tokens. Reports wall-clock seconds (planning and
simulation separately), simpy events and events per second of simulation, and the simulated
latency; ``cpu_s`` (process CPU time) is the load-independent figure when the machine is busy.
Target: <= 10 s wall for the whole run. Exit status 0 on success.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="qwen2vl-7b")
    ap.add_argument("--hw", default="flightllm-u280")
    ap.add_argument("--setting", default="W4A8")
    ap.add_argument("--method", default="qe")
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--decode-steps", type=int, default=16)
    ap.add_argument("--max-sim-steps", type=int, default=256, help="macro-step cap per op (0 = every tile)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    import simpy

    from qesim.graph.builders import build_graph
    from qesim.hw.loader import load_hw
    from qesim.perf.model import plan_graph
    from qesim.sim.engine import simulate_schedule

    hw = load_hw(args.hw)
    steps = args.max_sim_steps or None
    t_start = time.perf_counter()
    cpu_start = time.process_time()
    plan_s = sim_s = 0.0
    events = 0
    cycles = {"prefill": 0.0, "decode": 0.0}
    passes = [("prefill", args.seq_len, 0)] + [("decode", 1, args.seq_len + j) for j in range(args.decode_steps)]
    prefill_wall = 0.0
    for stage, seq, ctx in passes:
        t0 = time.perf_counter()
        g = build_graph(args.model, stage=stage, seq_len=seq, context_len=ctx, setting=args.setting,
                        method=args.method)
        gs = plan_graph(g, hw)
        t1 = time.perf_counter()
        res = simulate_schedule(gs, hw, max_sim_steps=steps)
        t2 = time.perf_counter()
        plan_s += t1 - t0
        sim_s += t2 - t1
        events += res.events
        cycles[stage] += res.cycles
        if stage == "prefill":
            prefill_wall = t2 - t0
    wall = time.perf_counter() - t_start
    cpu = time.process_time() - cpu_start
    out = {
        "benchmark": "cycle_model",
        "model": args.model, "hw": args.hw, "setting": args.setting, "method": args.method,
        "prefill_tokens": args.seq_len, "decode_steps": args.decode_steps, "max_sim_steps": steps,
        "wall_s": wall, "wall_time_s": wall, "prefill_wall_s": prefill_wall, "decode_wall_s": wall - prefill_wall,
        "cpu_s": cpu, "plan_s": plan_s, "simulate_s": sim_s,
        "events": events, "events_per_s": events / sim_s if sim_s > 0 else None,
        "events_per_cpu_s": events / cpu if cpu > 0 else None,
        "simulated_cycles": cycles["prefill"] + cycles["decode"],
        "simulated_ttft_s": cycles["prefill"] / hw.frequency_hz,
        "simulated_decode_s": cycles["decode"] / hw.frequency_hz,
        "target_wall_s": 10.0, "within_target": wall <= 10.0,
        "python": platform.python_version(), "simpy": simpy.__version__,
    }
    if args.json:
        print(json.dumps(out))
    else:
        print(f"{args.model} {args.setting}/{args.method} on {args.hw}: prefill {args.seq_len} + {args.decode_steps} "
              f"decode steps in {wall:.2f} s wall, {cpu:.2f} s CPU ({events:,} events, {out['events_per_s']:,.0f} events/s of "
              f"simulation; planning {plan_s:.2f} s); simulated TTFT {out['simulated_ttft_s'] * 1e3:.1f} ms, "
              f"decode {out['simulated_decode_s'] * 1e3:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
