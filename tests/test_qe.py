"""Tests for qesim.quant.qe (Quant Experts) on a synthetic linear with planted channel structure.

Planted data (``_layout`` / ``_tokens``): ``in=256`` channels of N(0,1) background, plus
* 8 token-independent outlier channels, |x| ~ 8..11 x U(0.5, 1.5) on every token, random sign;
* 4 groups of 8 token-dependent channels: each token has a type g (uniform), and each channel of
  group g is "on" with prob. 0.6 at |x| = base_c x U(0.7, 1.3), base_c log-spaced 6..24 within
  the group.  Groups never co-occur, so the co-occurrence graph has 4 components.
With k=8 and Nr=4, Alg. 1 should find C_s = the 8 independent channels and C_r = the 32 group
channels.  Weights are N(0, 1/in), W4 per-channel symmetric (the paper's W-A setting).
"""

import math

import numpy as np
import pytest
import torch

from qesim.graph.ir import LowRankAdapters
from qesim.quant.lowrank import activation_scale, scaled_svd
from qesim.quant.primitives import quantize_act, quantize_weight
from qesim.quant.qe import (
    ABLATIONS,
    QEConfig,
    cooccurrence,
    fit_qe,
    important_channels,
    npmi_similarity,
    partition_channels,
    spectral_clusters,
)

torch.set_num_threads(2)

IN, OUT, K, NR, RS, RR = 256, 128, 8, 4, 8, 8


def _layout(seed=0, n_ind=8, n_groups=4, gsize=8):
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(IN, generator=g)
    return perm[:n_ind], perm[n_ind : n_ind + n_groups * gsize].reshape(n_groups, gsize)


def _tokens(T, ind, groups, seed, p_on=0.6):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(T, IN, generator=g)
    typ = torch.randint(groups.shape[0], (T,), generator=g)
    sgn = lambda *s: torch.where(torch.rand(*s, generator=g) < 0.5, -1.0, 1.0)  # noqa: E731
    base = torch.linspace(8, 11, len(ind))
    X[:, ind] = sgn(T, len(ind)) * base * (0.5 + torch.rand(T, len(ind), generator=g))
    gs = groups.shape[1]
    on = torch.rand(T, gs, generator=g) < p_on
    gbase = torch.logspace(math.log10(6), math.log10(24), gs)
    mag = gbase * (0.7 + 0.6 * torch.rand(T, gs, generator=g)) * sgn(T, gs)
    cols = groups[typ]
    X.scatter_(1, cols, torch.where(on, mag, X.gather(1, cols)))
    return X, typ


def _wq(M):
    return quantize_weight(M, 4, -1, True)


@pytest.fixture(scope="module")
def planted():
    ind, groups = _layout()
    g = torch.Generator().manual_seed(5)
    W = torch.randn(OUT, IN, generator=g) / IN**0.5
    b = 0.1 * torch.randn(OUT, generator=g)
    Xc, _ = _tokens(2048, ind, groups, seed=1)
    Xh, th = _tokens(2048, ind, groups, seed=2)
    return dict(ind=ind, groups=groups, W=W, b=b, Xc=Xc, Xh=Xh, th=th)


def _cfg(**kw):
    return QEConfig(k=K, n_routed=NR, shared_rank=RS, routed_rank=RR, **kw)


@pytest.fixture(scope="module")
def fitted(planted):
    """One QELinear per (ablation, a_bits), fitted once for the module."""
    p = planted
    out = {}
    for abl in ABLATIONS:
        out[(abl, 16)] = fit_qe(p["W"], p["b"], p["Xc"], _wq, 16, _cfg(ablation=abl))
    for abl in ("full", "se_only"):
        out[(abl, 8)] = fit_qe(p["W"], p["b"], p["Xc"], _wq, 8, _cfg(ablation=abl))
    return out


def _rel_err(y_hat, y):
    return float(((y_hat - y) ** 2).sum() / (y**2).sum())


# ------------------------------------------------------------------------------------ unit pieces


