"""Whole-model layer graphs from shape presets, and the single-linear graph of QE Table 8.

Token counts (elements = tokens, features):

- ``prefill``: each of ``batch`` sequences processes ``seq_len`` tokens; ``context_len`` tokens
  may already be cached (chunked prefill, default 0). Linear M = batch*seq_len; attention
  q_len = seq_len, kv_len = context_len + seq_len.
- ``decode``: one new token per sequence over a cache of ``context_len`` tokens. Linear M = batch;
  attention q_len = 1, kv_len = context_len + 1. The graph records seq_len = 1.

The ops of one decoder layer are stored once with ``repeat = layers`` and named ``layer.<op>``.
Embedding (and position embedding) and ``lm_head`` stay fp16 and are never quantized, as MBQ and
QE do. ``lm_head`` computes logits only for the last position of each sequence (tokens = batch,
in both stages): that is what generation needs; perplexity evaluation (logits for every position)
is not what this graph costs. ``final_norm`` is likewise applied to those ``batch`` rows only.

Encoder models (BERT: ``minilm-l6``) are post-norm and bidirectional and have no ``lm_head``
(they are used as sentence encoders with mean pooling, which is not costed); only ``prefill``
with an empty cache is valid for them.
"""

from __future__ import annotations

from typing import Any, Optional

from pydantic import ValidationError

from qesim.errors import InputError
from qesim.graph.ir import AttentionOp, EmbeddingOp, LayerGraph, LinearOp, MoEOp, SfuOp
from qesim.graph.presets import ModelSpec, get_spec
from qesim.graph.settings import INPUT_SCALING_METHODS, AdapterDefaults, density_label, linear_fields, method_adapters, parse_density, parse_setting

__all__ = ["build_graph", "single_linear_graph", "graph_op_name", "AdapterDefaults"]

#: last components of HF module names (Llama/Qwen2/Mistral, OPT, BERT, InternLM2) -> graph op names
_HF_SUFFIX_TO_OP = (
    ("self_attn.q_proj", "layer.q_proj"), ("self_attn.k_proj", "layer.k_proj"),
    ("self_attn.v_proj", "layer.v_proj"), ("self_attn.o_proj", "layer.o_proj"),
    ("self_attn.out_proj", "layer.o_proj"),
    ("mlp.gate_proj", "layer.gate_proj"), ("mlp.up_proj", "layer.up_proj"), ("mlp.down_proj", "layer.down_proj"),
    ("feed_forward.w1", "layer.gate_proj"), ("feed_forward.w3", "layer.up_proj"), ("feed_forward.w2", "layer.down_proj"),
    ("attention.wo", "layer.o_proj"),
    ("attention.self.query", "layer.q_proj"), ("attention.self.key", "layer.k_proj"),
    ("attention.self.value", "layer.v_proj"), ("attention.output.dense", "layer.o_proj"),
    ("intermediate.dense", "layer.fc1"), ("output.dense", "layer.fc2"),
    ("fc1", "layer.fc1"), ("fc2", "layer.fc2"),
    ("lm_head", "lm_head"), ("output", "lm_head"),
)


def graph_op_name(hf_module_name: str) -> Optional[str]:
    """Graph op name (``layer.q_proj``, ..., ``lm_head``) of a HF ``nn.Linear`` module name, e.g.
    ``model.layers.3.self_attn.q_proj`` -> ``layer.q_proj``; ``None`` if it is not a graph linear.

    Covers Llama/Qwen2/Mistral, OPT (``out_proj``, ``fc1``/``fc2``), BERT (``attention.self.query``,
    ``intermediate.dense``, ``output.dense``) and InternLM2 (``w1``/``w3``/``w2``, ``wo``; its fused
    ``wqkv`` has no single graph op and returns ``None``). All layers map to the same ``layer.*`` op
    because the graph stores one layer with ``repeat = layers``.
    """
    n = hf_module_name.strip(".")
    if n.endswith("pooler.dense"):
        return None
    for suffix, op in _HF_SUFFIX_TO_OP:
        if n == suffix or n.endswith("." + suffix):
            return op
    return None


