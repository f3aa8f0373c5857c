"""Agreement of the analytical and the cycle (simpy) engine, per op and end to end.

Both engines read the same :class:`~qesim.perf.schedule.GraphSchedule` (one ``plan_graph``
call), so any difference comes from timing alone:

- the closed-form pipeline ``max(M, C) + min(M, C)/n`` assumes a fill/drain of one average
  step of the faster resource; the simulation fills with the first load and drains with the last
  compute and store, and loads and stores of one memory queue on its channel (contention);
- a single-step op whose load and store use different memories (the embedding gather, DDR ->
  HBM on the FlightLLM U280 config) is overlapped by the formula (it takes the busiest memory)
  but serialised by the simulation (the row must arrive before it can be written back);
- the cycle model replays long ops as at most ``max_sim_steps`` macro-steps, which over-states
  fill/drain by at most ``1/max_sim_steps`` of the op (see :mod:`qesim.sim.engine`).

Units: cycles; ``diff_pct`` = 100 * (cycle - analytical) / analytical.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Optional

import pandas as pd

from qesim.errors import InputError
from qesim.graph.ir import LayerGraph
from qesim.hw.config import HardwareConfig
from qesim.perf.model import estimate_schedule, plan_graph
from qesim.sim.engine import DEFAULT_MAX_SIM_STEPS, estimate_from_sim, simulate_schedule

TOLERANCE_PCT = 3.0


def _pct(a: float, b: float) -> float:
    if a == 0:
        return 0.0 if b == 0 else float("inf")
    return 100.0 * (b - a) / a


CROSS_MEMORY = "load->store dependency across memories"


def why(row) -> str:
    """A short reason for a per-op difference beyond tolerance (from the op's schedule)."""
    if (row.steps == 1 or not row.double_buffered) and row.hbm_bytes > 0 and row.ddr_bytes > 0:
        return (f"{CROSS_MEMORY}: the formula takes the busiest memory, as if one memory's store "
                "overlapped the other's load of the same step; the simulation loads, computes, then stores"
                + (" (single-step embedding gather DDR->HBM)" if row.kind == "embedding" else ""))
    if row.steps <= 4:
        return ("few steps: the formula's fill/drain min(M,C)/n is an average step; the simulation fills with "
                "the first load and drains with the last compute + store, queued on the shared channel")
    return "load/store contention on the shared memory channel at a balanced M ~ C pipeline"


@dataclass
class EngineComparison:
    """Per-op and total cycles of both engines for one graph on one config."""

    graph: str
    hw: str
    ops: pd.DataFrame  # name, kind, repeat, steps, analytical, cycle, diff_pct, bound_a, bound_c, ...
    analytical_cycles: float
    cycle_cycles: float
    wall_s: float
    events: int

    @property
    def diff_pct(self) -> float:
        return _pct(self.analytical_cycles, self.cycle_cycles)

    @property
    def worst(self) -> tuple[str, float]:
        """(op name, diff %) of the op with the largest |diff|."""
        if self.ops.empty:
            return ("", 0.0)
        i = self.ops["diff_pct"].abs().idxmax()
        return str(self.ops.at[i, "name"]), float(self.ops.at[i, "diff_pct"])

    def outliers(self, tol: float = TOLERANCE_PCT) -> pd.DataFrame:
        return self.ops[self.ops["diff_pct"].abs() > tol]


def compare_engines(graph: LayerGraph, hw: HardwareConfig, *,
                    max_sim_steps: Optional[int] = DEFAULT_MAX_SIM_STEPS) -> EngineComparison:
    """Time ``graph`` on ``hw`` with both engines from one shared schedule."""
    gs = plan_graph(graph, hw)
    ana = estimate_schedule(gs, hw)
    res = simulate_schedule(gs, hw, max_sim_steps=max_sim_steps)
    cyc = estimate_from_sim(res, hw)
    a, c = ana.ops, cyc.ops
    df = pd.DataFrame({
        "name": a["name"], "kind": a["kind"], "repeat": a["repeat"], "steps": a["steps"],
        "analytical": a["cycles"], "cycle": c["cycles"],
        "diff_pct": [_pct(x, y) for x, y in zip(a["cycles"], c["cycles"])],
        "bound_analytical": a["bound"], "bound_cycle": c["bound"],
        "hbm_bytes": a["hbm_bytes"], "ddr_bytes": a["ddr_bytes"],
        "share_pct": 100.0 * a["total_cycles"] / (ana.cycles or 1.0),
        "double_buffered": [o.double_buffered for o in gs.ops],
    })
    return EngineComparison(graph=graph.name, hw=hw.name, ops=df, analytical_cycles=ana.cycles,
                            cycle_cycles=cyc.cycles, wall_s=res.wall_s, events=res.events)


# ----------------------------------------------------------------------------- the full report
SETTINGS = ("W16A16", "W4A8", "W3A16")
STAGES = (("prefill", 128, 0), ("decode", 1, 512))
HW_NAMES = ("flightllm-u280", "flightllm-vhk158", "qe-paper-npu")


def _build(build_graph, model, stage, seq, ctx, setting, meth):
    return build_graph(model, stage=stage, seq_len=seq if stage == "prefill" else 128, context_len=ctx,
                       setting=setting, method=meth)


def sweep(models: Iterable[str], hw_names: Iterable[str] = HW_NAMES, settings: Iterable[str] = SETTINGS,
          method: str = "qe", progress=None) -> tuple[pd.DataFrame, pd.DataFrame, list]:
    """Compare the engines on every (model, stage, setting, hw).

    Returns (cases, outlier ops, skipped) -- one row per case; one row per op beyond the
    tolerance; (model, stage, reason) for graphs that cannot be built."""
    from qesim.graph.builders import build_graph
    from qesim.hw.loader import load_hw

    hws = {n: load_hw(n) for n in hw_names}
    rows, outs, skipped = [], [], []
    for model in models:
        for stage, seq, ctx in STAGES:
            for setting in settings:
                meth = "none" if setting == "W16A16" else method
                try:
                    g = _build(build_graph, model, stage, seq, ctx, setting, meth)
                except InputError as e:
                    if meth == "none" or "mixture-of-experts" not in str(e):
                        if not any(m == model and s_ == stage for m, s_, _ in skipped):
                            skipped.append((model, stage, str(e)))
                        continue
                    meth = "rtn"  # adapter methods are not modelled on MoE experts: plain quantization
                    g = _build(build_graph, model, stage, seq, ctx, setting, meth)
                for hn, hw in hws.items():
                    cmp = compare_engines(g, hw)
                    if progress is not None:
                        progress.update()
                    wn, wd = cmp.worst
                    known = cmp.ops.apply(lambda r: why(r).startswith(CROSS_MEMORY), axis=1)
                    rest = cmp.ops.loc[~known, "diff_pct"].abs()
                    rows.append(dict(model=model, stage=stage, setting=setting, method=meth, hw=hn,
                                     analytical_cycles=cmp.analytical_cycles, cycle_cycles=cmp.cycle_cycles,
                                     diff_pct=cmp.diff_pct, worst_op=wn, worst_op_diff_pct=wd,
                                     ops_beyond_tol=len(cmp.outliers()),
                                     worst_other_op_abs_diff_pct=float(rest.max()) if len(rest) else 0.0, events=cmp.events, wall_s=cmp.wall_s))
                    for r in cmp.outliers().itertuples():
                        outs.append(dict(model=model, stage=stage, setting=setting, hw=hn, op=r.name, kind=r.kind,
                                         steps=int(r.steps), analytical=r.analytical, cycle=r.cycle,
                                         diff_pct=r.diff_pct, share_pct=r.share_pct, why=why(r)))
    # the outlier table keeps its columns when there are no outliers (the usual case)
    out_cols = ["model", "stage", "setting", "hw", "op", "kind", "steps", "analytical", "cycle", "diff_pct",
                "share_pct", "why"]
    return pd.DataFrame(rows), pd.DataFrame(outs, columns=out_cols), skipped


#: config variants of flightllm-u280 (dotted-path updates) for the what-if section
VARIANTS = {
    "single-buffered": {"policy.double_buffering": False},
    "activations + KV cache in DDR": {"placement.activations": "ddr", "placement.kv_cache": "ddr"},
    "activations in DDR, single-buffered": {"placement.activations": "ddr", "policy.double_buffering": False},
    "decode activations off-chip": {"policy.decode.activations_offchip": True},
    "64 KiB buffers": {"buffers.weight_bytes": 65536, "buffers.act_bytes": 65536, "buffers.out_bytes": 65536},
    "SFU serial to MPE": {"policy.sfu_overlaps_mpe": False},
    "SFU ops not fused": {"policy.sfu_fusion": False},
    "fused SFU serial, activations in DDR": {"policy.sfu_overlaps_mpe": False, "placement.activations": "ddr"},
}


def variant_rows(model: str = "llama2-7b", base: str = "flightllm-u280", setting: str = "W4A8",
                 method: str = "qe") -> pd.DataFrame:
    """Engine agreement on config variants (placement, buffering, buffer sizes) of ``base``."""
    from qesim.graph.builders import build_graph
    from qesim.hw.loader import load_hw

    hw0 = load_hw(base)
    rows = []
    for name, upd in VARIANTS.items():
        hw = hw0.with_updates(upd)
        for stage, seq, ctx in STAGES:
            g = _build(build_graph, model, stage, seq, ctx, setting, method)
            c = compare_engines(g, hw)
            rows.append(dict(variant=name, stage=stage, analytical_cycles=c.analytical_cycles,
                             cycle_cycles=c.cycle_cycles, diff_pct=c.diff_pct, worst_op=c.worst[0],
                             worst_op_diff_pct=c.worst[1], ops_beyond_tol=", ".join(c.outliers()["name"])))
    return pd.DataFrame(rows)


def exact_replay_check(model: str = "llama2-7b", hw_name: str = "flightllm-u280", setting: str = "W4A8",
                       method: str = "qe") -> dict:
    """Decode at context 512 compared with macro-steps (default cap) and with every tile replayed.

    Shows that the residual per-op differences of the default run come from step coarsening."""
    from qesim.graph.builders import build_graph
    from qesim.hw.loader import load_hw

    hw = load_hw(hw_name)
    g = build_graph(model, stage="decode", context_len=512, setting=setting, method=method)
    out = {"graph": g.name, "hw": hw_name}
    for label, cap in (("coarse", DEFAULT_MAX_SIM_STEPS), ("exact", None)):
        c = compare_engines(g, hw, max_sim_steps=cap)
        out[label] = dict(diff_pct=c.diff_pct, worst_op=c.worst[0], worst_op_diff_pct=c.worst[1],
                          events=c.events, wall_s=c.wall_s)
    return out


def render_markdown(cases: pd.DataFrame, outs: pd.DataFrame, skipped: list, exact: Optional[dict] = None,
                    variants: Optional[pd.DataFrame] = None, command: str = "qesim compare-engines --all --out reports") -> str:
    """The ``reports/engines.md`` text (``exact``: :func:`exact_replay_check`; ``variants``:
    :func:`variant_rows`). No wall times (they go to ``engines_timing.csv``), so reruns are
    byte-identical."""
    L = ["# Analytical vs cycle (simpy) engine", "",
         f"Generated by `{command}`; simulation wall times are in `engines_timing.csv`. Both engines time the **same** "
         "schedule (`plan_graph`: tiles, bytes per memory, MPE/SFU cycles, double buffering); "
         "the analytical engine with `T = max(M, C) + min(M, C)/n` per op, the cycle engine by "
         "replaying every step through simpy resources (HBM/DDR FIFO channels shared by loads and "
         "stores, MPE, SFU, 2-slot input/output buffers). SFU ops fused into their MPE op "
         "(`policy.sfu_fusion`, `qesim/perf/fusion.py`) are part of that op's schedule in both engines. "
         "Cycle-model timelines (`qesim compare-engines --model llama2-7b --hw flightllm-u280 --setting "
         "W8A8 --stage decode --context 512 --trace reports/`, and `--stage prefill` for the prefill "
         "Gantt): `reports/trace_*.json` "
         "(Chrome trace; open in https://ui.perfetto.dev) and `reports/trace_*.png` (Gantt, first layer). "
         "Prefill: s = 128, context 0. Decode: one "
         "token at context 512. Quantized settings use `--method qe` (W16A16: none; MoE presets: `rtn`, "
         "because adapter methods are not modelled on MoE experts). Ops run in "
         "order with no cross-op prefetch in both engines. Long ops are replayed as at most 256 "
         "macro-steps (fill/drain over-stated by at most 1/256 of the op).", "",
         f"diff = (cycle - analytical) / analytical. Tolerance {TOLERANCE_PCT:g}%.", ""]
    if not cases.empty:
        n = len(cases)
        e2e = cases["diff_pct"].abs()
        L += ["## Summary", "",
              f"- cases: {n} (models x stages x settings x configs)",
              f"- end to end: max |diff| {e2e.max():.3f}%, mean {e2e.mean():.3f}%; "
              f"cases beyond {TOLERANCE_PCT:g}%: {(e2e > TOLERANCE_PCT).sum()}",
              f"- per op: {len(outs)} op rows beyond {TOLERANCE_PCT:g}% in {(cases['ops_beyond_tol'] > 0).sum()} cases"
              + (f" (their largest share of the pass: {outs['share_pct'].max():.4f}% of the analytical cycles)"
                 if len(outs) else ""),
              f"- per op, leaving out the load->store dependency across memories (point 2 below: the "
              f"single-step DDR->HBM embedding gathers): max |diff| "
              f"{cases['worst_other_op_abs_diff_pct'].max():.3f}%",
              f"- simulation: {cases['events'].sum():,} simpy events", ""]
    if len(outs):
        L += ["## Ops beyond tolerance, and why", "",
              "Grouped by op and cause; every row is listed in `engines_outliers.csv`.", "",
              "| op | hw | stage | cases | steps | diff % (min..max) | max share of pass % | why |",
              "|---|---|---|---|---|---|---|---|"]
        for (opn, hw, stage, why_), grp in outs.groupby(["op", "hw", "stage", "why"], sort=True):
            L.append(f"| {opn} | {hw} | {stage} | {len(grp)} | {grp['steps'].min()}..{grp['steps'].max()} | "
                     f"{grp['diff_pct'].min():+.2f}..{grp['diff_pct'].max():+.2f} | {grp['share_pct'].max():.4f} | "
                     f"{why_} |")
        L.append("")
    L += ["## Where the engines differ", "",
          "1. **Fill/drain.** The formula charges one average step of the faster resource "
          "(`min(M,C)/n`); the simulation charges the first load (fill) and the last compute + store "
          "(drain), with stores queued behind loads on the same channel. For ops with many steps the "
          "difference vanishes; it is visible only on few-step ops near M ~ C.",
          "2. **Load -> store dependency across memories.** When an op moves bytes on two memories in a "
          "step that cannot pipeline (one step, or no double buffering), the formula's memory time is the "
          "busier memory's, as if one memory's store overlapped the other's load; the simulation must load "
          "and compute a step before storing it. The U280 embedding gather (DDR -> HBM) now runs in per-token "
          "chunks (up to 64 steps), so in prefill the engines agree on it (+0.13%); a one-token gather is "
          "still one step, which shows (+8.4% on that op) only where decode activations go off-chip. In the "
          "what-if variant 'activations in DDR, single-buffered' it also affects linears (up to +0.8% on "
          "llama2-7b below; +4.3% on smollm2-135m's one-step gate_proj, checked in tests/test_sim_compare.py).",
          "3. **Macro-steps.** Ops with more than 256 tile steps (decode GEMVs: up to ~10^5) are "
          "replayed as 256 aggregated steps; this over-states the pipeline fill by at most "
          "`min(M,C)*(1/256 - 1/n)`, i.e. < 0.4% of the op (`max_sim_steps=None` replays every tile)."
          + (f" Measured on {exact['graph']} / {exact['hw']}: with macro-steps the engines differ by "
             f"{exact['coarse']['diff_pct']:+.4f}% end to end (worst op {exact['coarse']['worst_op']} "
             f"{exact['coarse']['worst_op_diff_pct']:+.3f}%, {exact['coarse']['events']:,} events); replaying every "
             f"tile: {exact['exact']['diff_pct']:+.4f}% (worst op {exact['exact']['worst_op']} "
             f"{exact['exact']['worst_op_diff_pct']:+.4f}%, {exact['exact']['events']:,} events)." if exact else ""),
          "4. **Contention the formula cannot see.** With loads and stores on one FIFO channel the "
          "simulation serialises them exactly; the formula adds them into one memory time, which is "
          "the same total, so contention only shifts fill/drain (point 1), not the steady state.", ""]
    if variants is not None and len(variants):
        L += ["## What-if: config variants (llama2-7b W4A8 qe on flightllm-u280)", "",
              "The same comparison after changing one switch of the config (memory placement, buffering, "
              "buffer size, SFU overlap): the engines must agree on any config, not only the presets.", "",
              "| variant | stage | analytical | cycle | diff % | worst op | worst op diff % | ops beyond 3% |",
              "|---|---|---|---|---|---|---|---|"]
        for r in variants.itertuples():
            L.append(f"| {r.variant} | {r.stage} | {r.analytical_cycles:.4g} | {r.cycle_cycles:.4g} | {r.diff_pct:+.3f} | "
                     f"{r.worst_op} | {r.worst_op_diff_pct:+.2f} | {r.ops_beyond_tol or '-'} |")
        L.append("")
    if skipped:
        L += ["## Not compared", ""]
        for m, st, reason in skipped:
            L.append(f"- {m} {st}: {reason}")
        L.append("")
    L += ["## All cases", "",
          "| model | stage | setting | hw | analytical cycles | cycle cycles | diff % | worst op | worst op diff % |",
          "|---|---|---|---|---|---|---|---|---|"]
    for r in cases.itertuples():
        L.append(f"| {r.model} | {r.stage} | {r.setting} | {r.hw} | {r.analytical_cycles:.4g} | {r.cycle_cycles:.4g} | "
                 f"{r.diff_pct:+.3f} | {r.worst_op} | {r.worst_op_diff_pct:+.2f} |")
    return "\n".join(L) + "\n"
