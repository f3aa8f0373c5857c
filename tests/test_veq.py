"""VEQ on a synthetic MoE layer (real-model accuracy is not measured)."""

import pytest
import torch

from qesim.quant.primitives import parse_setting
from qesim.quant.veq import (expert_importance, gptq_expert, make_synthetic_moe, quantize_layer,
                             weighted_output_error)

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def layer():
    return make_synthetic_moe(seed=0)


def test_importance_formula_by_hand():
    idx = torch.tensor([[0, 1], [0, 2], [1, 2], [2, 0]])
    text = torch.tensor([True, False, False, False])
    S = expert_importance(idx, text, 3, gamma=10.0)  # beta = 1/3
    # expert 0: text slots 1, vision slots 2 -> 10 + 2/3; expert 1: 1 text, 1 vis; expert 2: 0 text, 3 vis
    assert S.tolist() == pytest.approx([10 + 2 / 3, 10 + 1 / 3, 1.0])


def test_planted_frequencies_and_modalities(layer):
    idx, p = layer.route(layer.calib_x)
    counts = torch.bincount(idx.flatten(), minlength=layer.experts)
    assert counts.max() > 1.5 * counts.min()  # skewed (planted) expert frequencies
    text_share = [(idx[layer.calib_text] == e).sum() / max(1, (idx == e).sum()) for e in range(layer.experts)]
    assert max(text_share) > 2 * min(text_share)  # experts differ in their modality mix
    assert torch.allclose(p.sum(1), torch.ones(len(p)))


@pytest.mark.parametrize("setting", ["W3A16", "W4A16"])
def test_veq_ma_beats_gptq_on_weighted_output_error(layer, setting):
    e = {}
    for m in ("rtn", "gptq", "veq-ma"):
        Wq, _ = quantize_layer(layer, m, setting)
        e[m] = weighted_output_error(layer, Wq, layer.eval_x, layer.eval_text, 22.4)
    assert e["gptq"] < e["rtn"]
    assert e["veq-ma"] < 0.95 * e["gptq"]  # measured ~10 % lower on held-out tokens


def test_veq_me_never_worse_than_awq_on_calibration_objective(layer):
    # ME optimises the importance-weighted loss; on this layer it picks the same grid point as AWQ
    # (see reports/veq.md) — this test pins the weaker property that holds by construction.
    _, info_awq = quantize_layer(layer, "awq", "W3A16")
    _, info_me = quantize_layer(layer, "veq-me", "W3A16")
    assert min(info_me["loss_curve"]) <= info_me["loss_curve"][round(info_awq["ratio"] * 20)] + 1e-12
    assert info_me["importance"] != info_awq["importance"]


def test_rank_deficient_expert_needs_damping():
    g = torch.Generator().manual_seed(0)
    W = torch.randn(16, 64, generator=g)
    X = torch.randn(20, 64, generator=g)  # 20 tokens < 64 channels: H~ has rank 20
    c = torch.rand(20, generator=g) * 22.4
    st = parse_setting("W4A16")
    Wq, info = gptq_expert(W, X, c, st)
    assert info["rank_deficient"] and info["damp"] == 0.1 and info["status"] == "ok"
    assert torch.isfinite(Wq).all()
    # without damping the Cholesky of the singular H~ fails and GPTQ falls back to RTN
    _, info0 = gptq_expert(W, X, c, st, percdamp=0.0, percdamp_deficient=0.0)
    assert info0["status"].startswith("rtn-fallback")