def test_npmi_hand_computed():
    # 4 tokens, 3 channels: a,b on tokens {0,1}; c on token {2}; a also on token 3.
    O = torch.tensor([[1, 1, 0], [1, 1, 0], [0, 0, 1], [1, 0, 0]], dtype=torch.bool)
    S = npmi_similarity(O)
    # p(a)=3/4, p(b)=1/2, p(ab)=1/2: log((1/2)/(3/8)) / -log(1/2) = log(4/3)/log 2
    assert S[0, 1] == pytest.approx(math.log(4 / 3) / math.log(2))
    assert S[0, 2] == -1.0 and S[1, 2] == -1.0  # never co-occur
    assert np.allclose(S, S.T)


def test_spectral_clusters_on_block_similarity():
    # two blocks of 5 with positive NPMI inside, -1 across -> exactly the blocks
    S = -np.ones((10, 10))
    S[:5, :5] = 0.4
    S[5:, 5:] = 0.4
    lab = spectral_clusters(S, 2, seed=0)
    assert len(set(lab[:5])) == 1 and len(set(lab[5:])) == 1 and lab[0] != lab[5]
    # more clusters than points / single cluster edge cases
    assert list(spectral_clusters(S[:3, :3], 8)) == [0, 1, 2]
    assert list(spectral_clusters(S, 1)) == [0] * 10


def test_partition_and_clustering_recover_planted_groups(planted, fitted):
    from sklearn.metrics import adjusted_rand_score

    p = planted
    topk = important_channels(p["W"], p["Xc"], K)
    C_s, C_r, freq = partition_channels(topk, IN, K, NR)
    assert set(C_s.tolist()) == set(p["ind"].tolist())
    assert set(C_r.tolist()) == set(p["groups"].reshape(-1).tolist())
    assert freq.sum().item() == pytest.approx(K)  # Eq. 3: frequencies sum to k
    truth = np.full(IN, -1)
    for gi, gr in enumerate(p["groups"]):
        truth[gr.numpy()] = gi
    m = fitted[("full", 16)]
    ari = adjusted_rand_score(truth[m.C_r.numpy()], m.cluster_labels)
    assert ari >= 0.9, ari  # measured 1.0
    # random clustering ablation is far from the planted groups
    mr = fitted[("se_random_clustering", 16)]
    assert adjusted_rand_score(truth[mr.C_r.numpy()], mr.cluster_labels) < 0.3


# ------------------------------------------------------------------------------------ accuracy


@pytest.mark.parametrize("a_bits", [16, 8])
def test_qe_beats_lqer_beats_rtn(planted, fitted, a_bits):
    p = planted
    y = p["Xh"] @ p["W"].t() + p["b"]
    xq = quantize_act(p["Xh"], a_bits)
    Wq = _wq(p["W"])
    rtn = _rel_err(xq @ Wq.t() + p["b"], y)
    A, B = scaled_svd(p["W"] - Wq, activation_scale(p["Xc"]), RS + RR)  # same total rank per token
    lqer = _rel_err(xq @ Wq.t() + p["b"] + (xq @ A) @ B, y)
    qe = _rel_err(fitted[("full", a_bits)](p["Xh"]), y)
    # measured (a16): rtn 0.0160, lqer 0.0043, qe 0.0027; (a8): 0.0163, 0.0047, 0.0030
    assert qe < 0.8 * lqer < 0.8 * rtn, (qe, lqer, rtn)


@pytest.mark.parametrize("a_bits", [16, 8])
def test_ablations_run_and_full_is_best(planted, fitted, a_bits):
    p = planted
    y = p["Xh"] @ p["W"].t() + p["b"]
    err = {}
    for abl in ABLATIONS if a_bits == 16 else ("full", "se_only"):
        out = fitted[(abl, a_bits)](p["Xh"])
        assert out.shape == y.shape and torch.isfinite(out).all()
        err[abl] = _rel_err(out, y)
    # measured (a16): full .0027, se_only .0093, re_only .0060, random routing .0046,
    # random clustering .0035; (a8): full .0030, se_only .0096
    assert err["full"] < 0.5 * err["se_only"], err
    spec = fitted[("se_only", a_bits)].adapter_spec()
    assert spec["routed_experts"] == 0 and spec["shared_rank"] == RS
    if a_bits == 16:
        for abl in ("re_only", "se_random_routing", "se_random_clustering"):
            assert err["full"] < 0.9 * err[abl], (abl, err)
        spec = fitted[("re_only", a_bits)].adapter_spec()
        assert spec["shared_rank"] == 0 and spec["routed_experts"] == NR


