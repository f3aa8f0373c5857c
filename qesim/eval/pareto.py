"""Budget-matched comparison of the low-rank quantizers (LQER, ASER, QE) and the plain ones.

One calibration capture per model; every method x budget is fitted, evaluated on the same
evaluation chunks (per-chunk NLL / per-paragraph cosine kept for paired bootstraps, see
:mod:`qesim.eval.stats`) and exported as a layer graph (measured QE routing, QE/ASER input
scaling) whose modelled latency is computed on every hardware preset, prefill and decode.

Budgets (per linear, ranks in units of one rank-1 adapter pair ``in + out`` parameters):

* active rank (the adapter FLOPs per token): LQER/ASER ``r``; QE ``r_s + r_r`` (top-1 routing);
* stored adapter memory: LQER/ASER ``r``; QE ``r_s + Nr * r_r`` plus the router (``in x Nr``)
  — counted in bytes from the exported graph (``qesim.perf.model.adapter_params``), plus the
  per-linear input-scaling vectors of QE/ASER: the constant vector operands of the graph's SFU
  ops (``SfuOp.const_elems`` at ``in_bits``; the cost model loads them per call, see
  ``qesim.perf.fusion.sfu_const_bytes``);
* modelled latency: ``qesim.perf.model.estimate_graph`` of the exported graph (omega's vector
  loads included).

LQER is fitted once at the largest rank; a rank-r point keeps the leading r singular triplets of
that fit (the truncated SVD of the same matrix = fitting at rank r, up to rounding). ASER likewise,
per group of ranks with the same number of extracted channels ``k = min(32, r)``.
QE is fitted per configuration ``(r_s, r_r, Nr)`` with ``k = min(32, r_s)`` important channels per
token (the paper's k = 32 at r_s = 32; a rank-r_s shared expert cannot carry more exempted columns
than its rank).
"""

from __future__ import annotations

import math
import multiprocessing as mp
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
import torch

from qesim.eval.stats import Interval, mean_interval, paired_mean_diff, paired_ppl, ppl_interval

LOWRANK = ("lqer", "aser")
#: hardware presets shown in the markdown tables and the plot (the CSV has every preset)
MAIN_HW = ("flightllm-u280", "qe-paper-npu")


@dataclass
class ParetoConfig:
    model: str = "smollm2-135m"
    setting: str = "W4A8"
    # the default grid (``--pareto-grid default``), sized for ~30 min on the shared 2-core box: every
    # method; LQER/ASER at QE's active rank (64), at its stored rank (288) and between (128); QE with the paper's
    # ranks (32 shared + Nr x 32 routed, top-1) at Nr = 4 and 8 (its memory/latency trade-off at equal
    # active rank). LQER/ASER ranks share one fit, so a rank costs one evaluation. (r_s, r_r, Nr):
    plain: tuple = ("rtn", "gptq", "awq")
    ranks: tuple = (64, 128, 288)
    qe_configs: tuple = ((32, 32, 4), (32, 32, 8))
    n_calib: int = 32
    n_eval: int = 64
    n_ood: int = 16
    seq_len: int = 128
    seed: int = 0
    hw: Optional[tuple] = None  # None = every preset
    opts: dict = field(default_factory=dict)

    threads: int = 2
    #: processes for the fits/evaluations (forked after the shared calibration capture; each gets
    #: ``threads // jobs`` torch threads). Results do not depend on it: every fit seeds its own
    #: generators and the bootstrap draws are fixed, so only the float rounding of the thread count differs.
    jobs: int = 1
    quiet: bool = True  # False: tqdm progress bars (points, calibration blocks)

    def n_points(self) -> int:
        return len(self.plain) + len(LOWRANK) * len(self.ranks) + len(self.qe_configs)

    @classmethod
    def large(cls, model: str = "smollm2-135m") -> "ParetoConfig":
        """The larger grid (``--pareto-grid large``, about twice the default's cost): ranks 16/32/64/288,
        QE 16+8x16, 32+2x32, 32+4x32 and 32+8x32, 32 out-of-domain chunks."""
        return cls(model=model, ranks=(16, 32, 64, 288), qe_configs=((16, 16, 8), (32, 32, 2), (32, 32, 4), (32, 32, 8)),
                   n_ood=32)

    @classmethod
    def small(cls, model: str = "smollm2-135m") -> "ParetoConfig":
        """The reduced grid (``--pareto-grid small``): RTN, LQER/ASER at ranks 64 (QE's active rank)
        and 288 (QE's stored rank), QE 16+8x16 and 32+8x32, 16 out-of-domain chunks."""
        return cls(model=model, plain=("rtn",), ranks=(64, 288), qe_configs=((16, 16, 8), (32, 32, 8)), n_ood=16)

    @classmethod
    def quick(cls, model: str = "smollm2-135m") -> "ParetoConfig":
        return cls(model=model, plain=("rtn",), ranks=(8, 32), qe_configs=((8, 8, 4),), n_calib=4, n_eval=8,
                   n_ood=4)


