"""Model shapes: :class:`ModelSpec` (with its optional :class:`MoESpec` and :class:`MLASpec`
parts), sizes in *elements*, never precisions.

The presets that use these types live in :mod:`qesim.graph.presets`; the conversion from HF
``config.json`` files in :mod:`qesim.graph.hf`. Both import this module, so neither imports the
other inside a function (``qesim.graph.presets`` re-exports the three names).
"""

from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, model_validator


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
