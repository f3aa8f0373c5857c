"""Accuracy grid: one model, methods x settings, one shared FP calibration capture.

Causal LM (smollm2-135m): perplexity on pydoc evaluation chunks (odd 128-token chunks) after
calibrating on even chunks. Encoder (minilm-l6): mean cosine (and min) of sentence embeddings
to the fp32 model on evaluation paragraphs (odd), calibrated on even paragraphs.
Both: per-block relative output error on held-out tokens (``BlockErrorProbe``).
"""

from __future__ import annotations

import logging
import statistics
import time
import traceback
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch

from qesim.eval.data import lm_splits, para_splits
from qesim.eval.metrics import BlockErrorProbe, chunk_nll, embed, encoder_batches
from qesim.eval.stats import mean_interval, ppl_interval
from qesim.eval.models import load_model
from qesim.quant.apply import quantize_model
from qesim.quant.calib import Calibration
from qesim.quant.primitives import parse_setting

log = logging.getLogger(__name__)

QE_ABLATIONS = ["full", "se_only", "re_only", "se_random_routing", "se_random_clustering"]  # run order
ABLATION_LABELS = {"se_only": "SE only", "re_only": "REs only", "se_random_routing": "SE + REs (random routing)",
                   "se_random_clustering": "SE + REs (random clustering)", "full": "SE + REs (QE)"}


@dataclass
class RunConfig:
    model: str
    methods: list[str]
    settings: list[str]
    quick: bool = False
    n_calib: Optional[int] = None
    n_eval: Optional[int] = None
    seq_len: int = 128
    seed: int = 0
    rank: int = 64
    ablation: bool = False
    ablation_setting: str = "W4A8"
    sequential: Optional[bool] = None  # None = each method's reference default (GPTQ sequential)
    calib_batch: int = 4
    opts: dict = field(default_factory=dict)
    quiet: bool = True  # False: tqdm progress bars (runs, calibration blocks, quantized blocks)

    def sizes(self, kind: str) -> tuple[int, int]:
        if kind == "causal":
            dc, de = (4, 4) if self.quick else (32, 16)
        else:
            dc, de = (16, 16) if self.quick else (64, 128)
        return (self.n_calib or dc, self.n_eval or de)


@dataclass
class RunResult:
    rows: list[tuple] = field(default_factory=list)  # (model, method, setting, metric, value)
    timings: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    info: dict = field(default_factory=dict)


