"""Whole-model graph builders and the single-linear graph."""
import pytest

from qesim.errors import InputError
from qesim.graph.builders import build_graph, single_linear_graph
from qesim.graph.ir import LayerGraph, LowRankAdapters, RoutingStats


def _names(g):
    return [o.name for o in g.ops]


def _op(g, name):
    return next(o for o in g.ops if o.name == name)


def test_llama_op_order_w16a16():
    g = build_graph("llama2-7b", stage="prefill", seq_len=128)
    assert _names(g) == [
        "embedding", "layer.input_norm", "layer.q_proj", "layer.k_proj", "layer.v_proj", "layer.rope",
        "layer.attention", "layer.o_proj", "layer.attn_residual", "layer.post_attn_norm", "layer.gate_proj",
        "layer.up_proj", "layer.act", "layer.down_proj", "layer.mlp_residual", "final_norm", "lm_head"]
    assert all(o.func != "quantize" for o in g.ops if o.kind == "sfu")
    assert _op(g, "layer.act").func == "silu_mul" and _op(g, "layer.act").inputs == 2
    assert _op(g, "layer.attn_residual").inputs == 2
    assert g.meta["hidden"] == 4096 and g.meta["layers"] == 32


def test_w4a8_inserts_quantize_ops():
    # one shared quantize per input (QE's per-linear omega is tested below; switched off here)
    g = build_graph("llama2-7b", stage="prefill", seq_len=64, setting="W4A8", method="qe", input_scaling=False)
    n = _names(g)
    for q, lin in (("layer.attn_in_quant", "layer.q_proj"), ("layer.o_quant", "layer.o_proj"),
                   ("layer.mlp_in_quant", "layer.gate_proj"), ("layer.down_quant", "layer.down_proj")):
        assert n.index(q) == n.index(lin) - 1
        op = _op(g, q)
        assert op.func == "quantize" and op.out_bits == 8 and op.rows == 64 and op.repeat == 32
    assert _op(g, "layer.down_quant").width == 11008
    for name in ("layer.q_proj", "layer.down_proj"):
        op = _op(g, name)
        assert (op.weight_bits, op.act_bits, op.act_granularity) == (4, 8, "per_token_dynamic")
        assert op.adapters.routed_experts == 8 and op.adapters.shared_rank == 32
    head, emb = _op(g, "lm_head"), _op(g, "embedding")
    assert (head.weight_bits, head.act_bits, head.adapters) == (16, 16, None) and emb.bits == 16
    # weight-only setting: no activation quantizers, g128 asymmetric weights
    g = build_graph("llama2-7b", stage="decode", context_len=10, setting="W3A16", method="lqer")
    assert not any(o.kind == "sfu" and o.func == "quantize" for o in g.ops)
    q = _op(g, "layer.q_proj")
    assert (q.weight_bits, q.group_size, q.weight_symmetric) == (3, 128, False) and q.adapters.shared_rank == 64


def test_prefill_vs_decode_tokens():
    p = build_graph("qwen2vl-7b", stage="prefill", seq_len=100, context_len=28, batch=3)
    assert _op(p, "layer.q_proj").tokens == 300
    a = _op(p, "layer.attention")
    assert (a.q_len, a.kv_len, a.batch) == (100, 128, 3)
    assert _op(p, "lm_head").tokens == 3 and (p.seq_len, p.context_len) == (100, 28)
    d = build_graph("qwen2vl-7b", stage="decode", seq_len=999, context_len=512, batch=4)
    assert _op(d, "layer.down_proj").tokens == 4
    a = _op(d, "layer.attention")
    assert (a.q_len, a.kv_len) == (1, 513)
    assert (d.seq_len, d.context_len, d.batch) == (1, 512, 4)
    assert _op(d, "lm_head").tokens == 4


def test_gqa_shapes_and_tied_head():
    g = build_graph("qwen2vl-2b", stage="decode", context_len=5)
    assert (_op(g, "layer.k_proj").out_features, _op(g, "layer.v_proj").out_features) == (256, 256)
    assert _op(g, "layer.q_proj").out_features == 1536
    a = _op(g, "layer.attention")
    assert (a.heads, a.kv_heads, a.head_dim) == (12, 2, 128)
    assert _op(g, "lm_head").weight_shared_with == "embedding"
    assert _op(build_graph("qwen2vl-7b", stage="decode"), "lm_head").weight_shared_with is None
    s = build_graph("smollm2-135m", stage="prefill", seq_len=16)
    assert _op(s, "layer.k_proj").out_features == 192 and _op(s, "layer.rope").width == 12 * 64