def test_router_picks_lowest_error_expert(planted, fitted):
    """Fraction of held-out tokens where argmin(R|x|) is the expert with the lowest actual output
    error.  Chance level with Nr=4 is 0.25 (0.25 + 3 sigma ~ 0.28 at T=2048); we require 0.8, i.e.
    the router is right on a large majority of tokens (measured 0.99)."""
    p = planted
    m = fitted[("full", 16)]
    y = p["Xh"] @ p["W"].t() + p["b"]
    xq = m.quant_input(p["Xh"])
    with torch.no_grad():
        per_expert = m.base_and_shared(xq)[:, None, :] + m.expert_outputs(xq)
    true_best = ((per_expert - y[:, None, :]) ** 2).sum(-1).argmin(1)
    acc = float((m.route(xq) == true_best).float().mean())
    assert acc >= 0.8, acc
    # and routing follows the planted token type (one expert per type, a permutation)
    picks = m.route(xq)
    majority = [int(torch.mode(picks[p["th"] == t]).values) for t in range(4)]
    assert len(set(majority)) == 4


# ------------------------------------------------------------------------------------ module API


def test_forward_matches_manual_composition(planted, fitted):
    p = planted
    m = fitted[("full", 8)]
    x = p["Xh"][:300]
    xq = quantize_act(x / m.omega, 8)
    idx = (xq.abs() @ m.router).argmin(1)
    ref = xq @ m.weight_q.t() + p["b"] + (xq @ m.A_s) @ m.B_s
    ref = ref + torch.einsum("tr,tro->to", torch.einsum("ti,tir->tr", xq, m.A_r[idx]), m.B_r[idx])
    assert torch.allclose(m(x), ref, atol=1e-4)
    # the exempted token-independent columns are zero in the quantized weight
    assert torch.all(m.weight_q[:, m.C_s] == 0)
    assert m.deploy_notes() == {"input_scale": True, "exempt_channels": K}


def test_routing_counts_and_touched_per_batch(planted, fitted):
    p = planted
    m = fitted[("full", 16)]
    m.reset_routing_counts()
    x = p["Xh"][:1280].reshape(5, 256, IN)  # [batch, seq, in]
    m(x)
    assert m.routing_counts.dtype == torch.long
    assert int(m.routing_counts.sum()) == 1280
    idx = m.route(m.quant_input(p["Xh"][:1280]))
    assert torch.equal(m.routing_counts, torch.bincount(idx, minlength=NR))
    expect = np.mean([len(set(c.tolist())) for c in idx.reshape(10, 128)])
    assert m.touched_per_batch(128) == pytest.approx(expect)
    assert 1 <= m.touched_per_batch(16) <= NR
    m(p["Xh"][:10])
    assert int(m.routing_counts.sum()) == 1290
    m.reset_routing_counts()
    assert int(m.routing_counts.sum()) == 0 and m.touched_per_batch() is None


def test_random_routing_is_uniformish(planted, fitted):
    m = fitted[("se_random_routing", 16)]
    m.reset_routing_counts()
    m(planted["Xh"])
    c = m.routing_counts.float()
    assert int(c.sum()) == 2048 and c.min() > 0.2 * 2048 / NR
    assert m.adapter_spec()["router"] is False


@pytest.mark.parametrize("abl", ABLATIONS)
def test_adapter_spec_validates(planted, fitted, abl):
    m = fitted[(abl, 16)]
    m.reset_routing_counts()
    LowRankAdapters(**m.adapter_spec())  # before any forward: no routing stats
    m(planted["Xh"][:512])
    spec = m.adapter_spec()
    lra = LowRankAdapters(**spec)
    if abl != "se_only":
        assert lra.routing is not None and sum(lra.routing.tokens_per_expert) == 512
        assert lra.total_rank == (0 if abl == "re_only" else RS) + RR


