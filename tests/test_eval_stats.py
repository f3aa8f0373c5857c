"""Bootstrap intervals and paired comparisons (qesim.eval.stats) on synthetic per-chunk NLLs."""

import math

import numpy as np
import pytest

from qesim.eval.stats import mean_interval, paired_mean_diff, paired_ppl, ppl_interval


def _chunks(n=64, seed=0):
    rng = np.random.default_rng(seed)
    difficulty = rng.gamma(4.0, 100.0, n)  # chunk difficulty dominates the spread
    return difficulty, np.full(n, 127.0)


def test_ppl_interval_contains_point_and_matches_formula():
    nll, t = _chunks()
    iv = ppl_interval(nll, t)
    assert iv.value == pytest.approx(math.exp(nll.sum() / t.sum()))
    assert iv.lo < iv.value < iv.hi


def test_paired_detects_a_small_consistent_gain_the_unpaired_intervals_miss():
    nll, t = _chunks()
    rng = np.random.default_rng(1)
    better = nll * 0.99 + rng.normal(0, 0.5, len(nll))  # 1 % lower NLL on every chunk
    a, b = ppl_interval(better, t), ppl_interval(nll, t)
    assert a.hi > b.lo  # the marginal intervals overlap ...
    p = paired_ppl(better, nll, t)
    assert p.significant and p.a_better and p.hi < 1  # ... the paired one does not
    noise = nll + rng.normal(0, 5.0, len(nll))
    q = paired_ppl(noise, nll, t)
    assert q.lo < 1 < q.hi and not q.significant
    assert "not significant" in q.verdict("x", "y")


def test_seeds_must_agree_in_sign():
    nll, t = _chunks()
    s1, s2 = nll * 0.98, nll * 1.01
    p = paired_ppl([s1, s2], [nll, nll], t)
    assert not p.seeds_agree and not p.significant
    p2 = paired_ppl([nll * 0.98, nll * 0.97], [nll, nll], t)
    assert p2.seeds_agree and p2.significant and p2.ratio < 1


def test_mean_diff_for_cosines():
    rng = np.random.default_rng(2)
    a = 0.9 + rng.normal(0, 0.02, 128)
    b = a - 0.01
    iv = mean_interval(a)
    assert iv.lo < iv.value < iv.hi
    d = paired_mean_diff(a, b)
    assert d.significant and d.a_better and d.ratio == pytest.approx(0.01)