def test_density_and_kv_bits():
    g = build_graph("llama2-7b", stage="decode", context_len=100, setting="W8A8", density=0.5, kv_bits=8)
    assert _op(g, "layer.q_proj").weight_density == 0.5 and _op(g, "lm_head").weight_density == 1.0
    assert _op(g, "layer.attention").kv_bits == 8
    assert _op(build_graph("llama2-7b", stage="decode"), "layer.attention").kv_bits == 16
    # fp16: method adapters are not attached (nothing is quantized)
    g = build_graph("llama2-7b", stage="decode", method="qe")
    assert _op(g, "layer.q_proj").adapters is None and g.meta["adapters_attached"] is False


def test_overrides():
    ad = LowRankAdapters(shared_rank=16, routed_experts=4, routed_rank=8,
                         routing=RoutingStats(tokens_per_expert=[5, 1, 1, 1]))
    g = build_graph("smollm2-135m", stage="prefill", seq_len=8, setting="W4A8", method="qe",
                    linear_overrides={"layer.q_proj": {"adapters": ad}, "lm_head": {"weight_bits": 8}})
    assert _op(g, "layer.q_proj").adapters.routing.tokens_per_expert == [5, 1, 1, 1]
    assert _op(g, "layer.k_proj").adapters.routed_experts == 8
    assert _op(g, "lm_head").weight_bits == 8
    with pytest.raises(InputError, match="unknown op"):
        build_graph("smollm2-135m", stage="prefill", linear_overrides={"layer.qproj": {"weight_bits": 4}})
    with pytest.raises(InputError, match="weight_bits"):
        build_graph("smollm2-135m", stage="prefill", linear_overrides={"layer.q_proj": {"weight_bits": 0}})
    with pytest.raises(InputError, match="only name linear"):
        build_graph("smollm2-135m", stage="prefill", linear_overrides={"layer.rope": {"weight_bits": 4}})


def test_bert_layout():
    g = build_graph("minilm-l6", stage="prefill", seq_len=32, batch=2, setting="W4A8")
    n = _names(g)
    assert "lm_head" not in n and "layer.rope" not in n and "final_norm" not in n
    assert n.index("layer.attn_residual") < n.index("layer.post_attn_norm") < n.index("layer.fc1")
    assert n[-1] == "layer.out_norm"
    assert _op(g, "layer.attention").causal is False
    assert _op(g, "layer.act").func == "gelu" and _op(g, "layer.fc1").tokens == 64
    with pytest.raises(InputError, match="encoder"):
        build_graph("minilm-l6", stage="decode", context_len=4)


def test_opt_layout():
    g = build_graph("opt-6.7b", stage="prefill", seq_len=16)
    n = _names(g)
    assert n[:3] == ["embedding", "pos_embedding", "embed_pos_add"]
    assert _op(g, "layer.act").func == "relu" and "layer.fc2" in n and "layer.rope" not in n
    assert _op(g, "lm_head").weight_shared_with == "embedding"


def test_bad_inputs():
    for kw in (dict(stage="train"), dict(stage="prefill", seq_len=0), dict(stage="decode", batch=0),
               dict(stage="decode", context_len=-1), dict(stage="prefill", density=0.0),
               dict(stage="prefill", setting="int4"), dict(stage="prefill", method="foo")):
        with pytest.raises(InputError):
            build_graph("llama2-7b", **kw)
    with pytest.raises(InputError, match="known models"):
        build_graph("nope", stage="prefill")


def test_json_roundtrip(tmp_path):
    g = build_graph("internvl2-8b", stage="decode", context_len=77, setting="W4A6", method="qe")
    p = tmp_path / "g.json"
    g.to_json(p)
    assert LayerGraph.from_json(p) == g


def test_single_linear():
    g = single_linear_graph(4096, 11008, tokens=128, setting="W4A8", method="qe")
    assert len(g.ops) == 1
    op = g.ops[0]
    assert (op.in_features, op.out_features, op.tokens, op.act_bits) == (4096, 11008, 128, 8)
    assert op.adapters.routed_experts == 8 and (g.batch, g.seq_len) == (1, 128)
    d = single_linear_graph(4096, 4096, tokens=1, stage="decode", name="fc")
    assert d.ops[0].name == "fc" and d.ops[0].adapters is None and d.stage == "decode"
    with pytest.raises(InputError):
        single_linear_graph(0, 4, tokens=1)