def _check_common(stage: str, seq_len: int, context_len: int, batch: int, density: float,
                  kv_bits: Optional[int]) -> None:
    if stage not in ("prefill", "decode"):
        raise InputError(f"stage {stage!r} must be 'prefill' or 'decode'")
    if isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len < 1:
        raise InputError(f"seq_len must be an integer >= 1 (got {seq_len!r})")
    if isinstance(context_len, bool) or not isinstance(context_len, int) or context_len < 0:
        raise InputError(f"context_len must be an integer >= 0 (got {context_len!r})")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise InputError(f"batch must be an integer >= 1 (got {batch!r})")
    parse_density(density)
    from qesim.graph.ir import MAX_BATCH, MAX_CONTEXT, MAX_TOKENS

    q_len = seq_len if stage == "prefill" else 1
    if batch > MAX_BATCH:
        raise InputError(f"batch {batch} exceeds the limit of {MAX_BATCH} sequences")
    if batch * q_len > MAX_TOKENS:
        raise InputError(f"batch x seq_len = {batch} x {q_len} = {batch * q_len} tokens per pass exceeds the limit "
                         f"of {MAX_TOKENS} (qesim.graph.ir.MAX_TOKENS)")
    if context_len + q_len > MAX_CONTEXT:
        raise InputError(f"context_len + seq_len = {context_len + q_len} tokens exceeds the KV-cache limit of "
                         f"{MAX_CONTEXT} (qesim.graph.ir.MAX_CONTEXT)")
    if kv_bits is not None and (isinstance(kv_bits, bool) or not isinstance(kv_bits, int) or not 1 <= kv_bits <= 32):
        raise InputError(f"kv_bits must be in 1..32 (got {kv_bits!r})")


def _linear(name: str, fields: dict, overrides: dict[str, dict]) -> LinearOp:
    extra = overrides.get(name)
    if extra:
        fields = {**fields, **extra}
    try:
        return LinearOp(name=name, **fields)
    except ValidationError as e:
        from qesim.errors import format_validation_error

        raise InputError(format_validation_error(f"linear {name!r}", e)) from None
    except TypeError as e:  # e.g. a non-mapping override
        raise InputError(f"linear {name!r}: bad override ({e})") from None