# ------------------------------------------------------------------------------------ refinement


def test_refinement_does_not_increase_calibration_loss(planted):
    p = planted
    Xc = p["Xc"][:1024]
    m = fit_qe(p["W"], p["b"], Xc, _wq, 8, _cfg(refine=True, refine_steps=40, refine_lr=1e-3, refine_batch=128))
    rep = m.refine_report
    assert rep and not rep["skipped"]
    # the refinement objective (L = α L_reg + β L_cls, all calibration tokens) went down ...
    assert rep["objective_after"][0] < rep["objective_before"][0], rep["objective_after"]
    # ... and the deployed calibration MSE did not go up (kept only if so)
    assert rep["calib_mse_final"] <= rep["calib_mse_before"]
    y = Xc @ p["W"].t() + p["b"]
    mse = float(((m(Xc) - y) ** 2).mean())
    assert mse == pytest.approx(rep["calib_mse_final"], rel=1e-4)
    # held-out: refined QE is not worse than unrefined (measured 0.0030 -> 0.0024 relative error)
    m0 = fit_qe(p["W"], p["b"], Xc, _wq, 8, _cfg())
    yh = p["Xh"] @ p["W"].t() + p["b"]
    assert _rel_err(m(p["Xh"]), yh) <= _rel_err(m0(p["Xh"]), yh)


# ------------------------------------------------------------------------------------ robustness


@pytest.mark.parametrize(
    "in_f,out_f,T",
    [(12, 5, 3), (40, 70, 1), (64, 16, 20), (300, 8, 50)],
)
def test_small_and_degenerate_layers(in_f, out_f, T):
    g = torch.Generator().manual_seed(in_f)
    W = torch.randn(out_f, in_f, generator=g)
    X = torch.randn(T, in_f, generator=g)
    X[:, 0] = 0.0  # dead channel
    for abl in ABLATIONS:
        m = fit_qe(W, None, X, _wq, 8, QEConfig(ablation=abl))  # paper defaults: k=32, Nr=8, ranks 32
        y = m(X)
        assert y.shape == (T, out_f) and torch.isfinite(y).all()
        LowRankAdapters(**m.adapter_spec())
        assert m.shared_rank <= min(in_f, out_f) and m.routed_rank <= min(in_f, out_f)
        assert int(m.routing_counts.sum()) == (T if m.n_routed else 0)
    # all-zero calibration input and a bias still work
    m = fit_qe(W, torch.ones(out_f), torch.zeros(4, in_f), _wq, 8, QEConfig())
    assert torch.isfinite(m(torch.randn(3, in_f))).all()
    with pytest.raises(ValueError):
        fit_qe(W, None, torch.zeros(0, in_f), _wq, 8, QEConfig())
    with pytest.raises(ValueError):
        QEConfig(ablation="nope")


def test_deterministic(planted):
    p = planted
    X = p["Xc"][:512]
    a = fit_qe(p["W"], p["b"], X, _wq, 8, _cfg(seed=3))
    b = fit_qe(p["W"], p["b"], X, _wq, 8, _cfg(seed=3))
    assert np.array_equal(a.cluster_labels, b.cluster_labels)
    assert torch.equal(a(p["Xh"][:64]), b(p["Xh"][:64]))


def test_whitening_cache_key():
    from qesim.quant.qe import _whitening_key

    g = torch.Generator().manual_seed(0)
    X = torch.randn(50, 6, generator=g)
    k = _whitening_key(X, 0.01)
    assert _whitening_key(X[torch.randperm(50, generator=g)].clone(), 0.01) == k  # same X^T X
    assert _whitening_key(X, 0.02) != k
    assert _whitening_key(X[:, [1, 0, 2, 3, 4, 5]], 0.01) != k
    Y = X.clone()
    Y[[0, 1], 2] = Y[[1, 0], 2]  # swap two entries inside one column: same column sums, new X^T X
    assert _whitening_key(Y, 0.01) != k