# --- property-based: random small specs and settings -------------------------------------------
from hypothesis import given, settings as hsettings, strategies as st  # noqa: E402

from qesim.graph.presets import ModelSpec  # noqa: E402


@st.composite
def _specs(draw):
    kv = draw(st.integers(1, 4))
    heads = kv * draw(st.integers(1, 4))
    head_dim = draw(st.sampled_from([8, 16, 32]))
    plain = draw(st.booleans())
    encoder = plain and draw(st.booleans())
    return ModelSpec(
        name="fuzz", hidden=draw(st.integers(8, 256)), intermediate=draw(st.integers(8, 512)),
        layers=draw(st.integers(1, 6)), heads=heads, kv_heads=kv, head_dim=head_dim,
        vocab=draw(st.integers(2, 1000)), norm="layernorm" if plain else "rmsnorm",
        mlp="plain" if plain else "gated", act=draw(st.sampled_from(["gelu", "relu"])) if plain else
        draw(st.sampled_from(["silu", "gelu"])), tied_embeddings=draw(st.booleans()) and not encoder,
        position="learned" if plain else "rope", max_positions=4096 if plain else 0,
        layout="post_norm" if encoder else "pre_norm", causal=not encoder, lm_head=not encoder,
    )


@hsettings(max_examples=60, deadline=None)
@given(spec=_specs(), stage=st.sampled_from(["prefill", "decode"]), seq=st.integers(1, 300),
       ctx=st.integers(0, 2000), batch=st.integers(1, 8), w=st.sampled_from([2, 3, 4, 8, 16]),
       a=st.sampled_from([4, 6, 8, 16]), method=st.sampled_from(["none", "rtn", "lqer", "qe"]),
       density=st.floats(0.1, 1.0))
def test_fuzz_build_graph(spec, stage, seq, ctx, batch, w, a, method, density):
    if not spec.causal:
        stage, ctx = "prefill", 0
    g = build_graph(spec, stage=stage, seq_len=seq, context_len=ctx, batch=batch, setting=f"W{w}A{a}",
                    method=method, density=density)
    LayerGraph.model_validate(g.model_dump())  # re-validates
    q_len = seq if stage == "prefill" else 1
    M = batch * q_len
    assert (g.seq_len, g.context_len, g.batch) == (q_len, ctx, batch)
    fp16 = w >= 16 and a >= 16
    for op in g.ops:
        if op.name.startswith("layer."):
            assert op.repeat == spec.layers
        if op.kind == "linear" and op.name.startswith("layer."):
            assert op.tokens == M and op.weight_density == density
            assert op.weight_bits == (16 if fp16 else w) and op.act_bits == (16 if fp16 else a)
            assert (op.adapters is not None) == (method in ("lqer", "qe") and not fp16)
        elif op.kind == "attention":
            assert (op.q_len, op.kv_len, op.batch) == (q_len, ctx + q_len, batch)
            assert op.causal == spec.causal
        elif op.kind == "sfu":
            assert op.rows in (M, batch)
        elif op.kind == "embedding":
            assert op.tokens == M
    nq = sum(1 for op in g.ops if op.kind == "sfu" and op.func == "quantize")
    n_lin = sum(1 for op in g.ops if op.kind == "linear" and op.name != "lm_head")
    scaled = method == "qe" and not fp16  # QE: a quantize per linear (its own omega)
    assert nq == ((n_lin if scaled else 4) if a < 16 and not fp16 else 0)
    assert sum(1 for op in g.ops if op.name.endswith("_omega")) == (n_lin if scaled else 0)
    heads = [op for op in g.ops if op.name == "lm_head"]
    assert len(heads) == int(spec.lm_head)
    if heads:
        assert heads[0].tokens == batch and heads[0].weight_bits == 16
    assert LayerGraph.model_validate_json(g.to_json()) == g


def test_cli_graph(tmp_path, capsys):
    from qesim.cli import main

    out = tmp_path / "g.json"
    assert main(["graph", "build", "--model", "smollm2-135m", "--stage", "decode", "--context", "64",
                 "--setting", "W4A8", "--method", "qe", "--out", str(out)]) == 0
    g = LayerGraph.from_json(out)
    assert g.stage == "decode" and g.context_len == 64 and g.method == "qe"
    assert main(["graph", "presets"]) == 0
    assert "smollm2-135m" in capsys.readouterr().out
    assert main(["graph", "schema"]) == 0
    assert '"LinearOp"' in capsys.readouterr().out
    assert main(["graph", "build", "--model", "nope", "--stage", "prefill"]) == 2
    err = capsys.readouterr().err
    assert "unknown model" in err and "llama2-7b" in err