def build_graph(
    model: str | ModelSpec,
    *,
    stage: str,
    seq_len: int = 128,
    context_len: int = 0,
    batch: int = 1,
    setting: str = "W16A16",
    method: str = "none",
    density: "float | str | dict[str, float]" = 1.0,
    adapter_defaults: AdapterDefaults = AdapterDefaults(),
    kv_bits: Optional[int] = None,
    linear_overrides: Optional[dict[str, dict]] = None,
    group_size: Optional[int] = None,
    input_scaling: Optional[bool] = None,
) -> LayerGraph:
    """The layer graph of a whole model at one stage (see the module docstring for token counts).

    Args:
        model: preset name (see :func:`qesim.graph.presets.preset_names`), an HF ``config.json``
            or a directory holding one (:mod:`qesim.graph.hf`), or a ModelSpec.
        stage: ``'prefill'`` or ``'decode'``.
        seq_len: prefill tokens per sequence (ignored for decode, where it is 1).
        context_len: tokens already in the KV cache of each sequence.
        batch: sequences.
        setting: ``W{w}A{a}`` quantizer setting (bits) for the decoder-layer linears
            (q/k/v/o and the MLP). ``a < 16`` inserts a per-token ``quantize`` SFU op before each
            group of linears that shares an input.
        method: adapter structure (``none``, ``lqer``, ``aser``, ``qe``, ...) attached to every
            quantized linear; none is attached when the setting is W16A16 (nothing is quantized).
        density: fraction of weights kept (N:M sparsity), at any setting. A number applies to every
            decoder-layer linear (embedding and lm_head stay dense); a mapping or
            ``'q_proj=0.7,k_proj=0.7'`` sets the named linears (``q_proj`` or ``layer.q_proj``;
            ``lm_head`` allowed) and keeps the others dense (the FlightLLM artifact sparsifies
            only q_proj and k_proj).
        adapter_defaults: ranks / expert counts for ``method``.
        kv_bits: KV-cache precision in bits (default 16).
        linear_overrides: op name (e.g. ``'layer.q_proj'``, ``'lm_head'``) -> LinearOp field
            overrides, applied last (e.g. measured ``adapters`` with routing stats).
        group_size: weights per quantization group along in_features (-1 = per output channel);
            default: the setting's (g128 for weight-only settings, per channel for W-A settings).
        input_scaling: each quantized decoder linear divides its input by its own per-channel
            vector (QE's omega, ASER's smoothing) before its activation quantizer. The vector
            differs between linears that share an input (q/k/v, gate/up), so it cannot fold into
            the RMSNorm: the graph gets, per linear, an SFU ``eltwise_mul`` op (``layer.<lin>_omega``,
            one multiply per input element, its ``width``-element vector a ``const_elems`` operand) and its own ``quantize`` op (``layer.<lin>_in_quant``)
            instead of one shared quantize per input. Default: the method's
            (:data:`qesim.graph.settings.INPUT_SCALING_METHODS`: ``qe``, ``aser``) when adapters are
            attached. Not applied inside MLA attention.

    Raises:
        InputError: unknown model / setting / method, out-of-range sizes, an override naming an
            op that does not exist or an invalid field, decode on an encoder model.
    """
    spec = get_spec(model)
    _check_common(stage, seq_len, context_len, batch, density, kv_bits)
    if spec.moe is not None and method_adapters(method, adapter_defaults) is not None and not parse_setting(setting).is_fp16:
        raise InputError(f"model {spec.name!r} is a mixture-of-experts model: low-rank adapter methods "
                         f"({method!r}) are not modelled on MoE experts; use a plain method (none, rtn, awq, gptq, ...)")
    if not spec.causal and (stage == "decode" or context_len):
        raise InputError(f"model {spec.name!r} is an encoder (bidirectional, no KV cache): only "
                         "stage 'prefill' with context 0 is valid")
    qs = parse_setting(setting, group_size)
    adapters = method_adapters(method, adapter_defaults)
    attach = adapters is not None and not qs.is_fp16
    if input_scaling is None:
        input_scaling = attach and method.lower() in INPUT_SCALING_METHODS
    scaling = bool(input_scaling) and not qs.is_fp16
    if qs.is_fp16:
        method = "none"  # nothing is quantized, so no method's adapters are attached: say so
    overrides = dict(linear_overrides or {})
    dens = parse_density(density)
    per_linear = dens if isinstance(dens, dict) else {}
    per_linear = {(k if k.startswith("layer.") or k == "lm_head" else f"layer.{k}"): v for k, v in per_linear.items()}
    layer_density = 1.0 if isinstance(dens, dict) else dens

    q_len = seq_len if stage == "prefill" else 1
    M = batch * q_len
    kv_len = context_len + q_len
    L = spec.layers
    h, inter = spec.hidden, spec.intermediate
    a_bits = qs.a_bits
    quant_acts = a_bits < 16

    qfields = dict(linear_fields(qs), tokens=M, repeat=L, weight_density=layer_density)
    if attach:
        qfields["adapters"] = adapters

    ops: list[Any] = []

    # --- embeddings ---------------------------------------------------------------------
    ops.append(EmbeddingOp(name="embedding", tokens=M, hidden=h, vocab=spec.vocab, bits=16))
    if spec.position == "learned":
        ops.append(EmbeddingOp(name="pos_embedding", tokens=M, hidden=h, vocab=spec.max_positions, bits=16))
        ops.append(SfuOp(name="embed_pos_add", func="eltwise_add", rows=M, width=h, inputs=2))
    if spec.type_vocab:
        ops.append(EmbeddingOp(name="type_embedding", tokens=M, hidden=h, vocab=spec.type_vocab, bits=16))
        ops.append(SfuOp(name="embed_type_add", func="eltwise_add", rows=M, width=h, inputs=2))
    if spec.layout == "post_norm":
        ops.append(SfuOp(name="embed_norm", func=spec.norm, rows=M, width=h))

    # MoE specs: the dense MLP runs in n_dense layers, the MoE op in n_moe layers
    n_moe = spec.moe.moe_layers(L) if spec.moe is not None else 0
    n_dense = L - n_moe

    def sfu(name: str, func: str, width: int, *, inputs: int = 1, in_bits: int = 16, out_bits: int = 16,
            repeat: int = L, const_elems: int = 0) -> SfuOp:
        return SfuOp(name=f"layer.{name}", func=func, rows=M, width=width, inputs=inputs,
                     in_bits=in_bits, out_bits=out_bits, repeat=repeat, const_elems=const_elems)

    def quant(name: str, width: int, repeat: int = L) -> None:
        if quant_acts:
            ops.append(sfu(name, "quantize", width, in_bits=16, out_bits=a_bits, repeat=repeat))

    def lin(name: str, k: int, n: int, repeat: int = L) -> None:
        full = f"layer.{name}"
        d = per_linear.get(full, qfields["weight_density"])
        ops.append(_linear(full, dict(qfields, in_features=k, out_features=n, repeat=repeat, weight_density=d),
                           overrides))

    def scaled_lins(group_quant: Optional[str], names: list[str], width: int, repeat: int = L) -> None:
        """Linears sharing one input: one quantize op (``group_quant``; None = emitted by the
        caller), or per linear omega + quantize (scaling)."""
        if not scaling and group_quant is not None:
            quant(group_quant, width, repeat)
        for nm in names:
            if scaling:
                ops.append(sfu(f"{nm}_omega", "eltwise_mul", width, repeat=repeat, const_elems=width))
                quant(group_quant if (group_quant and len(names) == 1) else f"{nm}_in_quant", width, repeat)
            lin(nm, *shapes[nm], repeat=repeat)

    pre = spec.layout == "pre_norm"
    shapes = spec.linear_shapes()

    # --- attention block ----------------------------------------------------------------
    if pre:
        ops.append(sfu("input_norm", spec.norm, h))
    kvb = 16 if kv_bits is None else kv_bits
    if spec.mla is None:
        scaled_lins("attn_in_quant", ["q_proj", "k_proj", "v_proj"], h)
        if spec.position == "rope":
            ops.append(sfu("rope", "rope", (spec.heads + spec.kv_heads) * spec.head_dim))
        # sliding-window layers attend to at most `window` keys per query: the chunk's own q_len
        # keys plus the window - 1 before it (decode: min(context + 1, window))
        S = spec.sliding_layers if spec.sliding_window else 0
        kv_sw = q_len + min(context_len, spec.sliding_window - 1) if S else kv_len
        if S and kv_sw < kv_len:
            if L - S:
                ops.append(AttentionOp(name="layer.attention", batch=batch, heads=spec.heads, kv_heads=spec.kv_heads,
                                       head_dim=spec.head_dim, q_len=q_len, kv_len=kv_len,
                                       kv_bits=kvb, act_bits=16, causal=spec.causal, repeat=L - S))
            ops.append(AttentionOp(name="layer.attention_swa", batch=batch, heads=spec.heads, kv_heads=spec.kv_heads,
                                   head_dim=spec.head_dim, q_len=q_len, kv_len=kv_sw,
                                   kv_bits=kvb, act_bits=16, causal=spec.causal, repeat=S))
        else:
            ops.append(AttentionOp(name="layer.attention", batch=batch, heads=spec.heads, kv_heads=spec.kv_heads,
                                   head_dim=spec.head_dim, q_len=q_len, kv_len=kv_len,
                                   kv_bits=kvb, act_bits=16, causal=spec.causal, repeat=L))
        scaled_lins("o_quant", ["o_proj"], spec.q_out)
    else:
        quant("attn_in_quant", h)
        _mla_attention(spec, ops, lin, sfu, quant, shapes, batch, q_len, kv_len, kvb, L)
        lin("o_proj", *shapes["o_proj"])
    if spec.sandwich_norm:
        ops.append(sfu("attn_out_norm", spec.norm, h))
    ops.append(sfu("attn_residual", "eltwise_add", h, inputs=2))
    ops.append(sfu("post_attn_norm", spec.norm, h))

    # --- MLP ----------------------------------------------------------------------------
    if not scaling:
        quant("mlp_in_quant", h)
    elif n_moe:
        quant("mlp_in_quant", h, repeat=n_moe)
    D = n_dense
    if D and spec.mlp == "gated":
        scaled_lins(None, ["gate_proj", "up_proj"], h, repeat=D)
        if spec.act == "silu":
            ops.append(sfu("act", "silu_mul", inter, inputs=2, repeat=D))
        else:  # gated GELU/ReLU: activation then elementwise product
            ops.append(sfu("act", spec.act, inter, repeat=D))
            ops.append(sfu("gate_mul", "eltwise_mul", inter, inputs=2, repeat=D))
        scaled_lins("down_quant", ["down_proj"], inter, repeat=D)
    elif D:
        scaled_lins(None, ["fc1"], h, repeat=D)
        ops.append(sfu("act", spec.act, inter, repeat=D))
        scaled_lins("fc2_quant", ["fc2"], inter, repeat=D)
    if n_moe:
        m = spec.moe
        ops.append(MoEOp(
            name="layer.moe", tokens=M, hidden=h, expert_intermediate=m.moe_intermediate, experts=m.experts,
            top_k=m.top_k, shared_experts=m.shared_experts, gated=spec.mlp == "gated",
            weight_bits=qfields["weight_bits"], group_size=qfields["group_size"],
            weight_symmetric=qfields["weight_symmetric"], act_bits=qfields["act_bits"],
            act_granularity=qfields["act_granularity"], out_bits=qfields["out_bits"], gate_bits=m.gate_bits,
            shared_intermediate=m.shared_intermediate if m.shared_experts else None, repeat=n_moe))
    if spec.sandwich_norm:
        ops.append(sfu("mlp_out_norm", spec.norm, h))
    ops.append(sfu("mlp_residual", "eltwise_add", h, inputs=2))
    if not pre:
        ops.append(sfu("out_norm", spec.norm, h))

    # --- head -----------------------------------------------------------------------------
    if pre:
        ops.append(SfuOp(name="final_norm", func=spec.norm, rows=batch if spec.lm_head else M, width=h))
    if spec.lm_head:
        head = dict(in_features=h, out_features=spec.vocab, tokens=batch, weight_bits=16, act_bits=16,
                    act_granularity="none", out_bits=16, weight_density=per_linear.get("lm_head", 1.0), repeat=1,
                    weight_shared_with="embedding" if spec.tied_embeddings else None)
        ops.append(_linear("lm_head", head, overrides))

    names = {op.name for op in ops}
    lin_names = [op.name for op in ops if op.kind == "linear"]
    bad_density = [k for k in per_linear if k not in lin_names]
    if bad_density:
        raise InputError(f"density names unknown linear(s) {', '.join(repr(k.removeprefix('layer.')) for k in bad_density)}; "
                         f"linears of {spec.name}: {', '.join(n.removeprefix('layer.') for n in lin_names)}")
    unknown = sorted(set(overrides) - names)
    if unknown:
        lin_names = [op.name for op in ops if op.kind == "linear"]
        raise InputError(f"linear_overrides name unknown op(s) {', '.join(map(repr, unknown))}; "
                         f"linear ops of this graph: {', '.join(lin_names)}")
    bad = sorted(n for n in overrides if n in names and n not in {o.name for o in ops if o.kind == "linear"})
    if bad:
        raise InputError(f"linear_overrides may only name linear ops, not {', '.join(map(repr, bad))}")

    meta = dict(
        arch=spec.arch, hidden=h, intermediate=inter, layers=L, heads=spec.heads, kv_heads=spec.kv_heads,
        head_dim=spec.head_dim, vocab=spec.vocab, norm=spec.norm, mlp=spec.mlp, act=spec.act,
        tied_embeddings=spec.tied_embeddings, position=spec.position, layout=spec.layout, causal=spec.causal,
        tokens=M, q_len=q_len, kv_len=kv_len, kv_bits=16 if kv_bits is None else kv_bits,
        density=density_label(dens), adapters_attached=attach, input_scaling=scaling, group_size=qs.group_size,
        lm_head_tokens=batch if spec.lm_head else 0,
        params=spec.param_count(),
        unverified=",".join(spec.unverified) or None,
    )
    if spec.moe is not None:
        meta.update(moe_layers=n_moe, dense_layers=n_dense, experts=spec.moe.experts, top_k=spec.moe.top_k,
                    shared_experts=spec.moe.shared_experts, moe_intermediate=spec.moe.moe_intermediate,
                    active_params=spec.active_param_count())
    if spec.sliding_layers and spec.sliding_window:
        meta.update(sliding_window=spec.sliding_window, sliding_layers=spec.sliding_layers)
    if spec.mla is not None:
        meta.update(mla_kv_lora_rank=spec.mla.kv_lora_rank, mla_cache_elems_per_token=spec.mla.cache_elems)
    return LayerGraph(
        name=f"{spec.name}-{stage}-{qs.name}-{method.lower()}", model=spec.name, stage=stage, batch=batch,
        seq_len=q_len, context_len=context_len, setting=qs.name, method=method.lower(), ops=ops, meta=meta,
    )


