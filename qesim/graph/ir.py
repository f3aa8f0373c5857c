"""Layer-graph IR: one op per node, in execution order, with enough to cost it on any hardware.

Units: every size is in *elements* (features, tokens, heads); every precision is in *bits*.
Bytes are never stored in the graph: the cost models derive them from elements x bits / 8.

An op that appears in every decoder layer is stored once with ``repeat = num_layers``; the
cost models multiply its cost by ``repeat``.  Bitwidths come from the quantizer config that
produced the graph (``LayerGraph.setting`` / ``LayerGraph.method``), never from a model dtype.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

from qesim.scalars import Count, Int, Num  # strict scalars, shared with the hardware schema

Stage = Literal["prefill", "decode"]

#: Activation quantization granularity. ``none`` = activations stay at ``act_bits`` as given
#: (16 = fp16) with no quantizer in the datapath.
ActGranularity = Literal["per_token_dynamic", "per_tensor_static", "none"]


# ---- documented maxima (elements) ------------------------------------------------------------
# Far above any real model (largest vocab ~2.6e5, hidden ~3e4, context ~1e7): they keep the
# tiling planner's work, which grows with each GEMM dimension, well under a second per op, and
# every derived count far from float overflow. A graph beyond them is refused naming the field.
MAX_FEATURES = 2**20  #: in/out features, hidden, intermediate, SFU vector width (elements)
MAX_TOKENS = 2**20  #: rows of one op call: batch x tokens per sequence (tokens)
MAX_CONTEXT = 2**24  #: KV-cache length / attention kv_len (tokens)
MAX_VOCAB = 2**24  #: rows of an embedding table
MAX_BATCH = 2**20  #: sequences in lock step
MAX_HEADS = 2**14
MAX_HEAD_DIM = 2**14
MAX_REPEAT = 2**16  #: times one op runs (layers)
MAX_EXPERTS = 2**16
MAX_RANK = 2**16
MAX_OPS = 4096  #: ops in one graph


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False, validate_assignment=True, strict=True,
                              allow_inf_nan=False)


#: Which part of a vision-language model an op belongs to (``qesim.graph.vision``): the vision
#: encoder (ViT), the merger/projector into the LLM's hidden size, or the language model.
Component = Literal["vision", "merger", "language"]


class _OpBase(_Strict):
    component: Component = Field(
        "language", description="model part the op belongs to: vision encoder, merger/projector or language model")


class RoutingStats(_Strict):
    """Measured routing of a routed-expert adapter (exported by the quantizer on real data).

    ``tokens_per_expert[i]`` = calibration/evaluation tokens routed to expert i (top-1).
    ``touched_per_batch`` = mean number of distinct experts touched by a batch of
    ``batch_tokens`` consecutive tokens, measured.
    """

    tokens_per_expert: list[Count] = Field(min_length=1, max_length=MAX_EXPERTS)
    batch_tokens: Int = Field(128, ge=1, le=MAX_TOKENS)
    touched_per_batch: Optional[Num] = Field(None, ge=0)

    def frequencies(self) -> list[float]:
        tot = sum(self.tokens_per_expert)
        if tot <= 0:
            n = len(self.tokens_per_expert)
            return [1.0 / n] * n
        return [c / tot for c in self.tokens_per_expert]


class LowRankAdapters(_Strict):
    """Low-rank adapters attached to a linear (LQER/ASER: shared only; QE: shared + routed).

    y += (x A_s) B_s  +  (x A_r[e]) B_r[e]  for the routed expert(s) e picked by the router,
    router logits = R |x| with R of shape (in_features x routed_experts).
    """

    shared_rank: Int = Field(0, ge=0, le=MAX_RANK, description="rank of the always-on (shared) adapter")
    routed_experts: Int = Field(0, ge=0, le=MAX_EXPERTS, description="Nr, number of routed low-rank experts")
    routed_rank: Int = Field(0, ge=0, le=MAX_RANK, description="rank of each routed expert")
    active_per_token: Int = Field(1, ge=1, le=MAX_EXPERTS, description="experts applied per token (top-1 in QE)")
    touched_experts: Optional[Num] = Field(
        None,
        ge=0,
        description="distinct routed experts a batch of this op's tokens touches; None = "
        "use routing stats if present, else the uniform-routing expectation",
    )
    router: bool = Field(True, description="router weights (in_features x routed_experts) present")
    adapter_bits: Int = Field(16, ge=1, le=32, description="precision of A/B matrices and router")
    routing: Optional[RoutingStats] = None

    @model_validator(mode="after")
    def _check(self) -> "LowRankAdapters":
        if self.routed_experts and not self.routed_rank:
            raise ValueError("routed_experts > 0 needs routed_rank > 0")
        if self.routed_experts and self.active_per_token > self.routed_experts:
            raise ValueError("active_per_token cannot exceed routed_experts")
        if self.routing is not None and self.routed_experts and len(self.routing.tokens_per_expert) != self.routed_experts:
            raise ValueError("routing.tokens_per_expert must have routed_experts entries")
        return self

    @property
    def total_rank(self) -> int:
        return self.shared_rank + (self.routed_rank * self.active_per_token if self.routed_experts else 0)


class LinearOp(_OpBase):
    """y[M, N] = x[M, K] @ W[K, N] (+ adapters). M = ``tokens`` (batch x query tokens)."""

    kind: Literal["linear"] = "linear"
    name: str = Field(min_length=1, max_length=200)
    in_features: Int = Field(ge=1, le=MAX_FEATURES, description="K")
    out_features: Int = Field(ge=1, le=MAX_FEATURES, description="N")
    tokens: Int = Field(ge=1, le=MAX_TOKENS, description="M: rows of x, batch x tokens per sequence")
    weight_bits: Int = Field(16, ge=1, le=32)
    group_size: Int = Field(-1, le=MAX_FEATURES, description="-1 = per output channel, else group along in_features")
    weight_symmetric: bool = True
    act_bits: Int = Field(16, ge=1, le=32)
    act_granularity: ActGranularity = "none"
    out_bits: Int = Field(16, ge=1, le=32, description="precision the output is written in")
    weight_density: Num = Field(1.0, gt=0, le=1, description="fraction of weights kept (N:M sparsity)")
    repeat: Int = Field(1, ge=1, le=MAX_REPEAT, description="how many times this op runs (e.g. num layers)")
    adapters: Optional[LowRankAdapters] = None
    weight_shared_with: Optional[str] = Field(
        None, description="name of an op whose weights this op reuses (e.g. tied lm_head)"
    )

    @model_validator(mode="after")
    def _check(self) -> "LinearOp":
        if self.group_size != -1 and self.group_size < 1:
            raise ValueError("group_size must be -1 (per channel) or >= 1")
        return self

    @property
    def macs(self) -> int:
        """Multiply-accumulates of the base GEMM (dense count, before sparsity)."""
        return self.tokens * self.in_features * self.out_features


class AttentionOp(_OpBase):
    """Scaled dot-product attention over a KV cache: QK^T, softmax (SFU), PV.

    ``q_len`` query tokens per sequence attend to ``kv_len`` keys (causal prefill:
    kv_len = q_len, and about half the scores are masked). KV cache lives off-chip at
    ``kv_bits``; new K/V rows (``q_len`` per sequence) are written, ``kv_len`` rows are read.
    """

    kind: Literal["attention"] = "attention"
    name: str = Field(min_length=1, max_length=200)
    batch: Int = Field(1, ge=1, le=MAX_BATCH)
    heads: Int = Field(ge=1, le=MAX_HEADS)
    kv_heads: Int = Field(ge=1, le=MAX_HEADS)
    head_dim: Int = Field(ge=1, le=MAX_HEAD_DIM)
    q_len: Int = Field(ge=1, le=MAX_CONTEXT)
    kv_len: Int = Field(ge=1, le=MAX_CONTEXT)
    kv_bits: Int = Field(16, ge=1, le=32)
    act_bits: Int = Field(16, ge=1, le=32, description="precision of Q and of the scores/probs")
    causal: bool = True
    repeat: Int = Field(1, ge=1, le=MAX_REPEAT)

    @model_validator(mode="after")
    def _check(self) -> "AttentionOp":
        if self.heads % self.kv_heads:
            raise ValueError("heads must be a multiple of kv_heads (GQA)")
        if self.kv_len < self.q_len:
            raise ValueError("kv_len must be >= q_len")
        return self


SfuFunc = Literal[
    "softmax", "layernorm", "rmsnorm", "silu", "gelu", "silu_mul", "eltwise_add", "eltwise_mul",
    "quantize", "dequantize", "rope", "relu",
]


class SfuOp(_OpBase):
    """A vector op on the special function unit over ``rows`` vectors of ``width`` elements."""

    kind: Literal["sfu"] = "sfu"
    name: str = Field(min_length=1, max_length=200)
    func: SfuFunc
    rows: Int = Field(ge=1, le=MAX_TOKENS)
    width: Int = Field(ge=1, le=MAX_FEATURES)
    in_bits: Int = Field(16, ge=1, le=32)
    out_bits: Int = Field(16, ge=1, le=32)
    inputs: Int = Field(1, ge=1, le=4, description="operand vectors per row (eltwise_add: 2)")
    const_elems: Int = Field(
        0, ge=0, le=MAX_FEATURES,
        description="elements of a constant vector operand (at in_bits) shared by every row, e.g. a per-linear "
                    "activation scaling (QE's omega): loaded from the weight memory once per call")
    repeat: Int = Field(1, ge=1, le=MAX_REPEAT)

    @model_validator(mode="after")
    def _check(self) -> "SfuOp":
        if self.const_elems and self.const_elems != self.width:
            raise ValueError(f"const_elems ({self.const_elems}) must be 0 or the op's width ({self.width}): "
                             "a constant vector operand scales each row elementwise")
        return self


class EmbeddingOp(_OpBase):
    """Token-embedding gather: ``tokens`` rows of ``hidden`` elements read from a table."""

    kind: Literal["embedding"] = "embedding"
    name: str = Field(min_length=1, max_length=200)
    tokens: Int = Field(ge=1, le=MAX_TOKENS)
    hidden: Int = Field(ge=1, le=MAX_FEATURES)
    vocab: Int = Field(ge=1, le=MAX_VOCAB)
    bits: Int = Field(16, ge=1, le=32)
    repeat: Int = Field(1, ge=1, le=MAX_REPEAT)


class MoEOp(_OpBase):
    """Mixture-of-experts FFN: router gate, ``shared_experts`` always-on experts, ``experts``
    routed experts of which each token uses ``top_k``.

    Per token x [hidden]: gate logits = x @ G [hidden x experts] (kept at ``gate_bits``), top-k
    selection; each chosen expert e computes down_e(act(gate_e(x)) * up_e(x)) (``gated``; plain:
    down_e(act(up_e(x)))) with intermediate ``expert_intermediate``; the shared experts form one
    dense MLP of intermediate ``shared_experts * expert_intermediate`` (or ``shared_intermediate``).
    Expert and shared-expert weights are at ``weight_bits`` (the setting); sizes in elements.

    Only the experts that the ``tokens`` tokens of one call touch are loaded: ``touched_experts``
    if set, else the expectation under measured ``expert_freqs`` (per-slot routing shares, sum 1),
    else under uniform top-k routing (see :func:`qesim.perf.model.expected_touched`).
    """

    kind: Literal["moe"] = "moe"
    name: str = Field(min_length=1, max_length=200)
    tokens: Int = Field(ge=1, le=MAX_TOKENS, description="M: tokens through the layer per call (batch x tokens)")
    hidden: Int = Field(ge=1, le=MAX_FEATURES, description="d_model (elements)")
    expert_intermediate: Int = Field(ge=1, le=MAX_FEATURES, description="intermediate size of one expert (elements)")
    experts: Int = Field(ge=1, le=MAX_EXPERTS, description="E: routed experts")
    top_k: Int = Field(ge=1, le=MAX_EXPERTS, description="routed experts per token")
    shared_experts: Int = Field(0, ge=0, le=MAX_EXPERTS, description="always-on experts")
    shared_intermediate: Optional[Int] = Field(
        None, ge=1, le=MAX_FEATURES, description="intermediate of the fused shared MLP (default shared_experts x expert_intermediate)")
    gated: bool = Field(True, description="SwiGLU-style experts (gate, up, down); False: up, down")
    weight_bits: Int = Field(16, ge=1, le=32)
    group_size: Int = Field(-1, le=MAX_FEATURES, description="-1 = per output channel, else group along in_features")
    weight_symmetric: bool = True
    act_bits: Int = Field(16, ge=1, le=32)
    act_granularity: ActGranularity = "none"
    out_bits: Int = Field(16, ge=1, le=32)
    gate_bits: Int = Field(16, ge=1, le=32, description="precision of the router gate weights (not quantized)")
    expert_freqs: Optional[list[Num]] = Field(
        None, max_length=MAX_EXPERTS, description="measured share of token-slots routed to each expert (length experts, sum 1)")
    touched_experts: Optional[Num] = Field(
        None, ge=0, description="distinct routed experts one call touches; None = modelled")
    repeat: Int = Field(1, ge=1, le=MAX_REPEAT)

    @model_validator(mode="after")
    def _check(self) -> "MoEOp":
        if self.top_k > self.experts:
            raise ValueError("top_k cannot exceed experts")
        if self.group_size != -1 and self.group_size < 1:
            raise ValueError("group_size must be -1 (per channel) or >= 1")
        if self.expert_freqs is not None:
            if len(self.expert_freqs) != self.experts:
                raise ValueError("expert_freqs must have one entry per routed expert")
            if any(p < 0 for p in self.expert_freqs) or abs(sum(self.expert_freqs) - 1.0) > 1e-3:
                raise ValueError("expert_freqs must be non-negative and sum to 1")
        if self.touched_experts is not None and self.touched_experts > self.experts:
            raise ValueError("touched_experts cannot exceed experts")
        return self

    @property
    def shared_width(self) -> int:
        """Intermediate size of the fused shared-expert MLP (0 = none)."""
        if not self.shared_experts:
            return 0
        return self.shared_intermediate or self.shared_experts * self.expert_intermediate

    @property
    def mats(self) -> int:
        """Weight matrices per expert (3 gated, 2 plain)."""
        return 3 if self.gated else 2

    @property
    def macs(self) -> int:
        """Useful MACs per call: gate + shared MLP + top_k routed experts per token."""
        per_expert = self.mats * self.hidden * self.expert_intermediate
        return self.tokens * (self.hidden * self.experts + self.top_k * per_expert
                              + self.mats * self.hidden * self.shared_width)


Op = Annotated[Union[LinearOp, AttentionOp, SfuOp, EmbeddingOp, MoEOp], Field(discriminator="kind")]


def _op_rows(op) -> int:
    """Token rows one call of ``op`` processes (batch x tokens)."""
    if op.kind == "attention":
        return op.batch * op.q_len
    if op.kind == "sfu":
        return op.rows
    return op.tokens


class LayerGraph(_Strict):
    """A model (or a single layer) at one stage, its ops in execution order."""

    schema_version: Literal[1] = 1
    name: str = Field(min_length=1, max_length=200)
    model: str = Field(description="model preset or source model name")
    stage: Stage
    batch: Int = Field(1, ge=1, le=MAX_BATCH)
    seq_len: Int = Field(ge=1, le=MAX_TOKENS, description="tokens processed per sequence in this pass (decode: 1)")
    context_len: Int = Field(ge=0, le=MAX_CONTEXT, description="tokens already in the KV cache before this pass")
    setting: str = Field("W16A16", description="quantizer setting W{w}A{a}")
    method: str = Field("none", description="adapter structure / quantizer name")
    ops: list[Op] = Field(min_length=1, max_length=MAX_OPS)
    meta: dict[str, Union[str, int, float, bool, None]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _unique_names(self) -> "LayerGraph":
        seen: dict[str, Any] = {}
        for op in self.ops:
            if op.name in seen:
                raise ValueError(f"duplicate op name {op.name!r}")
            seen[op.name] = op
        claimed = self.batch * self.seq_len
        rows = max(_op_rows(op) for op in self.ops)
        if claimed > rows:
            # tokens/s = batch x seq_len / latency: a graph whose ops process fewer rows overstates it
            raise ValueError(f"batch x seq_len = {self.batch} x {self.seq_len} = {claimed} tokens per pass, but the "
                             f"largest op processes {rows} rows (a decode graph has seq_len 1)")
        for op in self.ops:
            ref = getattr(op, "weight_shared_with", None)
            if ref is None:
                continue
            if ref == op.name:
                raise ValueError(f"op {op.name!r}: weight_shared_with names the op itself")
            tgt = seen.get(ref)
            if tgt is None:
                raise ValueError(f"op {op.name!r}: weight_shared_with names {ref!r}, which is not an op of "
                                 "this graph")
            if tgt.kind == "embedding":
                if {op.in_features, op.out_features} != {tgt.hidden, tgt.vocab}:
                    raise ValueError(f"op {op.name!r}: weight_shared_with {ref!r} has a {tgt.vocab} x {tgt.hidden} "
                                     f"table, not the op's {op.in_features} x {op.out_features} weight")
            elif tgt.kind == "linear":
                if {op.in_features, op.out_features} != {tgt.in_features, tgt.out_features}:
                    raise ValueError(f"op {op.name!r}: weight_shared_with {ref!r} has a different weight shape")
            else:
                raise ValueError(f"op {op.name!r}: weight_shared_with {ref!r} is a {tgt.kind} op, which has "
                                 "no weight")
        return self

    # --- I/O -----------------------------------------------------------------
    def to_json(self, path: str | Path | None = None, indent: int = 1) -> str:
        text = self.model_dump_json(indent=indent)
        if path is not None:
            Path(path).write_text(text)
        return text

    @classmethod
    def from_json(cls, path: str | Path) -> "LayerGraph":
        """Load a graph; raises ``qesim.errors.InputError`` naming the file and field."""
        from qesim.errors import InputError, format_validation_error
        from pydantic import ValidationError

        from qesim.safeio import parse_json

        p = Path(path)
        data = parse_json(p, "layer-graph JSON file")
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            raise InputError(format_validation_error(p, e, cls)) from None


def graph_json_schema() -> dict:
    return LayerGraph.model_json_schema()
