"""The tiling planner against an exhaustive search, and its speed.

    python benchmarks/bench_planner.py [--json] [--points 100000] [--quick]

Grid: configs qe-paper-npu and flightllm-u280, settings W16A16 and W4A8, M in {1, 16, 128, 512,
2048} tokens, (K, N) of the q/k/v/o, gate/up and down linears of llama2-7b and qwen2vl-7b (prefill
policy; bytes per element from ``qesim.perf.model.linear_terms`` for the LinearOp that
``single_linear_graph`` builds, the problem as ``qesim.perf.ops.linear`` poses it).

Exhaustive reference: every tiling that fits, both loop orders, scored by the planner's own cost
function (``qesim.perf.planner.evaluate``) and objective (least traffic, then fewest cycles, then
fewest steps, least padding, first). Affordable and still exact by the count argument: within one
tile count of a dimension a smaller tile with no more padding has the same steps and traffic and
needs less buffer, so only the tiles of ``_Dim.opt`` (every count, each with its running-minimum-
padding tiles) are scored: the full cartesian product of those per dimension, in chunks. The
planner's own decomposition (classes, free counts, bounds) is not used by the reference.

Reported per GEMM: traffic gap and cycle gap (%) of ``plan_gemm`` against the reference; the same
gaps for the pre-issue-10 candidate grid (``legacy_*``, the thinned grid kept here only to show
the before numbers); the planner's time for one cold point (n = 1, every cache cleared) and per
point at n = --points with per-point buffers drawn uniformly in [1/4, 4] x the config's.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

SHAPES = {  # (K, N) of the linears of one block
    "llama2-7b": lambda s: {"qkvo": (s.hidden, s.heads * s.head_dim), "gate/up": (s.hidden, s.intermediate),
                            "down": (s.intermediate, s.hidden)},
    "qwen2vl-7b": lambda s: {"q/o": (s.hidden, s.heads * s.head_dim), "k/v": (s.hidden, s.kv_heads * s.head_dim),
                             "gate/up": (s.hidden, s.intermediate), "down": (s.intermediate, s.hidden)},
}
CONFIGS = ("qe-paper-npu", "flightllm-u280")
SETTINGS = ("W16A16", "W4A8")
TOKENS = (1, 16, 128, 512, 2048)
# issue 10's four cases (config, setting, M, K, N)
ISSUE = [("qe-paper-npu", "W4A8", 2048, 18944, 3584), ("flightllm-u280", "W4A8", 2048, 11008, 4096),
         ("flightllm-u280", "W4A8", 2048, 18944, 3584), ("qe-paper-npu", "W16A16", 2048, 18944, 3584)]


def problem(hw, K: int, N: int, M: int, setting: str, stage: str = "prefill"):
    """The GemmProblem the cost model plans for this linear on ``hw`` (the GemmSpec and per-point
    numbers that ``qesim.perf.ops.linear.LoweredLinear.plan`` hands to ``plan_points``)."""
    from qesim.graph.builders import single_linear_graph
    from qesim.perf.ops import linear
    from qesim.perf.planner import GemmProblem, GemmSpec
    from qesim.perf.points import HwPoints

    op = single_linear_graph(K, N, tokens=M, setting=setting, stage=stage).ops[0]
    lin = linear.LoweredLinear(op, hw, stage)
    seen = {}
    real = linear.plan_points

    def capture(spec, **kw):
        seen.update(spec=spec, kw=kw)
        return real(spec, **kw)

    linear.plan_points = capture
    try:
        lin.plan(HwPoints.of(hw))
    finally:
        linear.plan_points = real
    spec = seen["spec"]
    pt = {k: float(np.asarray(v, dtype=float).reshape(-1)[0]) for k, v in seen["kw"].items()}
    return GemmProblem(**{f: getattr(spec, f) for f in GemmSpec.__dataclass_fields__}, **pt)


def _choose(cands):
    """The planner's objective over scored candidates (cyc, bytes, steps, padded, order, tm, tk, tn)."""
    cyc, byt, steps, padded, order, tm, tk, tn = cands
    el = byt <= byt.min() * (1 + 1e-9)
    el &= cyc <= np.where(el, cyc, np.inf).min() * (1 + 1e-12)
    for key in (steps, padded, order, tm, tk, tn):
        el &= key == np.where(el, key, np.inf).min()
    i = int(np.flatnonzero(el)[0])
    return float(cyc[i]), float(byt[i]), (int(order[i]), int(tm[i]), int(tk[i]), int(tn[i]))


