"""Error bars for accuracy numbers: bootstrap over evaluation chunks, paired comparisons,
calibration-seed spread.

Perplexity is ``exp(sum_c nll_c / sum_c n_c)`` over evaluation chunks ``c`` (each a fixed
128-token sequence). Its interval resamples the CHUNKS with replacement (``B`` resamples, fixed
seed) and takes the 2.5 / 97.5 % percentiles of the resampled perplexity. A comparison of two
models evaluated on the SAME chunks is paired: every resample draws one set of chunk indices and
computes ``ppl_a / ppl_b`` on it, so chunk difficulty (which dominates the spread of each
perplexity alone) cancels. An ordering is called significant when the 95 % interval of the
ratio excludes 1. With several calibration seeds (same evaluation chunks for every seed) the
paired statistic is the mean over seeds of ``log(ppl_a / ppl_b)`` per resample, and significance
also requires the same sign at every seed.

Encoder metric (MiniLM): the mean over paragraphs of the embedding cosine to the fp32 model; the
same chunk (paragraph) bootstrap, and paired differences ``cos_a - cos_b``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

#: bootstrap resamples (percentile intervals; 2000 keeps the 95 % bounds' Monte-Carlo error < ~1 % of the width)
B_DEFAULT = 2000
ALPHA = 0.05


def _np(x) -> np.ndarray:
    try:
        import torch

        if isinstance(x, torch.Tensor):
            return x.detach().double().cpu().numpy()
    except ImportError:  # pragma: no cover
        pass
    return np.asarray(x, dtype=np.float64)


def resample_indices(n: int, B: int = B_DEFAULT, seed: int = 0) -> np.ndarray:
    """``[B, n]`` chunk indices drawn with replacement (fixed seed: every model gets the same draws)."""
    if n < 1:
        raise ValueError("bootstrap needs at least one evaluation chunk")
    return np.random.default_rng(seed).integers(0, n, size=(B, n))


@dataclass(frozen=True)
class Interval:
    value: float
    lo: float
    hi: float

    def fmt(self, digits: int = 4) -> str:
        return f"{self.value:.{digits}g} [{self.lo:.{digits}g}, {self.hi:.{digits}g}]"


def ppl_interval(nll, ntok, B: int = B_DEFAULT, seed: int = 0) -> Interval:
    """Perplexity of per-chunk summed NLLs ``nll [N]`` over ``ntok [N]`` tokens, with its bootstrap interval."""
    nll, ntok = _np(nll), _np(ntok)
    idx = resample_indices(len(nll), B, seed)
    boot = np.exp(nll[idx].sum(1) / ntok[idx].sum(1))
    lo, hi = np.percentile(boot, [100 * ALPHA / 2, 100 * (1 - ALPHA / 2)])
    return Interval(float(np.exp(nll.sum() / ntok.sum())), float(lo), float(hi))


def mean_interval(values, B: int = B_DEFAULT, seed: int = 0) -> Interval:
    v = _np(values)
    idx = resample_indices(len(v), B, seed)
    boot = v[idx].mean(1)
    lo, hi = np.percentile(boot, [100 * ALPHA / 2, 100 * (1 - ALPHA / 2)])
    return Interval(float(v.mean()), float(lo), float(hi))


@dataclass(frozen=True)
class Paired:
    """``a`` vs ``b`` on the same chunks: ``ratio`` = ppl_a / ppl_b (or, for ``kind='diff'``, the
    mean difference a - b) with its paired 95 % interval; ``significant`` when the interval
    excludes 1 (0) and, with several seeds, every seed has the same sign."""

    ratio: float
    lo: float
    hi: float
    significant: bool
    seeds_agree: bool
    kind: str = "ratio"

    @property
    def a_better(self) -> bool:
        """a is better: lower perplexity (ratio < 1) or higher cosine (diff > 0)."""
        return self.ratio < 1 if self.kind == "ratio" else self.ratio > 0

    def verdict(self, a: str, b: str) -> str:
        if self.kind == "ratio":
            word = f"{a} {'<' if self.ratio < 1 else '>'} {b}"
        else:
            word = f"{a} {'>' if self.ratio > 0 else '<'} {b}"
        return word + (" (significant)" if self.significant else " (not significant)")


def paired_ppl(nll_a: Sequence, nll_b: Sequence, ntok, B: int = B_DEFAULT, seed: int = 0) -> Paired:
    """Paired bootstrap of ``ppl_a / ppl_b``. ``nll_a``/``nll_b``: one ``[N]`` array, or a list of
    them (one per calibration seed, all on the same N chunks)."""
    A = [_np(x) for x in (nll_a if _is_list(nll_a) else [nll_a])]
    Bv = [_np(x) for x in (nll_b if _is_list(nll_b) else [nll_b])]
    if len(A) != len(Bv):
        raise ValueError("paired_ppl: a and b need the same number of seeds")
    t = _np(ntok)
    idx = resample_indices(len(t), B, seed)
    tot = t[idx].sum(1)
    logr = np.mean([(a[idx].sum(1) - b[idx].sum(1)) / tot for a, b in zip(A, Bv)], axis=0)
    point = [float((a.sum() - b.sum()) / t.sum()) for a, b in zip(A, Bv)]
    lo, hi = np.percentile(logr, [100 * ALPHA / 2, 100 * (1 - ALPHA / 2)])
    agree = all(p < 0 for p in point) or all(p > 0 for p in point)
    sig = (hi < 0 or lo > 0) and agree
    return Paired(float(np.exp(np.mean(point))), float(np.exp(lo)), float(np.exp(hi)), bool(sig), bool(agree))


def paired_mean_diff(va, vb, B: int = B_DEFAULT, seed: int = 0) -> Paired:
    """Paired bootstrap of ``mean(a) - mean(b)`` (encoder cosines); lists = several seeds."""
    A = [_np(x) for x in (va if _is_list(va) else [va])]
    Bv = [_np(x) for x in (vb if _is_list(vb) else [vb])]
    idx = resample_indices(len(A[0]), B, seed)
    d = np.mean([a[idx].mean(1) - b[idx].mean(1) for a, b in zip(A, Bv)], axis=0)
    point = [float(a.mean() - b.mean()) for a, b in zip(A, Bv)]
    lo, hi = np.percentile(d, [100 * ALPHA / 2, 100 * (1 - ALPHA / 2)])
    agree = all(p < 0 for p in point) or all(p > 0 for p in point)
    return Paired(float(np.mean(point)), float(lo), float(hi), bool((hi < 0 or lo > 0) and agree), bool(agree),
                  kind="diff")


def _is_list(x) -> bool:
    return isinstance(x, (list, tuple)) and len(x) > 0 and np.ndim(_np(x[0])) == 1


def seed_spread(values: Sequence[float]) -> tuple[float, float, float]:
    """(mean, min, max) of a metric over calibration seeds."""
    v = np.asarray(values, dtype=np.float64)
    return float(v.mean()), float(v.min()), float(v.max())