def _mla_attention(spec: ModelSpec, ops: list, lin, sfu, quant, shapes: dict, batch: int, q_len: int,
                   kv_len: int, kv_bits: int, L: int) -> None:
    """Multi-head latent attention (DeepSeek-V3 / Moonlight), costed in its weight-absorbed form.

    Linears (quantized like every layer linear): q_proj (or q_a/q_b), kv_a_proj_with_mqa,
    kv_b_proj, o_proj, each on the M new tokens. In the absorbed form kv_b's weights multiply the
    new query (W_UK) and the attention output (W_UV) instead of every cached latent, so "kv_b on
    the new tokens" carries the right weight bytes and MACs.

    Attention approximation (documented, see reports/moe_speedup.md): the cache holds
    ``kv_lora_rank + qk_rope`` elements per token per layer (576 for Moonlight), shared by all
    heads. It is represented by an AttentionOp with ``kv_heads = 1`` and ``head_dim =
    cache_elems / 2``, so the KV-cache bytes read and written are exact (2 x 1 x 288 = 576
    elements per token); its MAC count, 2 x heads x scores x 288, is 0.53x the absorbed form's
    heads x scores x (576 + 512) and 1.8x the non-absorbed prefill's heads x scores x (192 + 128).
    """
    mla = spec.mla
    q_names = ["q_proj"] if "q_proj" in shapes else ["q_a_proj", "q_b_proj"]
    for nm in q_names:
        lin(nm, *shapes[nm])
    lin("kv_a_proj", *shapes["kv_a_proj"])
    ops.append(sfu("kv_a_norm", spec.norm, mla.kv_lora_rank))
    if mla.q_lora_rank is not None:
        ops.append(sfu("q_a_norm", spec.norm, mla.q_lora_rank))
    quant("kv_b_quant", mla.kv_lora_rank)
    lin("kv_b_proj", *shapes["kv_b_proj"])
    ops.append(sfu("rope", "rope", (spec.heads + 1) * mla.qk_rope_head_dim))
    if mla.cache_elems % 2:
        raise InputError(f"MLA cache width {mla.cache_elems} must be even to be costed as K and V halves")
    ops.append(AttentionOp(name="layer.attention", batch=batch, heads=spec.heads, kv_heads=1,
                           head_dim=mla.cache_elems // 2, q_len=q_len, kv_len=kv_len, kv_bits=kv_bits,
                           act_bits=16, causal=spec.causal, repeat=L))
    quant("o_quant", shapes["o_proj"][0])