def _score(prob, cm, ck, cn, chunk=1 << 21):
    """Best fitting tiling over cm x ck x cn, both orders, by the planner's objective (None if none
    fits). Traffic depends only on (order, nm, nn, nk = 1 or not), and the smallest such tk fits
    best, so the least traffic is found on cm x cn first; then every tiling of the least-traffic
    (tm, tn, order) pairs is scored with ``evaluate``."""
    from qesim.perf import planner as P

    spec = prob.spec()
    TM, TN = (a.ravel() for a in np.meshgrid(cm, cn, indexing="ij"))
    nm, nn = -(-prob.M // TM), -(-prob.N // TN)
    kinds = [(int(ck.max()), ck[ck == prob.K])] if prob.K in ck else []
    if prob.K > 1 and (ck < prob.K).any():
        kinds.append((int(ck[ck < prob.K].min()), ck[ck < prob.K]))
    cls = []
    for tk0, tks in kinds:
        for o in (0, 1):
            fits = P._fits(spec, TM, tk0, TN, prob.w_buf, prob.a_buf, prob.o_buf)
            w, x = P._traffic_bytes(spec, *P._reads(o, nm, -(-prob.K // tk0), nn))
            cls.append((o, tks, fits, P._total_bytes(spec, w, x)))
    least = min((np.where(f, b, np.inf).min() for _, _, f, b in cls), default=np.inf)
    if not np.isfinite(least):
        return None
    cands = []
    for o, tks, fits, byt in cls:
        sel = np.flatnonzero(fits & (byt <= least * (1 + 1e-9)))
        step = max(1, chunk // len(tks))
        for lo in range(0, len(sel), step):
            s = sel[lo:lo + step]
            tm, tk = np.repeat(TM[s], len(tks)), np.tile(tks, len(s))
            tn = np.repeat(TN[s], len(tks))
            cyc, b, steps, f = P.evaluate(prob, tm, tk, tn, P.ORDERS[o])
            f = np.flatnonzero(f)
            padded = P._pad(prob.M, tm, prob.pm) * P._pad(prob.K, tk, prob.pk) * P._pad(prob.N, tn, prob.pn)
            cands.append([np.broadcast_to(v, tm.shape)[f] for v in (cyc, b, np.asarray(steps, float), padded,
                                                                    np.full(tm.shape, o), tm, tk, tn)])
    return _choose([np.concatenate(c) for c in zip(*cands)])


def reference(prob):
    """Exhaustive optimum (module docstring): every tile of every count per dimension."""
    from qesim.perf.planner import _dim

    return _score(prob, *(_dim(d, p).union for d, p in ((prob.M, prob.pm), (prob.K, prob.pk), (prob.N, prob.pn))))


def legacy_candidates(d: int, p: int, cap: int = 40) -> np.ndarray:
    """The candidate grid the planner searched before issue 10 (thinned above 64 tile counts)."""
    if d <= 64:
        return np.arange(1, d + 1, dtype=np.int64)
    vals = {d}
    j = 1
    while True:
        v = -(-d // j)
        vals.add(v)
        if v <= 1:
            break
        j = max(j + 1, -(-d // (v - 1)))
    vals.update(range(p, d + 1, p))
    arr = np.array(sorted(vals), dtype=np.int64)
    if len(arr) > cap:
        idx = np.unique(np.round(np.geomspace(1, len(arr), cap)).astype(np.int64) - 1)
        keep = set(arr[idx].tolist())
        keep.update(v for v in arr.tolist() if v % p == 0 and (v & (v - 1)) == 0)
        keep.update({d, -(-d // 2), -(-d // 4)})
        arr = np.array(sorted(keep), dtype=np.int64)
    return arr


def _clear_caches():
    from qesim.perf import planner as P

    for f in (P.plan_gemm, P._tables, P._dim, P._free_lists):
        f.cache_clear()


def _numpy_ns_per_element() -> float:
    """Machine speed at run time: ns per element of ``a * 1.5 + 2.0`` on 2M floats (best of 5), to
    read the timings on a loaded or a different machine."""
    a = np.random.default_rng(0).random(2_000_000)
    best = np.inf
    for _ in range(5):
        t = time.perf_counter()
        a * 1.5 + 2.0
        best = min(best, time.perf_counter() - t)
    return best / len(a) * 1e9


def _gap(a: float, b: float) -> float:
    return 100.0 * (a - b) / b if b else 0.0


def run(points: int, quick: bool) -> dict:
    from qesim.graph.presets import get_spec
    from qesim.hw.loader import load_hw
    from qesim.perf import planner as P

    rows = []
    grid = []
    for model, fn in SHAPES.items():
        for lin, (K, N) in fn(get_spec(model)).items():
            grid.append((model, lin, K, N))
    seen = set()
    rng = np.random.default_rng(0)

    def measure(cfg, hw, setting, M, K, N, model, lin, stage):
        prob = problem(hw, K, N, M, setting, stage)
        _clear_caches()
        t = time.perf_counter()
        plan = P.plan_gemm(prob)
        cold = time.perf_counter() - t
        cyc, byt, _, _ = P.plan_cost(prob, plan)
        ref = reference(prob)
        leg = _score(prob, legacy_candidates(M, prob.pm), legacy_candidates(K, prob.pk),
                     legacy_candidates(N, prob.pn))
        kw = dict(prob.point())
        for b in ("w_buf", "a_buf", "o_buf"):
            kw[b] = kw[b] * rng.uniform(0.25, 4.0, points)
        t = time.perf_counter()
        P.plan_points(prob.spec(), **kw)
        per_point = (time.perf_counter() - t) / points
        r = dict(config=cfg, setting=setting, stage=stage, M=M, K=K, N=N, model=model, linear=lin,
                 plan=plan.describe(), fits=P.tiling_fits(prob, plan), x_offchip=prob.x_offchip,
                 issue_case=(cfg, setting, M, K, N) in ISSUE and stage == "prefill",
                 n1_cold_ms=cold * 1e3, per_point_us=per_point * 1e6)
        if ref is None:
            r.update(ref_plan=None, traffic_gap_pct=0.0, cycle_gap_pct=0.0)
        else:
            o, a, b, c = ref[2]
            r.update(ref_plan=f"{prob.mode}:{a}x{b}x{c}/{P.ORDERS[o]}",
                     traffic_gap_pct=_gap(byt, ref[1]), cycle_gap_pct=_gap(cyc, ref[0]),
                     legacy_traffic_gap_pct=_gap(leg[1], ref[1]) if leg else None,
                     legacy_cycle_gap_pct=_gap(leg[0], ref[0]) if leg else None)
        return r

    for cfg in CONFIGS:
        hw = load_hw(cfg)
        for setting in SETTINGS:
            for M in (TOKENS if not quick else (1, 2048)):
                for model, lin, K, N in grid:
                    if (cfg, setting, M, K, N) in seen:
                        continue
                    seen.add((cfg, setting, M, K, N))
                    rows.append(measure(cfg, hw, setting, M, K, N, model, lin, "prefill"))
    # also: FlightLLM decode keeps activations on chip (x not off-chip: two free tile counts)
    onchip = []
    hw = load_hw("flightllm-u280")
    for setting in SETTINGS:
        for model, lin, K, N in grid[:3]:
            onchip.append(measure("flightllm-u280", hw, setting, 1, K, N, model, lin, "decode"))
    tg = [r["traffic_gap_pct"] for r in rows]
    cg = [r["cycle_gap_pct"] for r in rows]
    lg = [r.get("legacy_traffic_gap_pct") or 0.0 for r in rows]
    return dict(
        command="python benchmarks/bench_planner.py" + (" --quick" if quick else "") + f" --points {points}",
        numpy_ns_per_element=_numpy_ns_per_element(),
        load_average_1min=os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        gemms=len(rows), points_per_gemm=points,
        max_traffic_gap_pct=max(tg), max_cycle_gap_pct=max(cg), within_1pct=sum(1 for a, b in zip(tg, cg)
                                                                                 if a <= 1 and b <= 1),
        optimal=sum(1 for a, b in zip(tg, cg) if a <= 1e-9 and b <= 1e-9),
        legacy_max_traffic_gap_pct=max(lg), legacy_worse_gemms=sum(1 for v in lg if v > 1e-9),
        n1_cold_ms_median=float(np.median([r["n1_cold_ms"] for r in rows])),
        n1_cold_ms_max=max(r["n1_cold_ms"] for r in rows),
        per_point_us_median=float(np.median([r["per_point_us"] for r in rows])),
        per_point_us_max=max(r["per_point_us"] for r in rows),
        issue_cases=[r for r in rows if r["issue_case"]], rows=rows,
        onchip_decode=dict(gemms=len(onchip), max_traffic_gap_pct=max(r["traffic_gap_pct"] for r in onchip),
                           max_cycle_gap_pct=max(r["cycle_gap_pct"] for r in onchip),
                           per_point_us_median=float(np.median([r["per_point_us"] for r in onchip])),
                           per_point_us_max=max(r["per_point_us"] for r in onchip), rows=onchip))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--points", type=int, default=100_000, help="design points per GEMM for the per-point time")
    ap.add_argument("--quick", action="store_true", help="M in {1, 2048} only")
    args = ap.parse_args(argv)
    if args.points < 1:
        print("bench_planner: --points must be >= 1", file=sys.stderr)
        return 2
    res = run(args.points, args.quick)
    if args.json:
        print(json.dumps(res))
        return 0
    print(f"{'config':15} {'set':6} {'M':>5} {'K':>6} {'N':>6}  {'plan':28} {'reference':28} {'traffic%':>8} "
          f"{'cycles%':>8} {'legacy%':>8} {'n1 ms':>7} {'us/pt':>6}")
    for r in res["rows"] + res["onchip_decode"]["rows"]:
        lg = r.get("legacy_traffic_gap_pct")
        print(f"{r['config']:15} {r['setting']:6} {r['M']:5d} {r['K']:6d} {r['N']:6d}  {r['plan']:28} "
              f"{str(r['ref_plan']):28} {r['traffic_gap_pct']:8.3f} {r['cycle_gap_pct']:8.3f} "
              f"{(lg if lg is not None else float('nan')):8.2f} {r['n1_cold_ms']:7.2f} {r['per_point_us']:6.2f}"
              + ("  <- issue 10" if r["issue_case"] else "") + ("  (decode, x on chip)" if not r["x_offchip"] else ""))
    print(f"{res['gemms']} GEMMs: max traffic gap {res['max_traffic_gap_pct']:.3g} %, max cycle gap "
          f"{res['max_cycle_gap_pct']:.3g} %, {res['optimal']} optimal, {res['within_1pct']} within 1 % "
          f"(legacy grid: max {res['legacy_max_traffic_gap_pct']:.3g} %, {res['legacy_worse_gemms']} worse); "
          f"n = 1 cold {res['n1_cold_ms_median']:.2f} ms median ({res['n1_cold_ms_max']:.2f} max); "
          f"{res['per_point_us_median']:.2f} us/point median at n = {res['points_per_gemm']}")
    print(f"machine: {res['numpy_ns_per_element']:.2f} ns per numpy element op, load average "
          f"{res['load_average_1min']}")
    oc = res["onchip_decode"]
    print(f"decode with x on chip ({oc['gemms']} GEMMs): max traffic gap {oc['max_traffic_gap_pct']:.3g} %, "
          f"max cycle gap {oc['max_cycle_gap_pct']:.3g} %, {oc['per_point_us_median']:.2f} us/point median "
          f"({oc['per_point_us_max']:.2f} max)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