@dataclass
class Point:
    label: str
    method: str
    active_rank: int
    stored_rank: int
    per_item: dict  # eval set -> np.ndarray (per-chunk NLL, or per-paragraph cosine)
    metric: dict  # eval set -> Interval
    adapter_bytes: float = 0.0
    scale_bytes: float = 0.0
    latency: dict = field(default_factory=dict)  # (hw, stage) -> seconds
    extra: dict = field(default_factory=dict)
    quant_s: float = 0.0

    @property
    def memory_bytes(self) -> float:
        return self.adapter_bytes + self.scale_bytes


@dataclass
class ParetoResult:
    model: str
    kind: str  # 'causal' | 'encoder'
    setting: str
    points: list
    ntok: Optional[np.ndarray]
    fp: dict  # eval set -> Interval
    info: dict
    hw: list
    stages: list

    @property
    def metric_name(self) -> str:
        return "ppl" if self.kind == "causal" else "cos"

    def better(self, a: float, b: float) -> bool:
        return a < b if self.kind == "causal" else a > b

    def compare(self, a: Point, b: Point, ev: str = "pydoc"):
        if self.kind == "causal":
            return paired_ppl(a.per_item[ev], b.per_item[ev], self.ntok[ev])
        return paired_mean_diff(a.per_item[ev], b.per_item[ev])


# ---------------------------------------------------------------------------------------------
# graph costs


def graph_costs(qmodel, method: str, setting: str, name: str, hw_names: list, stages: list, seq_len: int,
                batch_tokens: int) -> tuple[dict, float, float]:
    """(latency {(hw, stage): s}, stored adapter bytes, input-scaling vector bytes) of the exported graph."""
    from qesim.hw.loader import load_hw
    from qesim.perf.model import adapter_params, estimate_graph
    from qesim.quant.export import export_graph

    lat, ad_bytes, sc_bytes = {}, 0.0, 0.0
    for stage in stages:
        kw = dict(seq_len=seq_len) if stage == "prefill" else dict(seq_len=1, context_len=seq_len)
        g = export_graph(qmodel, method=method, setting=setting, name=name, stage=stage, batch_tokens=batch_tokens, **kw)
        if stage == stages[0]:
            for op in g.ops:
                if op.kind == "linear" and op.adapters is not None:
                    _, stored = adapter_params(op.adapters, op.in_features, op.out_features, op.tokens)
                    ad_bytes += stored * op.adapters.adapter_bits / 8.0 * op.repeat
                if op.kind == "sfu" and op.const_elems:  # omega: what the cost model loads per call
                    sc_bytes += op.const_elems * op.in_bits / 8.0 * op.repeat
        for h in hw_names:
            lat[(h, stage)] = estimate_graph(g, load_hw(h)).latency_s
    return lat, ad_bytes, sc_bytes


class _Truncated:
    """Temporarily keep only the leading ``r`` columns/rows of every QuantLinear adapter."""

    def __init__(self, model, r: int):
        self.model, self.r, self.saved = model, r, []

    def __enter__(self):
        from qesim.quant.qlinear import QuantLinear

        for m in self.model.modules():
            if isinstance(m, QuantLinear) and m.A is not None:
                self.saved.append((m, m.A, m.B))
                m.A, m.B = m.A[:, : self.r].contiguous(), m.B[: self.r].contiguous()
        return self.model

    def __exit__(self, *exc):
        for m, A, B in self.saved:
            m.A, m.B = A, B
        return False


