"""QE ablation (paper Table 4 structure) at the full rank budget, over several calibration seeds,
with paired intervals.

Variants, all at the same ACTIVE rank ``R`` (default 64 = the paper's total) per linear:

* ``full``: QE, shared rank R/2 + Nr routed experts of rank R/2 (top-1);
* ``se_only``: the shared expert alone at rank R (not R/2: the earlier ablation halved the budget);
* ``re_only``: routed experts alone, each of rank R, on the plain RTN error (no exemption/scaling);
* ``se_random_routing``: the ``full`` model with a uniformly random expert per token (no refit);
* ``se_random_clustering``: ``full`` with the token-dependent channels assigned to experts at random.

Each calibration seed draws its own calibration subset (even pydoc chunks); the evaluation chunks
are the same for every seed, so every comparison is paired per chunk and pooled over seeds
(:func:`qesim.eval.stats.paired_ppl`: significant = the 95 % interval of the ppl ratio excludes 1
AND all seeds agree in sign).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from qesim.eval.stats import paired_ppl, ppl_interval, seed_spread

VARIANTS = ("full", "se_only", "re_only", "se_random_routing", "se_random_clustering")
LABELS = {"full": "SE + REs (QE)", "se_only": "SE only (rank R)", "re_only": "REs only (rank R each)",
          "se_random_routing": "SE + REs, random routing", "se_random_clustering": "SE + REs, random clustering"}


@dataclass
class AblationConfig:
    model: str = "smollm2-135m"
    setting: str = "W4A8"
    seeds: tuple = (0, 1, 2)
    rank: int = 64
    n_routed: int = 8
    n_calib: int = 32
    n_eval: int = 64
    seq_len: int = 128
    threads: int = 2
    variants: tuple = VARIANTS
    quiet: bool = True  # False: tqdm progress bars (seed x variant fits, calibration blocks)


@dataclass
class AblationResult:
    cfg: AblationConfig
    nll: dict = field(default_factory=dict)  # variant -> [per-seed np arrays]
    fp_nll: np.ndarray = None
    ntok: np.ndarray = None
    info: dict = field(default_factory=dict)


def variant_opts(variant: str, rank: int, n_routed: int) -> dict:
    half = rank // 2
    if variant == "se_only":
        return dict(qe_ablation="se_only", qe_shared_rank=rank, qe_routed_rank=half, qe_n_routed=n_routed)
    if variant == "re_only":
        return dict(qe_ablation="re_only", qe_shared_rank=half, qe_routed_rank=rank, qe_n_routed=n_routed)
    abl = "se_random_clustering" if variant == "se_random_clustering" else "full"
    return dict(qe_ablation=abl, qe_shared_rank=rank - half, qe_routed_rank=half, qe_n_routed=n_routed)


def set_random_routing(model, on: bool) -> None:
    for m in model.modules():
        if hasattr(m, "random_routing") and hasattr(m, "routing_counts"):
            m.random_routing = bool(on)


def run_ablation_on(model, calib_for_seed: Callable[[int], list], eval_ids: torch.Tensor, cfg: AblationConfig,
                    progress: Callable[[str], None] = lambda s: None) -> AblationResult:
    from qesim.eval.metrics import chunk_nll
    from qesim.quant.apply import quantize_model
    from qesim.quant.calib import Calibration

    res = AblationResult(cfg)
    fp, ntok = chunk_nll(model, eval_ids)
    res.fp_nll, res.ntok = fp.numpy(), ntok.numpy()
    t0 = time.time()
    from qesim.progress import bar

    fits = [v for v in cfg.variants if v != "se_random_routing"]
    pbar = bar(len(cfg.seeds) * len(fits), "QE ablation (seed x variant)", quiet=cfg.quiet, unit="fit")
    for seed in cfg.seeds:
        calib = Calibration.build(model, calib_for_seed(seed), quiet=cfg.quiet)
        fitted = {}
        for v in cfg.variants:
            if v == "se_random_routing":
                continue
            t = time.time()
            qm, _ = quantize_model(model, "qe", cfg.setting, calib, seed=seed, rank=cfg.rank,
                                   progress=not cfg.quiet, **variant_opts(v, cfg.rank, cfg.n_routed))
            fitted[v] = qm
            pbar.update()
            res.nll.setdefault(v, []).append(chunk_nll(qm, eval_ids)[0].numpy())
            progress(f"seed {seed} {v}: ppl {ppl_interval(res.nll[v][-1], res.ntok).fmt()} ({time.time() - t:.0f} s)")
            if v == "full" and "se_random_routing" in cfg.variants:
                set_random_routing(qm, True)
                res.nll.setdefault("se_random_routing", []).append(chunk_nll(qm, eval_ids)[0].numpy())
                set_random_routing(qm, False)
                progress(f"seed {seed} se_random_routing: ppl "
                         f"{ppl_interval(res.nll['se_random_routing'][-1], res.ntok).fmt()}")
            if v != "full":
                del fitted[v], qm
        fitted.clear()
    pbar.close()
    res.info["seconds"] = time.time() - t0
    return res


def run_ablation(cfg: AblationConfig, progress: Callable[[str], None] = lambda s: None) -> AblationResult:
    from qesim.eval.data import lm_calib, lm_eval_sets
    from qesim.eval.models import load_model

    torch.set_num_threads(int(cfg.threads))
    lm = load_model(cfg.model)
    if lm.kind != "causal":
        raise ValueError("the seeded QE ablation runs on the causal LM (perplexity)")
    ev = lm_eval_sets(lm.tokenizer, cfg.n_eval, 0, cfg.seq_len)["pydoc"]

    def calib(seed):
        ids = lm_calib(lm.tokenizer, cfg.n_calib, cfg.seq_len, seed)
        return [{"input_ids": ids[i : i + 4]} for i in range(0, len(ids), 4)]

    res = run_ablation_on(lm.model, calib, ev, cfg, progress)
    res.info.update(eval_chunks=int(ev.shape[0]), calib_chunks=cfg.n_calib, seq_len=cfg.seq_len)
    return res


def write_ablation_report(res: AblationResult, out_dir, cmd: str, wall_s: float, cpu_s: float) -> list:
    import csv
    from pathlib import Path

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg = res.cfg
    with open(out / "qe_ablation.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["variant", "seed", "ppl", "ppl_lo", "ppl_hi"])
        for v, arrs in res.nll.items():
            for s, a in zip(cfg.seeds, arrs):
                iv = ppl_interval(a, res.ntok)
                w.writerow([v, s, f"{iv.value:.6g}", f"{iv.lo:.6g}", f"{iv.hi:.6g}"])
    fp = ppl_interval(res.fp_nll, res.ntok)
    L = [f"# QE ablation at the full rank budget over calibration seeds: {cfg.model}, {cfg.setting}", "",
         f"Produced by: `{cmd}`. Wall and CPU times: `qe_ablation_timing.csv` beside this file (kept out of it "
         "so a rerun rewrites this report byte-identically).", "",
         f"Active rank R = {cfg.rank} per linear in every variant, Nr = {cfg.n_routed}; calibration seeds "
         f"{', '.join(map(str, cfg.seeds))} ({cfg.n_calib} x {cfg.seq_len} tokens each, a different subset of the "
         f"even pydoc chunks per seed); evaluation: the same {res.info.get('eval_chunks', len(res.ntok))} odd pydoc "
         f"chunks for every seed. Intervals: 95 % bootstrap over chunks; comparisons paired per chunk and pooled "
         f"over seeds (`qesim/eval/stats.py`). FP reference ppl {fp.fmt()}.", "",
         "| variant | " + " | ".join(f"seed {s}" for s in cfg.seeds) + " | mean (min..max) over seeds | vs full QE: ppl ratio [95 %] | verdict |",
         "|---" * (4 + len(cfg.seeds)) + "|"]
    for v in cfg.variants:
        if v not in res.nll:
            continue
        cells = [ppl_interval(a, res.ntok).fmt() for a in res.nll[v]]
        m, lo, hi = seed_spread([ppl_interval(a, res.ntok).value for a in res.nll[v]])
        if v == "full":
            cmp_s, verdict = "—", "—"
        else:
            p = paired_ppl(res.nll[v], res.nll["full"], res.ntok)
            cmp_s = f"{p.ratio:.4f} [{p.lo:.4f}, {p.hi:.4f}]"
            verdict = p.verdict(LABELS[v], "QE") + ("" if p.seeds_agree else "; seeds disagree in sign")
        L.append(f"| {LABELS[v]} | " + " | ".join(cells) + f" | {m:.4g} ({lo:.4g}..{hi:.4g}) | {cmp_s} | {verdict} |")
    L += ["", "Orderings between variants other than full QE:", ""]
    vs = [v for v in cfg.variants if v in res.nll and v != "full"]
    for i, a in enumerate(vs):
        for b in vs[i + 1:]:
            p = paired_ppl(res.nll[a], res.nll[b], res.ntok)
            L.append(f"- {p.verdict(LABELS[a], LABELS[b])}: ratio {p.ratio:.4f} [{p.lo:.4f}, {p.hi:.4f}]"
                     + ("" if p.seeds_agree else " (seeds disagree in sign)"))
    (out / "qe_ablation.md").write_text("\n".join(L) + "\n")
    with open(out / "qe_ablation_timing.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["item", "seconds"])
        w.writerow(["fits_and_evals_wall_s", f"{res.info.get('seconds', float('nan')):.1f}"])
        w.writerow(["command_wall_s", f"{wall_s:.1f}"])
        w.writerow(["command_cpu_s", f"{cpu_s:.1f}"])
    return [out / "qe_ablation.csv", out / "qe_ablation.md", out / "qe_ablation_timing.csv"]
