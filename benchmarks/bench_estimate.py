"""One warm point side by side with LLM-Viewer's ``analyze()``: llama2-7b W16A16 on nvidia-a100,
prefill s=1024 + decode at context 1024 (what one ``analyze(1024, 1, 16, 16, 16)`` call returns).

    python benchmarks/bench_estimate.py [--json] [--reps 200] [--rounds 3] [--peers DIR]

qesim keys (seconds for prefill + decode together; graphs built once, like LLM-Viewer's analyzer
object that holds the model; medians of --reps):
- ``qesim_cold_s``: ``estimate_graph`` right after ``qesim.perf.estimate.clear_caches()`` (lowering
  and tiling search run);
- ``qesim_warm_s`` (the headline): the same again with the lowering memoised but the result memo
  emptied before every call, so every call costs the point (timing, totals, per-op table);
- ``qesim_warm_new_hw_s``: a different HBM bandwidth every call (configs built outside the timing):
  a new point on a memoised structure, i.e. what a what-if loop pays;
- ``qesim_memo_hit_s``: the identical call again (the result memo answers);
- ``qesim_api_s``: ``qesim.estimate(...)`` for both stages (the public API: builds the graphs, the
  fp16 baseline and the Estimate object each call);
- ``sweep_points_per_s``: design points per second of the vectorised cost model over 20,000 points
  (HBM bandwidth and MAC rates per point) on the two memoised graphs, in-process;
- ``cold_estimate_s`` / ``warm_estimate_s``: ``qesim_cold_s`` / ``qesim_warm_s`` under the names the
  project's contract checker reads.
LLM-Viewer: ``lv_warm_s``, the median of --reps ``analyze()`` calls after a warm-up, in a subprocess
of this venv (``../shared/peers/llm-viewer``). Rounds alternate the two tools; ratios are taken per
round (``lv / qesim``: above 1 means qesim is faster) and the medians reported.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_sweep import ROOT, default_peers  # noqa: E402

_LV = r"""
import contextlib, io, json, os, statistics, sys, time
peers, reps = sys.argv[1], int(sys.argv[2])
sys.path.insert(0, os.path.join(peers, "llm-viewer"))
os.chdir(os.path.join(peers, "llm-viewer"))
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    from model_analyzer import ModelAnalyzer
    lv = ModelAnalyzer(os.path.join(peers, "models", "Llama-2-7b-hf"), "nvidia_A100")
    r = lv.analyze(1024, 1, 16, 16, 16)  # warm-up
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        r = lv.analyze(1024, 1, 16, 16, 16)
        ts.append(time.perf_counter() - t)
tot = r["total_results"]
print(json.dumps({"warm_s": statistics.median(ts), "prefill_s": tot["prefill"]["inference_time"],
                  "decode_s": tot["decode"]["inference_time"]}))
