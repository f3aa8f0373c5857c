import json

import pytest

from qesim.errors import InputError
from qesim.graph.ir import AttentionOp, LayerGraph, LinearOp, LowRankAdapters, RoutingStats
from qesim.graph.settings import linear_fields, method_adapters, parse_setting


def _graph(**kw):
    s = parse_setting("W4A8")
    op = LinearOp(name="fc", in_features=64, out_features=32, tokens=16, adapters=method_adapters("qe"), **linear_fields(s))
    return LayerGraph(name="g", model="toy", stage="prefill", seq_len=16, context_len=0, setting="W4A8", method="qe", ops=[op], **kw)


def test_roundtrip(tmp_path):
    g = _graph()
    p = tmp_path / "g.json"
    g.to_json(p)
    g2 = LayerGraph.from_json(p)
    assert g2 == g
    assert g2.ops[0].adapters.routed_experts == 8 and g2.ops[0].adapters.shared_rank == 32


def test_settings():
    s = parse_setting("w3a16")
    assert (s.w_bits, s.a_bits, s.group_size, s.weight_symmetric) == (3, 16, 128, False)
    s = parse_setting("W4A6")
    assert (s.group_size, s.weight_symmetric, s.act_granularity) == (-1, True, "per_token_dynamic")
    assert parse_setting("W16A16").is_fp16
    with pytest.raises(InputError, match="W<bits>A<bits>"):
        parse_setting("int4")
    with pytest.raises(InputError, match="unknown method"):
        method_adapters("foo")


def test_bad_graph_file_names_file_and_field(tmp_path):
    data = json.loads(_graph().to_json())
    data["ops"][0]["in_features"] = -3
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(data))
    with pytest.raises(InputError) as e:
        LayerGraph.from_json(p)
    msg = str(e.value)
    assert "bad.json" in msg and "ops.0.linear.in_features" in msg and "greater than or equal to 1" in msg
    (tmp_path / "nj.json").write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        LayerGraph.from_json(tmp_path / "nj.json")


def test_validation_rules():
    with pytest.raises(ValueError, match="multiple of kv_heads"):
        AttentionOp(name="a", heads=6, kv_heads=4, head_dim=8, q_len=1, kv_len=4)
    with pytest.raises(ValueError, match="routed_rank"):
        LowRankAdapters(routed_experts=4)
    with pytest.raises(ValueError, match="routed_experts entries"):
        LowRankAdapters(routed_experts=2, routed_rank=4, routing=RoutingStats(tokens_per_expert=[1, 2, 3]))
    with pytest.raises(ValueError, match="duplicate op name"):
        op = LinearOp(name="x", in_features=4, out_features=4, tokens=1)
        LayerGraph(name="g", model="m", stage="decode", seq_len=1, context_len=3, ops=[op, op])
