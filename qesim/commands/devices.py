"""``qesim estimate ... --devices N|auto [--parallel tp|pp|ep|tp*pp|tp2*pp4] [--micro-batches M]``.

The request (any model / VLM workload the other estimate flags describe) on several devices of the
hardware config, joined by its ``interconnect:`` section: per-device shard graphs costed by the one
cost model, collectives and the pipeline added by ``qesim.perf.multidevice``.
"""

from __future__ import annotations

import argparse
import json

from qesim.errors import InputError


def add_device_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--devices", default=None,
                   help="devices: N, or 'auto' = the fewest whose per-device footprint fits (needs an "
                        "interconnect: section in the hardware config for N > 1)")
    p.add_argument("--parallel", default=None,
                   help="tp | pp | ep | tp*pp (TP up to 8, the rest PP) | explicit degrees, e.g. tp2*pp4 "
                        "(default: tp for N, tp*pp for auto)")
    p.add_argument("--micro-batches", type=int, default=None,
                   help="pipeline micro-batches (default: one per sequence of --batch)")


def requested(args: argparse.Namespace) -> bool:
    return getattr(args, "devices", None) is not None


def run_devices(args: argparse.Namespace, workload: dict) -> int:
    from qesim.api import build_graph, load_hw
    from qesim.graph.parallel import parse_parallel
    from qesim.perf.multidevice import auto_plan, estimate_parallel

    hw = load_hw(args.hw)
    graph = build_graph(args.model, **workload)
    dev = str(args.devices).strip().lower()
    if dev == "auto":
        plan = auto_plan(graph, hw, parallel=args.parallel)
    else:
        try:
            n = int(dev)
        except ValueError:
            raise InputError(f"--devices {args.devices!r} must be a positive integer or 'auto'") from None
        plan = parse_parallel(args.parallel, n)
    if args.micro_batches is not None and args.micro_batches < 1:
        raise InputError(f"--micro-batches must be >= 1 (got {args.micro_batches})")
    mg = None
    if "batch" in workload:
        mg = lambda b: build_graph(args.model, **{**workload, "batch": b})  # noqa: E731
    r = estimate_parallel(graph, hw, plan, engine=args.engine, micro_graph=mg, micro_batches=args.micro_batches)
    first = r["per_stage"][0]
    r.update(model=graph.model, hw=hw.name, setting=graph.setting, method=graph.method, stage=graph.stage,
             batch=graph.batch, seq_len=graph.seq_len, context_len=graph.context_len,
             cycles=r["latency_s"] * hw.frequency_hz,
             bound="collective" if r["collective_s"] > r["device_s"] else first["bound"])
    if "image_tokens" in graph.meta:
        r.update(image_tokens=graph.meta["image_tokens"], text_tokens=graph.meta["text_tokens"])
    if args.json:
        print(json.dumps(r, default=float))
        return 0
    gb = 1e9
    print(f"{graph.model} {graph.stage} (batch {graph.batch}, seq {graph.seq_len}, context {graph.context_len}) "
          f"{graph.setting} method={graph.method} on {r['devices']} x {hw.name} [{args.engine}], parallel "
          f"{r['parallel']}" + (" (auto: fewest devices that fit)" if dev == "auto" else ""))
    ic = hw.interconnect
    if ic is not None:
        print(f"interconnect: {ic.topology}, {ic.link_bandwidth_gbps:g} GB/s per link per direction "
              f"x {ic.efficiency:g}, {ic.link_latency_us:g} us per hop")
    print(f"latency {r['latency_s'] * 1e3:.3f} ms  {r['tokens_per_s']:.1f} tokens/s  bound: {r['bound']}")
    print(f"  device compute (one device{' / slowest stage' if r['pp'] > 1 else ''}) {r['device_s'] * 1e3:.3f} ms")
    print(f"  collectives (all-reduce / all-gather / all-to-all, not overlapped"
          f"{'; summed over stages and micro-batches' if r['pp'] > 1 else ''}) {r['collective_s'] * 1e3:.3f} ms")
    if r["pp"] > 1:
        print(f"  pipeline: {r['pp']} stages, {r['micro_batches']} micro-batch(es): bubble "
              f"{r['pipeline_bubble_s'] * 1e3:.3f} ms ({r['bubble_fraction'] * 100:.0f} % idle), stage-to-stage "
              f"sends {r['p2p_s'] * 1e3:.3f} ms")
    need, cap = r["need_bytes_by_memory"], r["capacity_bytes_by_memory"]
    print("footprint per device (largest stage): " + ", ".join(
        f"{m} {need[m] / gb:.2f} of {cap[m] / gb:.2f} GB" for m in ("hbm", "ddr") if need[m] or m == "hbm")
        + f" (weights {r['footprint']['weights'] / gb:.2f}, KV cache {r['footprint']['kv_cache'] / gb:.3f}): "
        + ("fits" if r["fits"] else "DOES NOT FIT"))
    if r["energy_j"] is not None:
        ept = r["energy_per_token_j"]
        ept = f"{ept:.4g} J/token" if ept >= 1 else f"{ept * 1e3:.4g} mJ/token"
        print(f"energy {r['energy_j']:.4g} J per pass on {r['devices']} devices ({ept}, {r['avg_power_w']:.4g} W average; dynamic {r['dynamic_j']:.4g} J, static over the pass "
              f"{r['static_j']:.4g} J; {r['energy_note']})")
    if r["cycle_model_note"]:
        print(r["cycle_model_note"])
    return 0
