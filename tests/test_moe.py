"""MoE presets, graph, and cost model (issue 6)."""

import math
import subprocess
import sys

import pytest

from qesim.commands.moe import simulate_touched
from qesim.graph.builders import build_graph
from qesim.graph.ir import LayerGraph, MoEOp
from qesim.graph.presets import get_spec
from qesim.hw.loader import load_hw
from qesim.perf.model import estimate_graph, expected_touched, plan_graph
from qesim.perf.moe import moe_touched, moe_weight_bytes, plan_moe


@pytest.fixture(scope="module")
def u280():
    return load_hw("flightllm-u280")


def test_param_counts_match_published_totals():
    kimi, qwen = get_spec("kimi-vl-a3b"), get_spec("qwen3-vl-30b-a3b")
    # Moonlight-16B-A3B: ~16B total, ~3B active (2.8-3B per the Kimi-VL report)
    assert 15.5e9 < kimi.param_count() < 16.5e9
    assert 2.7e9 < kimi.active_param_count() < 3.1e9
    # Qwen3-30B-A3B family: 30.5B total, 3.3B activated (model card)
    assert abs(qwen.param_count() - 30.5e9) < 0.1e9
    assert abs(qwen.active_param_count() - 3.3e9) < 0.1e9


@pytest.mark.parametrize("E,k,s", [(64, 6, 1), (64, 6, 2), (64, 6, 8), (128, 8, 4), (128, 8, 32), (8, 2, 3)])
def test_expected_touched_matches_random_topk_simulation(E, k, s):
    sim = simulate_touched(E, k, s, trials=3000, seed=1)
    assert expected_touched(E, s, k) == pytest.approx(sim, rel=0.02)


def test_expected_touched_with_measured_freqs_tracks_simulation():
    # skewed routing: a few hot experts; the slot-wise model is an approximation (top-k draws
    # are without replacement), so allow 5 %
    E, k = 16, 2
    w = [4.0] * 4 + [1.0] * 12
    p = [x / sum(w) for x in w]
    for s in (1, 4, 16):
        sim = simulate_touched(E, k, s, trials=4000, seed=2, freqs=p)
        assert expected_touched(E, s, k, p) == pytest.approx(sim, rel=0.05)
    # skew lowers the number of experts touched vs uniform
    assert expected_touched(E, 4, k, p) < expected_touched(E, 4, k)


@pytest.mark.parametrize("model", ["kimi-vl-a3b", "qwen3-vl-30b-a3b"])
@pytest.mark.parametrize("setting", ["W4A8", "W3A16"])
def test_decode_loads_only_touched_experts(model, setting, u280):
    g = build_graph(model, stage="decode", context_len=512, setting=setting)
    op = next(o for o in g.ops if isinstance(o, MoEOp))
    spec = get_spec(model)
    assert op.repeat == spec.moe.moe_layers(spec.layers)
    assert moe_touched(op) == pytest.approx(spec.moe.top_k)  # one token touches exactly k experts
    s = plan_moe(op, u280, "decode")
    wb = moe_weight_bytes(op, u280)
    expect = wb["gate"] + wb["shared"] + spec.moe.top_k * wb["expert"]
    # decode activations stay on chip on this config: every byte loaded is a weight byte
    assert s.load_bytes["hbm"] == pytest.approx(expect, rel=1e-9)
    assert s.load_bytes["hbm"] < 0.2 * (wb["all_routed"] + wb["shared"] + wb["gate"])
    # forcing more touched experts adds exactly their bytes
    s2 = plan_moe(op.model_copy(update={"touched_experts": spec.moe.top_k + 3.0}), u280, "decode")
    assert s2.load_bytes["hbm"] - s.load_bytes["hbm"] == pytest.approx(3 * wb["expert"], rel=1e-9)


def test_expert_bytes_scale_with_weight_bits(u280):
    g16 = build_graph("qwen3-vl-30b-a3b", stage="decode", setting="W16A16")
    g4 = build_graph("qwen3-vl-30b-a3b", stage="decode", setting="W4A8")
    e16 = moe_weight_bytes(next(o for o in g16.ops if o.kind == "moe"), u280)["expert"]
    e4 = moe_weight_bytes(next(o for o in g4.ops if o.kind == "moe"), u280)["expert"]
    assert e16 == 3 * 2048 * 768 * 2
    # 4-bit weights + one fp16 scale per output channel (per-channel symmetric W-A setting)
    assert e4 == (3 * 2048 * 768 * 4 + (2 * 768 + 2048) * 16) / 8