@pytest.mark.parametrize("name", ["llama2-7b", "opt-6.7b", "qwen2vl-2b", "qwen2vl-7b", "qwen2vl-72b",
                                  "internvl2-2b", "internvl2-8b", "smollm2-135m", "minilm-l6"])
def test_graph_weights_match_spec(name):
    from qesim.graph.presets import get_spec

    spec = get_spec(name)
    g = build_graph(name, stage="prefill", seq_len=4)
    lin = sum(o.in_features * o.out_features * o.repeat for o in g.ops
              if o.kind == "linear" and o.weight_shared_with is None)
    expect = spec.layers * spec.layer_linear_weights()
    if spec.lm_head and not spec.tied_embeddings:
        expect += spec.vocab * spec.hidden
    assert lin == expect
    emb = next(o for o in g.ops if o.name == "embedding")
    assert (emb.vocab, emb.hidden, emb.bits) == (spec.vocab, spec.hidden, 16)


def test_graph_op_name():
    from qesim.graph.builders import graph_op_name

    assert graph_op_name("model.layers.11.mlp.down_proj") == "layer.down_proj"
    assert graph_op_name("model.layers.0.self_attn.k_proj") == "layer.k_proj"
    assert graph_op_name("lm_head") == "lm_head"
    assert graph_op_name("model.decoder.layers.2.self_attn.out_proj") == "layer.o_proj"
    assert graph_op_name("model.decoder.layers.2.fc1") == "layer.fc1"
    assert graph_op_name("encoder.layer.5.attention.self.query") == "layer.q_proj"
    assert graph_op_name("encoder.layer.5.attention.output.dense") == "layer.o_proj"
    assert graph_op_name("encoder.layer.5.intermediate.dense") == "layer.fc1"
    assert graph_op_name("encoder.layer.5.output.dense") == "layer.fc2"
    assert graph_op_name("pooler.dense") is None
    assert graph_op_name("model.layers.0.attention.wqkv") is None
    # every mapped name of a preset is an op of its graph
    g = build_graph("minilm-l6", stage="prefill", seq_len=4)
    names = {o.name for o in g.ops}
    for m in ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
              "intermediate.dense", "output.dense"):
        assert graph_op_name("encoder.layer.0." + m) in names


def test_qe_and_aser_graphs_charge_a_per_linear_input_scaling():
    """QE's omega / ASER's smoothing differ per linear: per linear one eltwise_mul + its own quantize."""
    from qesim.hw.loader import load_hw
    from qesim.perf.model import estimate_graph

    for method in ("qe", "aser"):
        g = build_graph("smollm2-135m", stage="prefill", seq_len=128, setting="W4A8", method=method)
        names = [o.name for o in g.ops]
        for lin in ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"):
            om = names.index(f"layer.{lin}_omega")
            assert g.ops[om].func == "eltwise_mul" and g.ops[om + 1].func == "quantize"
            assert names.index(f"layer.{lin}") > om
        assert g.meta["input_scaling"] is True
        n_quant = sum(1 for o in g.ops if getattr(o, "func", None) == "quantize")
        assert n_quant == 7  # one per linear, vs 4 shared ones without the scaling
        off = build_graph("smollm2-135m", stage="prefill", seq_len=128, setting="W4A8", method=method,
                          input_scaling=False)
        assert sum(1 for o in off.ops if getattr(o, "func", None) == "quantize") == 4
        assert not any(o.name.endswith("_omega") for o in off.ops)
        hw = load_hw("qe-paper-npu")
        assert estimate_graph(g, hw).latency_s > estimate_graph(off, hw).latency_s
    w3 = build_graph("smollm2-135m", stage="decode", context_len=64, setting="W3A16", method="qe")
    assert sum(1 for o in w3.ops if o.name.endswith("_omega")) == 7  # weight-only: scaling, no quantize
    assert not any(getattr(o, "func", None) == "quantize" for o in w3.ops)
    plain = build_graph("smollm2-135m", stage="prefill", seq_len=128, setting="W4A8", method="lqer")
    assert not any(o.name.endswith("_omega") for o in plain.ops)
