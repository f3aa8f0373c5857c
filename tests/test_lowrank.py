"""Tests for qesim.quant.lowrank (hand-checkable cases)."""

import math

import pytest
import torch

from qesim.quant.lowrank import (
    activation_scale,
    lowrank_error,
    scaled_svd,
    weighted_svd,
    whitened_svd,
    whitening,
)

torch.set_num_threads(2)


def _lowrank_E(out_f, in_f, r, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(out_f, r, generator=g) @ torch.randn(r, in_f, generator=g)


def test_activation_scale_hand():
    X = torch.tensor([[1.0, -4.0, 0.0], [3.0, 4.0, 0.0]])
    # mean|x| = [2, 4, 0 -> 1e-4]; sqrt(min*max) = sqrt(4e-4) = 0.02
    s = activation_scale(X)
    assert torch.allclose(s, torch.tensor([2.0, 4.0, 1e-4]) / 0.02)


def test_shapes_and_rank_clipping():
    E = torch.randn(5, 7)
    A, B = scaled_svd(E, None, 100)
    assert A.shape == (7, 5) and B.shape == (5, 5)
    # full rank -> exact
    assert torch.allclose(A @ B, E.t(), atol=1e-5)
    A0, B0 = scaled_svd(E, None, 0)
    assert A0.shape == (7, 0) and B0.shape == (0, 5)


@pytest.mark.parametrize("fn", ["plain", "scaled", "weighted", "whitened"])
def test_rank_r_exact_recovery(fn):
    E = _lowrank_E(12, 10, 3)
    X = torch.randn(50, 10)
    s = torch.rand(10) + 0.1
    if fn == "plain":
        A, B = scaled_svd(E, None, 3)
    elif fn == "scaled":
        A, B = scaled_svd(E, s, 3)
    elif fn == "weighted":
        A, B = weighted_svd(E, s, 3)
    else:
        A, B = whitened_svd(E, X, 3, damp=0.0)
    assert A.shape == (10, 3) and B.shape == (3, 12)
    assert torch.allclose(A @ B, E.t(), atol=1e-4), (A @ B - E.t()).abs().max()


def test_rank1_hand():
    # E^T = diag(3, 1) (in=2, out=2): rank-1 keeps the 3.
    E = torch.diag(torch.tensor([3.0, 1.0]))
    A, B = scaled_svd(E, None, 1)
    assert torch.allclose(A @ B, torch.tensor([[3.0, 0.0], [0.0, 0.0]]), atol=1e-6)
    # Scaling channel 1 by 10 makes it the dominant direction (10*1 > 1*3): rank-1 keeps the 1 instead.
    A, B = scaled_svd(E, torch.tensor([1.0, 10.0]), 1)
    assert torch.allclose(A @ B, torch.tensor([[0.0, 0.0], [0.0, 1.0]]), atol=1e-6)


def test_whitened_beats_plain_on_output_objective():
    torch.manual_seed(0)
    in_f, out_f, T = 32, 24, 400
    # correlated, anisotropic activations with a few outlier channels
    mix = torch.randn(in_f, in_f)
    X = torch.randn(T, in_f) @ mix
    X[:, :3] *= 20
    E = torch.randn(out_f, in_f)
    r = 6
    Ap, Bp = scaled_svd(E, None, r)
    As, Bs = scaled_svd(E, activation_scale(X), r)
    Aw, Bw = whitened_svd(E, X, r, damp=0.0)
    ep, es, ew = (lowrank_error(E, a, b, X) for a, b in [(Ap, Bp), (As, Bs), (Aw, Bw)])
    assert ew < es < ep, (ew, es, ep)
    # optimality: whitened error equals the tail of singular values of X E^T
    sv = torch.linalg.svdvals(X.double() @ E.double().t())
    opt = math.sqrt(float((sv[r:] ** 2).sum() / (sv**2).sum()))
    assert abs(ew - opt) < 1e-6


def test_weighted_svd_prioritises_weighted_channels():
    torch.manual_seed(1)
    E = torch.randn(16, 20)
    w = torch.ones(20)
    w[:4] = 100.0
    A, B = weighted_svd(E, w, 4)
    A0, B0 = scaled_svd(E, None, 4)
    err_w = (A @ B - E.t())[:4].norm()
    err_0 = (A0 @ B0 - E.t())[:4].norm()
    assert err_w < 0.05 * err_0
    with pytest.raises(ValueError):
        weighted_svd(E, -w, 4)


def test_whitening_properties_and_fallback():
    torch.manual_seed(2)
    X = torch.randn(100, 8)
    L, Linv = whitening(X, damp=0.0)
    G = X.double().t() @ X.double()
    assert torch.allclose(L @ L.t(), G, atol=1e-8)
    assert torch.allclose(L @ Linv, torch.eye(8, dtype=torch.float64), atol=1e-10)
    # rank-deficient X (fewer tokens than features, a dead channel): damped factor stays finite
    Xd = torch.randn(3, 8)
    Xd[:, 5] = 0
    L, Linv = whitening(Xd, damp=0.0)  # forced through the retry path
    assert torch.isfinite(L).all() and torch.isfinite(Linv).all()
    E = torch.randn(4, 8)
    A, B = whitened_svd(E, Xd, 2)
    assert torch.isfinite(A).all() and torch.isfinite(B).all()
    # all-zero input -> identity whitening
    L, _ = whitening(torch.zeros(5, 4))
    assert torch.equal(L, torch.eye(4, dtype=torch.float64))


@pytest.mark.parametrize("shape", [(300, 200), (200, 300)])
def test_top_svd_gram_path_matches_full_svd(shape):
    from qesim.quant.lowrank import _top_svd

    g = torch.Generator().manual_seed(3)
    M = torch.randn(*shape, generator=g, dtype=torch.float64)
    U, S, Vh = _top_svd(M, 16)
    U0, S0, Vh0 = torch.linalg.svd(M, full_matrices=False)
    assert torch.allclose(S, S0[:16], rtol=1e-10)
    assert torch.allclose((U * S) @ Vh, (U0[:, :16] * S0[:16]) @ Vh0[:16], atol=1e-9)
    assert torch.allclose(U.t() @ U, torch.eye(16, dtype=torch.float64), atol=1e-9)
    # exactly rank-3 matrix asked for rank 10: S_10 ~ 0 -> falls back to the full SVD, still exact
    L = torch.randn(shape[0], 3, generator=g, dtype=torch.float64) @ torch.randn(3, shape[1], generator=g, dtype=torch.float64)
    U, S, Vh = _top_svd(L, 10)
    assert torch.allclose((U * S) @ Vh, L, atol=1e-9)