def test_prefill_touches_almost_all_experts_and_costs_more_macs(u280):
    g = build_graph("kimi-vl-a3b", stage="prefill", seq_len=128, setting="W4A8")
    op = next(o for o in g.ops if isinstance(o, MoEOp))
    assert moe_touched(op) == pytest.approx(64 * (1 - (1 - 6 / 64) ** 128))
    s = plan_moe(op, u280, "prefill")
    assert s.macs >= op.macs * 0.99  # at least the useful MACs (padding / ceil may add)
    # skewed measured routing touches fewer experts and loads fewer bytes
    p = [0.5 / 4] * 4 + [0.5 / 60] * 60
    skew = op.model_copy(update={"expert_freqs": p, "tokens": 4})
    uni = op.model_copy(update={"tokens": 4})
    assert moe_touched(skew) < moe_touched(uni)
    assert plan_moe(skew, u280, "prefill").load_bytes["hbm"] < plan_moe(uni, u280, "prefill").load_bytes["hbm"]


def test_mla_kv_cache_bytes_are_latent_width(u280):
    g = build_graph("kimi-vl-a3b", stage="decode", context_len=512, setting="W4A8", kv_bits=16)
    att = next(o for o in g.ops if o.kind == "attention")
    gs = plan_graph(g, u280)
    sch = next(s for s in gs.ops if s.name == "layer.attention")
    # (kv_lora_rank 512 + qk_rope 64) fp16 elements per cached token per layer
    assert sch.load_bytes["hbm"] == pytest.approx(576 * att.kv_len * 2)
    names = {o.name for o in g.ops}
    assert {"layer.q_proj", "layer.kv_a_proj", "layer.kv_b_proj", "layer.o_proj", "layer.moe"} <= names
    assert "layer.k_proj" not in names
    # the one dense layer (first_k_dense_replace = 1) keeps its dense MLP
    assert next(o for o in g.ops if o.name == "layer.gate_proj").repeat == 1


def test_moe_graph_roundtrips_json(tmp_path):
    g = build_graph("qwen3-vl-30b-a3b", stage="prefill", seq_len=16, setting="W3A16")
    p = tmp_path / "g.json"
    g.to_json(p)
    g2 = LayerGraph.from_json(p)
    assert g2 == g
    assert not any(o.name.startswith("layer.gate_proj") for o in g.ops)  # all 48 layers are MoE


def test_moe_rejects_adapter_methods_and_bad_freqs():
    from qesim.errors import InputError

    with pytest.raises(InputError):
        build_graph("kimi-vl-a3b", stage="decode", setting="W4A8", method="qe")
    with pytest.raises(ValueError):
        MoEOp(name="m", tokens=1, hidden=8, expert_intermediate=4, experts=4, top_k=2, expert_freqs=[0.5, 0.5, 0.5, 0.5])
    with pytest.raises(ValueError):
        MoEOp(name="m", tokens=1, hidden=8, expert_intermediate=4, experts=4, top_k=5)


def test_quantized_moe_is_faster_and_decode_is_memory_bound(u280):
    for model in ("kimi-vl-a3b", "qwen3-vl-30b-a3b"):
        fp = estimate_graph(build_graph(model, stage="decode", context_len=512), u280)
        q = estimate_graph(build_graph(model, stage="decode", context_len=512, setting="W4A8"), u280)
        assert q.cycles < fp.cycles / 2
        assert fp.bound == "hbm"


@pytest.mark.parametrize("model", ["kimi-vl-a3b", "qwen3-vl-30b-a3b"])
def test_cli_estimate_runs(model):
    from qesim.cli import main

    for args in (["--setting", "W3A16", "--stage", "prefill", "--seq-len", "128"],
                 ["--setting", "W4A8", "--stage", "decode", "--context", "512"]):
        assert main(["estimate", "--model", model, "--hw", "flightllm-u280", "--json", *args]) == 0


@pytest.mark.parametrize("setting", ["W16A16", "W3A16", "W4A8"])
def test_prefill_streams_each_touched_expert_about_once(setting, u280):
    g = build_graph("qwen3-vl-30b-a3b", stage="prefill", seq_len=128, setting=setting)
    op = next(o for o in g.ops if isinstance(o, MoEOp))
    s = plan_moe(op, u280, "prefill")
    wb = moe_weight_bytes(op, u280)
    weights = wb["gate"] + moe_touched(op) * wb["expert"]
    # weights once + token activations (in and out of every expert) — never a per-token weight re-read
    assert weights <= s.load_bytes["hbm"] < weights * 1.3