def single_linear_graph(
    in_features: int,
    out_features: int,
    *,
    tokens: int,
    setting: str = "W16A16",
    method: str = "none",
    stage: str = "prefill",
    density: float = 1.0,
    adapter_defaults: AdapterDefaults = AdapterDefaults(),
    name: Optional[str] = None,
) -> LayerGraph:
    """A graph of exactly one LinearOp (QE Table 8 costs only the linear, incl. its adapters).

    ``tokens`` = M (elements). Prefill records batch 1, seq_len = tokens; decode records
    batch = tokens, seq_len 1. No quantize op is added even when a < 16 (the linear's
    ``act_bits`` / ``act_granularity`` still say the input is quantized). Adapters are attached
    unless the setting is W16A16.
    """
    _check_common(stage, 1, 0, 1, density, None)
    for what, v in (("in_features", in_features), ("out_features", out_features), ("tokens", tokens)):
        if not isinstance(v, int) or v < 1:
            raise InputError(f"{what} must be an integer >= 1 (got {v!r})")
    qs = parse_setting(setting)
    adapters = method_adapters(method, adapter_defaults)
    attach = adapters is not None and not qs.is_fp16
    op_name = name or f"linear_{in_features}x{out_features}"
    op = LinearOp(name=op_name, in_features=in_features, out_features=out_features, tokens=tokens,
                  weight_density=density, adapters=adapters if attach else None, **linear_fields(qs))
    prefill = stage == "prefill"
    return LayerGraph(
        name=f"{op_name}-{stage}-{qs.name}-{method.lower()}", model=op_name, stage=stage,
        batch=1 if prefill else tokens, seq_len=tokens if prefill else 1, context_len=0,
        setting=qs.name, method=method.lower(), ops=[op],
        meta=dict(single_linear=True, tokens=tokens, adapters_attached=attach, density=density),
    )