"""


def llmviewer(peers: Path, reps: int) -> dict:
    r = subprocess.run([sys.executable, "-c", _LV, str(peers), str(reps)], capture_output=True, text=True,
                       timeout=1800)
    if r.returncode != 0:
        raise RuntimeError(f"LLM-Viewer analyze() failed: {r.stderr.strip()[-500:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def _median(fn, reps: int) -> float:
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def qesim_round(reps: int) -> dict:
    import qesim
    from qesim.graph.builders import build_graph
    from qesim.hw.loader import load_hw
    from qesim.perf import estimate as E

    hw = load_hw("nvidia-a100")
    t = time.perf_counter()
    graphs = [build_graph("llama2-7b", stage="prefill", seq_len=1024, setting="W16A16"),
              build_graph("llama2-7b", stage="decode", context_len=1024, setting="W16A16")]
    build_s = time.perf_counter() - t

    def est(h=hw):
        return [E.estimate_graph(g, h) for g in graphs]

    E.clear_caches()
    t = time.perf_counter()
    ref = est()
    cold = time.perf_counter() - t

    def warm():
        E._RESULTS.clear()  # keep the memoised lowering, recompute the point
        return est()

    bws = [float(hw.hbm.bandwidth_gbps) * (1 + 1e-3 * (i + 1)) for i in range(reps)]
    cfgs = iter([hw.with_updates({"hbm.bandwidth_gbps": b}) for b in bws])
    res = {
        "qesim_cold_s": cold,
        "qesim_warm_s": _median(warm, reps),
        "qesim_warm_new_hw_s": _median(lambda: est(next(cfgs)), reps),
        "qesim_memo_hit_s": _median(est, reps),
        "qesim_api_s": _median(lambda: [qesim.estimate("llama2-7b", "nvidia-a100", stage="prefill", seq_len=1024),
                                        qesim.estimate("llama2-7b", "nvidia-a100", stage="decode",
                                                       context_len=1024)], max(5, reps // 10)),
        "qesim_build_graphs_s": build_s,
        "sweep_points_per_s": _points_rate(graphs, hw),
        "qesim_prefill_s": ref[0].latency_s,
        "qesim_decode_s": ref[1].latency_s,
    }
    return res


def _points_rate(graphs, hw, n: int = 20_000) -> float:
    """Design points per second of the vectorised cost model on the two graphs (warm lowering):
    ``n`` points with a different HBM bandwidth and MAC scale each, evaluated as one call per graph."""
    import numpy as np

    from qesim.perf import estimate as E
    from qesim.perf.points import HwPoints

    rng = np.random.default_rng(0)
    over = {"hbm.bandwidth_gbps": np.exp(rng.uniform(np.log(500), np.log(5000), n))}
    for mode in ("mm", "mv"):
        for i, r in enumerate(getattr(hw.mpe, mode)):
            over[f"mpe.{mode}.{i}.macs_per_cycle"] = r.macs_per_cycle * np.exp(rng.uniform(np.log(0.25), np.log(4), n))
    cgs = [E.compiled_graph(g, hw) for g in graphs]
    t = time.perf_counter()
    pts = HwPoints(hw, n, over)
    for cg in cgs:
        cg.evaluate(pts)
    return n / (time.perf_counter() - t)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--peers", type=Path, default=default_peers())
    args = ap.parse_args(argv)
    if not (args.peers / "llm-viewer").is_dir():
        print(f"bench_estimate: {args.peers / 'llm-viewer'} not found (pass --peers DIR)", file=sys.stderr)
        return 2
    sys.path.insert(0, str(ROOT))
    rounds = []
    for _ in range(args.rounds):
        lv = llmviewer(args.peers, args.reps)
        q = qesim_round(args.reps)
        rounds.append({"lv": lv, "qesim": q, "ratio_warm": lv["warm_s"] / q["qesim_warm_s"],
                       "ratio_warm_new_hw": lv["warm_s"] / q["qesim_warm_new_hw_s"],
                       "ratio_api": lv["warm_s"] / q["qesim_api_s"]})
    med = lambda k: statistics.median(r["qesim"][k] for r in rounds)  # noqa: E731
    res = {k: med(k) for k in rounds[0]["qesim"]}
    res.update({
        # the contract's names: one estimate (prefill + decode) cold and warm, seconds
        "cold_estimate_s": res["qesim_cold_s"], "warm_estimate_s": res["qesim_warm_s"],
        "lv_warm_s": statistics.median(r["lv"]["warm_s"] for r in rounds),
        "lv_prefill_s": rounds[0]["lv"]["prefill_s"], "lv_decode_s": rounds[0]["lv"]["decode_s"],
        "ratio_lv_over_qesim_warm": statistics.median(r["ratio_warm"] for r in rounds),
        "ratio_lv_over_qesim_warm_new_hw": statistics.median(r["ratio_warm_new_hw"] for r in rounds),
        "ratio_lv_over_qesim_api": statistics.median(r["ratio_api"] for r in rounds),
        "what": "llama2-7b W16A16 on nvidia-a100: prefill s=1024 + decode at context 1024",
        "rounds": rounds, "loadavg_1m_at_end": os.getloadavg()[0],
    })
    if args.json:
        print(json.dumps(res))
    else:
        print(f"{res['what']}; {args.rounds} alternating rounds, medians of {args.reps} calls:")
        print(f"  LLM-Viewer analyze() warm      {res['lv_warm_s'] * 1e3:9.3f} ms")
        print(f"  qesim estimate_graph warm      {res['qesim_warm_s'] * 1e3:9.3f} ms  "
              f"(LLM-Viewer / qesim = {res['ratio_lv_over_qesim_warm']:.2f})")
        print(f"  qesim, new bandwidth per call  {res['qesim_warm_new_hw_s'] * 1e3:9.3f} ms  "
              f"({res['ratio_lv_over_qesim_warm_new_hw']:.2f})")
        print(f"  qesim.estimate() (public API)  {res['qesim_api_s'] * 1e3:9.3f} ms  ({res['ratio_lv_over_qesim_api']:.2f})")
        print(f"  qesim memo hit                 {res['qesim_memo_hit_s'] * 1e3:9.3f} ms;  cold "
              f"{res['qesim_cold_s'] * 1e3:.1f} ms")
        print(f"  latency prefill/decode: qesim {res['qesim_prefill_s']:.4f}/{res['qesim_decode_s']:.5f} s, "
              f"LLM-Viewer {res['lv_prefill_s']:.4f}/{res['lv_decode_s']:.5f} s")
        print(f"  (load average at the end {res['loadavg_1m_at_end']:.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
