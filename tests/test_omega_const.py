"""QE's / ASER's per-linear omega: the constant vector operand of an SFU eltwise_mul is charged.

Hand-computed bytes on the toy config (1 GHz, 16 B/cycle HBM, everything in HBM)."""

import pytest
from pydantic import ValidationError

from qesim.graph.builders import build_graph
from qesim.graph.ir import LayerGraph, LinearOp, SfuOp
from qesim.hw.loader import load_hw
from qesim.perf.model import estimate_graph


def _g(ops, rows=16):
    return LayerGraph(name="t", model="t", stage="prefill", seq_len=rows, context_len=0, ops=ops)


def _omega(const=64, rows=16, width=64):
    return SfuOp(name="q_proj_omega", func="eltwise_mul", rows=rows, width=width, const_elems=const)


def test_standalone_omega_bytes_by_hand(toy_hw):
    hw = toy_hw.with_updates({"policy.count_channel_scales": True})
    # x 16x64 fp16 in (2048 B) + out (2048 B) + omega 64 x fp16 (128 B) = 4224 B
    assert estimate_graph(_g([_omega()]), hw).ops.iloc[0].bytes == 4224
    assert estimate_graph(_g([_omega(const=0)]), hw).ops.iloc[0].bytes == 4096
    # channel scales not charged by the config -> neither is omega (it is charged like one)
    assert estimate_graph(_g([_omega()]), toy_hw).ops.iloc[0].bytes == 4096
    # activations on chip: only the omega vector still comes from (weight) memory
    on = hw.with_updates({"policy.prefill.activations_offchip": False})
    assert estimate_graph(_g([_omega()]), on).ops.iloc[0].bytes == 128


def test_fused_omega_keeps_its_constant(toy_hw):
    hw = toy_hw.with_updates({"policy.count_channel_scales": True, "policy.sfu_fusion": True})
    fc = LinearOp(name="fc", in_features=64, out_features=64, tokens=16)  # fp16: 8192 + 2048 + 2048 B
    e = estimate_graph(_g([fc, _omega()]), hw)
    assert list(e.ops.name) == ["fc"]  # fused into fc
    # fc's output store (2048 B) is dropped, omega streams its input from the buffer (0 B), stores
    # 2048 B and loads its 64 x 2 B vector: 12288 - 2048 + 2048 + 128 = 12416 B
    assert e.ops.iloc[0].bytes == 12416
    assert estimate_graph(_g([fc, _omega(const=0)]), hw).ops.iloc[0].bytes == 12288


def test_const_elems_validation():
    with pytest.raises(ValidationError, match="const_elems"):
        _omega(const=32)
    with pytest.raises(ValidationError):
        _omega(const=-1)


@pytest.mark.parametrize("hw_name", ["flightllm-u280", "qe-paper-npu"])
def test_qe_graph_charges_every_omega_vector(hw_name):
    """The exported QE graph's total bytes exceed the same graph with the constants removed by
    exactly sum(width x 2 B x repeat) over the omega ops (when the preset charges channel scales)."""
    hw = load_hw(hw_name)
    for stage, kw in (("prefill", dict(seq_len=128)), ("decode", dict(seq_len=1, context_len=128))):
        g = build_graph("smollm2-135m", stage=stage, setting="W4A8", method="qe", **kw)
        om = [op for op in g.ops if op.kind == "sfu" and op.name.endswith("_omega")]
        assert len(om) == 7 and all(op.const_elems == op.width for op in om)  # q, k, v, o, gate, up, down
        bare = g.model_copy(update=dict(ops=[op.model_copy(update=dict(const_elems=0)) if op in om else op
                                             for op in g.ops]))
        want = sum(op.width * 2 * op.repeat for op in om) if hw.policy.count_channel_scales else 0
        got = sum(estimate_graph(g, hw).bytes_by_memory.values()) - sum(estimate_graph(bare, hw).bytes_by_memory.values())
        assert got == pytest.approx(want, rel=1e-9, abs=1e-6)
    # SmolLM2-135M: 30 layers x (6 x 576 + 1536) x 2 B = 299,520 B
    assert sum(op.width * 2 * op.repeat for op in om) == 299520


def test_tp_shard_splits_the_constant():
    from qesim.graph.parallel import tp_shard

    g = build_graph("smollm2-135m", stage="prefill", seq_len=128, setting="W4A8", method="qe")
    sh, _ = tp_shard(g, 3)  # 9 heads, 3 kv heads
    om = [op for op in sh.ops if op.kind == "sfu" and op.const_elems]
    assert om and all(op.const_elems == op.width for op in om)
