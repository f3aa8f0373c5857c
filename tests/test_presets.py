"""Shape presets: contract names, hand-checked parameter counts, HF-config conversion."""
import pytest

from qesim.errors import InputError
from qesim.graph.presets import CONTRACT_NAMES, ModelSpec, get_spec, preset_names, spec_from_hf_config


def test_contract_names_present():
    names = preset_names()
    for n in ("llama2-7b", "opt-6.7b", "qwen2vl-2b", "qwen2vl-7b", "qwen2vl-72b", "internvl2-2b",
              "internvl2-8b", "smollm2-135m", "minilm-l6"):
        assert n in names
    assert names[: len(CONTRACT_NAMES)] == list(CONTRACT_NAMES)
    for n in names:
        s = get_spec(n)
        assert s.sources, n
        assert s.heads % s.kv_heads == 0


def test_unknown_model_lists_names():
    with pytest.raises(InputError) as e:
        get_spec("gpt-5")
    msg = str(e.value)
    assert "gpt-5" in msg and "llama2-7b" in msg and "minilm-l6" in msg
    assert get_spec("LLaMA2-7B").name == "llama2-7b"


def test_llama2_7b_counts():
    s = get_spec("llama2-7b")
    assert s.layer_linear_weights() == 4 * 4096**2 + 3 * 4096 * 11008
    # 32 layers (linears + 2 rmsnorm) + final norm + embedding + untied lm_head
    expect = 32 * (4 * 4096**2 + 3 * 4096 * 11008 + 2 * 4096) + 4096 + 2 * 32000 * 4096
    assert s.param_count() == expect == 6_738_415_616


def test_qwen2vl_7b_and_smollm2_counts():
    q = get_spec("qwen2vl-7b")
    assert q.kv_out == 512 and q.q_out == 3584
    assert abs(q.param_count() - 7.6e9) / 7.6e9 < 0.01
    s = get_spec("smollm2-135m")
    # measured linear shapes (models-and-data.md): q/o 576x576, k/v 576->192, gate/up 576->1536, down 1536->576
    assert s.linear_shapes() == {"q_proj": (576, 576), "k_proj": (576, 192), "v_proj": (576, 192),
                                 "o_proj": (576, 576), "gate_proj": (576, 1536), "up_proj": (576, 1536),
                                 "down_proj": (1536, 576)}
    assert s.param_count() == 134_515_008  # "134.5M params", tied embeddings counted once


def test_opt_and_minilm_counts():
    o = get_spec("opt-6.7b")
    assert abs(o.param_count() - 6.66e9) / 6.66e9 < 0.005
    m = get_spec("minilm-l6")
    # 22.7M measured includes the 384x384 pooler (147,840 params) which the spec leaves out
    assert m.param_count() + 384 * 384 + 384 == 22_713_216
    assert not m.lm_head and not m.causal and m.layout == "post_norm"


def test_internvl2_2b_verified_dims():
    s = get_spec("internvl2-2b")
    assert (s.hidden, s.vocab, s.layers, s.heads, s.kv_heads, s.intermediate) == (2048, 92553, 24, 16, 8, 8192)
    # wqkv of internlm2-1.8b prints as 2048 -> 4096 = q (16x128) + k, v (8x128 each)
    assert s.q_out + 2 * s.kv_out == 4096
    assert not s.unverified and any("internlm2-chat-1_8b" in src for src in s.sources)


def test_moe_field_and_registration():
    from qesim.graph.presets import MoESpec, register_preset

    base = get_spec("smollm2-135m")
    moe = base.model_copy(update={"name": "toy-moe", "moe": MoESpec(experts=4, top_k=1, moe_intermediate=64)})
    register_preset(moe)
    try:
        assert "toy-moe" in preset_names() and preset_names()[: len(CONTRACT_NAMES)] == list(CONTRACT_NAMES)
        with pytest.raises(ValueError, match="already exists"):
            register_preset(moe)
    finally:
        from qesim.graph import presets as P
        P._PRESETS.pop("toy-moe", None)


def test_spec_validation():
    with pytest.raises(ValueError):
        ModelSpec(name="x", hidden=64, intermediate=128, layers=1, heads=6, kv_heads=4, head_dim=8, vocab=10)


def test_spec_from_hf_dicts():
    s = spec_from_hf_config({"model_type": "llama", "hidden_size": 576, "intermediate_size": 1536,
                             "num_hidden_layers": 30, "num_attention_heads": 9, "num_key_value_heads": 3,
                             "vocab_size": 49152, "hidden_act": "silu", "tie_word_embeddings": True})
    ref = get_spec("smollm2-135m")
    assert s.param_count() == ref.param_count() and s.head_dim == 64 and s.tied_embeddings
    b = spec_from_hf_config({"model_type": "bert", "hidden_size": 384, "intermediate_size": 1536,
                             "num_hidden_layers": 6, "num_attention_heads": 12, "vocab_size": 30522,
                             "hidden_act": "gelu", "max_position_embeddings": 512, "type_vocab_size": 2})
    assert b.param_count() == get_spec("minilm-l6").param_count()
    with pytest.raises(InputError, match="unsupported model_type"):
        spec_from_hf_config({"model_type": "mamba"})
    with pytest.raises(InputError, match="num_hidden_layers"):
        spec_from_hf_config({"model_type": "llama", "hidden_size": 8, "num_attention_heads": 2,
                             "intermediate_size": 16, "vocab_size": 10})


def test_spec_from_hf_config_objects():
    tr = pytest.importorskip("transformers")
    s = spec_from_hf_config(tr.Qwen2Config(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                                           num_attention_heads=28, num_key_value_heads=4, vocab_size=152064,
                                           tie_word_embeddings=False))
    assert s.param_count() == get_spec("qwen2vl-7b").param_count()
    o = spec_from_hf_config(tr.OPTConfig(hidden_size=4096, ffn_dim=16384, num_hidden_layers=32,
                                         num_attention_heads=32, vocab_size=50272, word_embed_proj_dim=4096))
    assert o.param_count() == get_spec("opt-6.7b").param_count()
    l = spec_from_hf_config(tr.LlamaConfig(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
                                           num_attention_heads=32, vocab_size=32000))
    assert l.param_count() == get_spec("llama2-7b").param_count()
    b = spec_from_hf_config(tr.BertConfig(hidden_size=384, intermediate_size=1536, num_hidden_layers=6,
                                          num_attention_heads=12))
    assert b.param_count() == get_spec("minilm-l6").param_count()


def test_spec_from_vlm_configs():
    tr = pytest.importorskip("transformers")
    c = tr.Qwen2VLConfig(text_config=dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                                          num_attention_heads=12, num_key_value_heads=2, vocab_size=151936,
                                          tie_word_embeddings=True))
    s = spec_from_hf_config(c)
    assert s.param_count() == get_spec("qwen2vl-2b").param_count() and s.qkv_bias
    iv = {"model_type": "internvl_chat", "vision_config": {"hidden_size": 1024, "num_hidden_layers": 24},
          "llm_config": {"model_type": "internlm2", "hidden_size": 2048, "intermediate_size": 8192,
                         "num_hidden_layers": 24, "num_attention_heads": 16, "num_key_value_heads": 8,
                         "vocab_size": 92553, "tie_word_embeddings": False, "bias": False}}
    assert spec_from_hf_config(iv).param_count() == get_spec("internvl2-2b").param_count()