def run_accuracy(cfg: RunConfig, progress: Callable[[str], None] = lambda s: None,
                 checkpoint: Optional[Callable[[RunResult], None]] = None) -> RunResult:
    """Run the grid; ``checkpoint(res)`` is called after every finished run (partial results)."""
    torch.set_num_threads(2)
    torch.manual_seed(cfg.seed)
    res = RunResult()
    t_all = time.time()
    lm = load_model(cfg.model)
    res.timings["load_s"] = lm.load_s
    progress(f"loaded {cfg.model} in {lm.load_s:.1f} s from {lm.source}")
    n_cal, n_ev = cfg.sizes(lm.kind)
    model, tok = lm.model, lm.tokenizer
    bs = cfg.calib_batch
    if lm.kind == "causal":
        cal_ids, ev_ids = lm_splits(tok, n_cal, n_ev, cfg.seq_len, cfg.seed)
        cal_batches = [{"input_ids": cal_ids[i : i + bs]} for i in range(0, len(cal_ids), bs)]
        probe_batches = [{"input_ids": ev_ids[:2]}]
        res.info.update(calib_tokens=int(cal_ids.numel()), eval_tokens=int(ev_ids.numel()))

        def evaluate(m):
            nll, ntok = chunk_nll(m, ev_ids)
            iv = ppl_interval(nll.numpy(), ntok.numpy())  # 95 % bootstrap over the evaluation chunks
            return {"ppl": iv.value, "ppl_lo": iv.lo, "ppl_hi": iv.hi}
    else:
        cal_txt, ev_txt = para_splits(n_cal, n_ev, cfg.seed)
        cal_batches = encoder_batches(tok, cal_txt, batch_size=bs * 4)
        ev_batches = encoder_batches(tok, ev_txt)
        probe_batches = ev_batches[:1]
        res.info.update(calib_paragraphs=len(cal_txt), eval_paragraphs=len(ev_txt))
        ref = embed(model, ev_batches)

        def evaluate(m):
            cos = (embed(m, ev_batches) * ref).sum(-1)
            iv = mean_interval(cos.double().numpy())  # 95 % bootstrap over the evaluation paragraphs
            return {"cos_mean": iv.value, "cos_mean_lo": iv.lo, "cos_mean_hi": iv.hi, "cos_min": float(cos.min())}

    t = time.time()
    calib = Calibration.build(model, cal_batches, quiet=cfg.quiet)
    res.timings["calib_capture_s"] = time.time() - t
    res.info["calib_tokens_valid"] = calib.n_tokens
    probe = BlockErrorProbe(model, probe_batches)
    t = time.time()
    fp = evaluate(model)
    res.timings["fp_eval_s"] = time.time() - t
    for k, v in fp.items():
        res.rows.append((cfg.model, "fp", "W16A16", k, v))
    progress(f"fp: {fp} (calibration capture {res.timings['calib_capture_s']:.1f} s, {calib.n_tokens} tokens)")

    qe_ok = True
    if "qe" in cfg.methods or cfg.ablation:
        from qesim.quant.methods.qe_method import available

        qe_ok, why = available()
        if not qe_ok:
            res.notes.append(f"qe skipped: {why}")
            progress(f"qe skipped: {why}")

    runs = [(m, s, {}) for s in cfg.settings for m in cfg.methods if m != "qe" or qe_ok]
    if cfg.ablation and qe_ok:
        runs += [(f"qe[{a}]", cfg.ablation_setting, {"qe_ablation": a}) for a in QE_ABLATIONS
                 if not (a == "full" and "qe" in cfg.methods and cfg.ablation_setting in cfg.settings)]
    opts_base = dict(cfg.opts, rank=cfg.rank, seed=cfg.seed, sequential=cfg.sequential, progress=not cfg.quiet)
    if lm.kind == "causal":  # AWQ grid search on 2 x 128 calibration tokens (cost: 20 x 3 groups x 30 blocks)
        opts_base.setdefault("awq_batches", 1)
        opts_base.setdefault("awq_seqs", 2)
    res.info["awq_search"] = f"{opts_base.get('awq_batches', 2)} mini-batch(es), {opts_base.get('awq_seqs', 'all')} seq each"
    from qesim.progress import bar

    pbar = bar(len(runs), "accuracy (method x setting)", quiet=cfg.quiet, unit="run")
    for label, setting, extra in runs:
        method = "qe" if label.startswith("qe") else label
        st = parse_setting(setting)
        pbar.set_postfix_str(f"{label} {st.name}")
        t, c = time.time(), time.process_time()
        try:
            qm, rep = quantize_model(model, method, st, calib, **opts_base, **extra)
        except Exception as e:  # a failed run is reported, not hidden
            res.notes.append(f"{label} {st.name} FAILED: {type(e).__name__}: {e}")
            progress(f"{label} {st.name} FAILED: {e}")
            log.debug(traceback.format_exc())
            pbar.update()
            continue
        tq, cq = time.time() - t, time.process_time() - c
        t, c = time.time(), time.process_time()
        mets = evaluate(qm)
        errs = probe.errors(qm)
        te, ce = time.time() - t, time.process_time() - c
        for line in rep.get("log", []):
            res.notes.append(f"{label} {st.name}: {line}")
        for k, v in mets.items():
            res.rows.append((cfg.model, label, st.name, k, v))
        res.rows.append((cfg.model, label, st.name, "block_rel_err_mean", statistics.fmean(errs)))
        res.rows.append((cfg.model, label, st.name, "block_rel_err_max", max(errs)))
        for i, e in enumerate(errs):
            res.rows.append((cfg.model, label, st.name, f"block_rel_err.{i}", e))
        res.rows.append((cfg.model, label, st.name, "quant_s", tq))
        res.rows.append((cfg.model, label, st.name, "eval_s", te))
        res.rows.append((cfg.model, label, st.name, "quant_cpu_s", cq))
        res.rows.append((cfg.model, label, st.name, "eval_cpu_s", ce))
        progress(f"{label:>28s} {st.name}: {mets}  block_err {statistics.fmean(errs):.4f}  quant {tq:.1f} s  eval {te:.1f} s")
        del qm
        pbar.update()
        res.timings["total_s"] = time.time() - t_all
        if checkpoint is not None:
            checkpoint(res)
    pbar.close()
    res.timings["total_s"] = time.time() - t_all
    res.timings["total_cpu_s"] = time.process_time()
    return res