# ---------------------------------------------------------------------------------------------
# the run


def run_pareto_on(model, kind: str, calib_batches: list, eval_sets: dict, cfg: ParetoConfig, graph_name: str,
                  progress: Callable[[str], None] = lambda s: None, encoder_ref: Optional[dict] = None) -> ParetoResult:
    """Fit / evaluate / cost every point on an already loaded ``model``. ``eval_sets``: name ->
    ids ``[N, L]`` (causal) or list of tokenized batches (encoder, with ``encoder_ref[name]`` the fp32
    embeddings)."""
    from qesim.eval.metrics import chunk_nll, embed
    from qesim.hw.loader import preset_names
    from qesim.quant.apply import quantize_model
    from qesim.quant.calib import Calibration
    from qesim.quant.export import reset_routing
    from qesim.quant.primitives import parse_setting

    st = parse_setting(cfg.setting)
    hw_names = list(cfg.hw or preset_names())
    stages = ["prefill", "decode"] if kind == "causal" else ["prefill"]
    t0 = time.time()
    calib = Calibration.build(model, calib_batches, quiet=cfg.quiet)
    info = {"calib_tokens": calib.n_tokens, "calib_capture_s": time.time() - t0}
    ntok = None
    if kind == "causal":
        ntok = {k: np.full(len(v), v.shape[1] - 1, dtype=np.float64) for k, v in eval_sets.items()}

    def evaluate(m) -> dict:
        out = {}
        for k, v in eval_sets.items():
            if kind == "causal":
                out[k] = chunk_nll(m, v)[0].numpy()
            else:
                out[k] = (embed(m, v) * encoder_ref[k]).sum(-1).double().numpy()
        return out

    def summarize(per: dict) -> dict:
        if kind == "causal":
            return {k: ppl_interval(v, ntok[k]) for k, v in per.items()}
        return {k: mean_interval(v) for k, v in per.items()}

    t = time.time()
    fp_per = evaluate(model)
    fp = summarize(fp_per)
    info["fp_eval_s"] = time.time() - t
    progress(f"{graph_name} fp: " + ", ".join(f"{k} {v.fmt()}" for k, v in fp.items()))
    base_opts = dict(cfg.opts, seed=cfg.seed, progress=not cfg.quiet)
    from qesim.progress import bar

    pbar = bar(cfg.n_points(), f"pareto {graph_name}", quiet=cfg.quiet, unit="point")
    if kind == "causal":
        base_opts.setdefault("awq_batches", 1)
        base_opts.setdefault("awq_seqs", 2)

    def point(label, method, active, stored, qm, quant_s, extra=None) -> Point:
        reset_routing(qm)
        t = time.time()
        per = evaluate(qm)
        ev_s = time.time() - t
        lat, ab, sb = graph_costs(qm, method, st.name, graph_name, hw_names, stages, cfg.seq_len, cfg.seq_len)
        p = Point(label, method, active, stored, per, summarize(per), ab, sb, lat, dict(extra or {}, eval_s=ev_s),
                  quant_s)
        progress(f"{graph_name} {label:>14s}: " + ", ".join(f"{k} {v.fmt()}" for k, v in p.metric.items())
                 + f"  adapters {p.memory_bytes / 2**20:.2f} MiB  quant {quant_s:.0f} s  eval {ev_s:.0f} s")
        return p

    # the work as independent tasks (one fit each, and the points evaluated on it), in report order
    tasks: list[tuple] = [("plain", m) for m in cfg.plain]
    for m in LOWRANK:
        # one fit per group of ranks that share every other fitted quantity (LQER: all; ASER: the
        # number of extracted channels k = min(32, r), so ranks >= 32 share one fit)
        groups: dict = {}
        for r in sorted(cfg.ranks):
            groups.setdefault(min(32, r) if m == "aser" else 0, []).append(r)
        tasks += [("lowrank", m, tuple(rs_)) for rs_ in groups.values()]
    tasks += [("qe", qc) for qc in cfg.qe_configs]

    def run_task(task) -> list:
        t = time.time()
        if task[0] == "plain":
            m = task[1]
            qm, _ = quantize_model(model, m, st, calib, **base_opts)
            return [point(m, m, 0, 0, qm, time.time() - t)]
        if task[0] == "lowrank":
            m, rs_ = task[1], task[2]
            rmax = max(rs_)
            qm, _ = quantize_model(model, m, st, calib, **base_opts, rank=rmax, aser_k=min(32, rmax) if m == "aser" else 32)
            fit_s = time.time() - t
            out = []
            for r in rs_:
                with _Truncated(qm, r):
                    out.append(point(f"{m}-{r}", m, r, r, qm, fit_s, {"rank": r, "fitted_at_rank": rmax}))
            return out
        rs, rr, nr = task[1]
        qm, _ = quantize_model(model, "qe", st, calib, **base_opts, qe_shared_rank=rs, qe_routed_rank=rr,
                               qe_n_routed=nr, qe_k=min(32, rs))
        p = point(f"qe-{rs}+{nr}x{rr}", "qe", rs + rr, rs + nr * rr, qm, time.time() - t,
                  {"r_s": rs, "r_r": rr, "Nr": nr, "k": min(32, rs)})
        p.extra.update(qe_stats(qm))  # after the evaluation: routing measured on its chunks
        return [p]

    jobs = max(1, min(int(cfg.jobs), len(tasks)))
    if jobs > 1 and "fork" in mp.get_all_start_methods():
        done = _run_forked(run_task, tasks, jobs, max(1, int(cfg.threads) // jobs), pbar)
    else:
        done = []
        for task in tasks:
            done.append(run_task(task))
            pbar.update(len(done[-1]))
    points = [p for ps in done for p in ps]
    pbar.close()
    info["total_s"] = time.time() - t0
    return ParetoResult(graph_name, kind, st.name, points, ntok, fp, info, hw_names, stages)


_FORKED: Optional[tuple] = None  # (run_task, tasks) for the forked workers of _run_forked


def _forked_init(threads: int) -> None:
    torch.set_num_threads(threads)


def _forked_task(i: int) -> list:
    run_task, tasks = _FORKED
    return run_task(tasks[i])


def _run_forked(run_task, tasks: list, jobs: int, threads: int, pbar) -> list:
    """``[run_task(t) for t in tasks]`` on ``jobs`` forked processes (they inherit the model, the
    calibration capture and the evaluation chunks; only the Points travel back). The tasks with
    most points (a shared fit evaluated at several ranks) start first; results keep task order."""
    from concurrent.futures import ProcessPoolExecutor, as_completed

    global _FORKED
    _FORKED = (run_task, tasks)
    size = lambda i: (len(tasks[i][2]) if tasks[i][0] == "lowrank" else 1, tasks[i][0] != "plain")  # noqa: E731
    order = sorted(range(len(tasks)), key=size, reverse=True)
    out: list = [None] * len(tasks)
    try:
        with ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("fork"), initializer=_forked_init,
                                 initargs=(threads,)) as ex:
            futs = {ex.submit(_forked_task, i): i for i in order}
            for f in as_completed(futs):
                out[futs[f]] = f.result()
                pbar.update(len(out[futs[f]]))
    finally:
        _FORKED = None
    return out


def qe_stats(qm) -> dict:
    """Measured QE facts: mean C_s overlap of linears that share an input (q/k/v, gate/up) and the
    mean distinct experts touched per 128-token batch (from the last evaluation's routing)."""
    from qesim.quant.model_utils import get_arch

    arch = get_arch(qm)
    ov, touched = [], []
    groups = [("q_proj", "k_proj", "v_proj"), ("gate_proj", "up_proj"), ("query", "key", "value")]
    for i in range(arch.num_blocks):
        lins = arch.linears(i)
        for grp in groups:
            sets = [set(lins[n].C_s.tolist()) for n in grp if n in lins and getattr(lins[n], "C_s", None) is not None]
            for a in range(len(sets)):
                for b in range(a + 1, len(sets)):
                    ov.append(len(sets[a] & sets[b]) / max(len(sets[a]), 1))
        for m in lins.values():
            tp = m.touched_per_batch(128) if hasattr(m, "touched_per_batch") else None
            if tp is not None:
                touched.append(tp)
    return {"cs_overlap": float(np.mean(ov)) if ov else float("nan"),
            "touched_per_128": float(np.mean(touched)) if touched else float("nan")}


def run_pareto(cfg: ParetoConfig, progress: Callable[[str], None] = lambda s: None) -> ParetoResult:
    """Load ``cfg.model`` (smollm2-135m or minilm-l6) and its data, then :func:`run_pareto_on`."""
    from qesim.eval.data import lm_calib, lm_eval_sets, para_calib, para_eval_sets
    from qesim.eval.metrics import embed, encoder_batches
    from qesim.eval.models import load_model

    torch.set_num_threads(int(cfg.threads))
    torch.manual_seed(cfg.seed)
    lm = load_model(cfg.model)
    t0 = time.time()
    if lm.kind == "causal":
        cal = lm_calib(lm.tokenizer, cfg.n_calib, cfg.seq_len, cfg.seed)
        batches = [{"input_ids": cal[i : i + 4]} for i in range(0, len(cal), 4)]
        ev = lm_eval_sets(lm.tokenizer, cfg.n_eval, cfg.n_ood, cfg.seq_len)
        res = run_pareto_on(lm.model, "causal", batches, ev, cfg, cfg.model, progress)
        res.info.update(eval_chunks={k: int(v.shape[0]) for k, v in ev.items()}, seq_len=cfg.seq_len)
    else:
        cal = para_calib(cfg.n_calib, cfg.seed)
        batches = encoder_batches(lm.tokenizer, cal, batch_size=16)
        ev_txt = para_eval_sets(cfg.n_eval, cfg.n_ood)
        ev = {k: encoder_batches(lm.tokenizer, v) for k, v in ev_txt.items()}
        ref = {k: embed(lm.model, v) for k, v in ev.items()}
        res = run_pareto_on(lm.model, "encoder", batches, ev, cfg, cfg.model, progress, encoder_ref=ref)
        res.info.update(eval_paragraphs={k: len(v) for k, v in ev_txt.items()})
    res.info.update(load_s=lm.load_s, wall_s=time.time() - t0 + lm.load_s)
    return res


# ---------------------------------------------------------------------------------------------
# fronts and budget-matched comparisons


def front(points: list, cost: Callable[[Point], float], value: Callable[[Point], float], lower_better: bool) -> list:
    """Points not dominated (cost <=, value better-or-equal, one strict) within ``points``, by cost."""
    sgn = 1.0 if lower_better else -1.0
    out = []
    for p in points:
        dominated = any(
            cost(q) <= cost(p) and sgn * value(q) <= sgn * value(p) and (cost(q) < cost(p) or sgn * value(q) < sgn * value(p))
            for q in points if q is not p)
        if not dominated:
            out.append(p)
    return sorted(out, key=cost)


def budget_matches(res: ParetoResult, ev: str = "pydoc") -> list[dict]:
    """For every QE point and every other method: the other method's best point at QE's budget —
    equal active rank, stored memory <= QE's, and (per hw x stage) modelled latency <= QE's —
    with the paired comparison."""
    val = lambda p: p.metric[ev].value  # noqa: E731
    qes = [p for p in res.points if p.method == "qe"]
    others = [p for p in res.points if p.method != "qe"]
    rows = []
    for q in qes:
        cands = {
            "active rank": [p for p in others if p.method in LOWRANK and p.active_rank == q.active_rank],
            "stored memory": [p for p in others if p.method in LOWRANK and p.memory_bytes <= q.memory_bytes * (1 + 1e-9)],
        }
        for (h, stage), lq in q.latency.items():
            cands[f"latency {h} {stage}"] = [p for p in others if p.latency[(h, stage)] <= lq * (1 + 1e-9)]
        for budget, cs in cands.items():
            if not cs:
                rows.append({"qe": q.label, "budget": budget, "baseline": None})
                continue
            best = cs[0]
            for p in cs[1:]:
                if res.better(val(p), val(best)):
                    best = p
            cmp = res.compare(q, best, ev)
            rows.append({"qe": q.label, "budget": budget, "baseline": best.label, "qe_value": val(q),
                         "baseline_value": val(best), "cmp": cmp})
    return rows
