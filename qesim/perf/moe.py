"""Cost of a mixture-of-experts FFN (``MoEOp``, kind ``moe``) on the analytical model.

One call of the op on M tokens is lowered to one :class:`OpSchedule` that sums five parts, each
costed by the same linear lowering as every other GEMM (:func:`qesim.perf.model._linear`, i.e.
the tiling planner :func:`qesim.perf.planner.plan_gemm`, quantization metadata, MV/MM mode):

1. **router gate**: x[M, hidden] @ G[hidden, E] at ``gate_bits`` (fp16, never quantized), then
   on the SFU a softmax/sigmoid pass over the M x E logits and a top-k selection (one
   comparison pass per selected expert, i.e. ``top_k`` reduce passes);
2. **shared experts** (if any): one dense gated MLP of width ``shared_experts x
   expert_intermediate`` on all M tokens;
3. **routed experts**: T = touched experts (expected under uniform top-k routing, or under the
   measured ``expert_freqs``, or the graph's ``touched_experts``); each touched expert processes
   on average m_e = ceil(M x top_k / T) tokens: a fused gate+up GEMM [m_e, hidden] x
   [hidden, 2 x inter] (``gated``; plain experts: up only) and a down GEMM [m_e, inter] x
   [inter, hidden]. The costs of one expert are multiplied by T, so **only the touched experts'
   weights are loaded** (T x expert bytes) and the MACs are those of the padded per-expert tiles
   (small m_e on a wide array pads: that is the real inefficiency of MoE prefill). For each
   expert GEMM the faster of two lowerings is kept: one MM GEMM of m_e rows (padded to the
   array's m) or m_e matrix-vector passes over each weight tile while it is in the weight buffer
   (MV mode: weights loaded once, MV compute and per-token activation traffic x m_e);
4. the activation (SiLU x up) over M x top_k x inter elements and, for W-A settings, the
   per-token quantization of the expert intermediate, on the SFU;
5. the weighted combination of the top_k expert outputs (and the shared output): M x top_k x
   hidden multiply-adds on the SFU.

Units: elements, bits, bytes, cycles. Approximation: every touched expert gets the average
token count m_e (with skewed routing the padded MACs differ slightly); the gate and expert parts
are pipelined as one op (their loads and computes add up).
"""

from __future__ import annotations

import math
from typing import Optional

from qesim.graph.ir import LinearOp, MoEOp
from qesim.hw.config import HardwareConfig
from qesim.perf.model import _Hw, _clean, _linear, _sfu_cycles_per_element, expected_touched
from qesim.perf.schedule import OpSchedule
from qesim.perf.timing import op_timing

__all__ = ["moe_touched", "moe_tokens_per_expert", "plan_moe", "moe_weight_bytes"]


def moe_touched(op: MoEOp) -> float:
    """Distinct routed experts one call of ``op`` touches (graph value > measured freqs > uniform)."""
    if op.touched_experts is not None:
        return float(op.touched_experts)
    return expected_touched(op.experts, op.tokens, op.top_k, op.expert_freqs)


def moe_tokens_per_expert(op: MoEOp, touched: Optional[float] = None) -> int:
    """Average tokens per touched expert, ceil(M x top_k / T) (at least 1)."""
    t = moe_touched(op) if touched is None else touched
    if t <= 0:
        return 1
    return max(1, math.ceil(op.tokens * op.top_k / t))


def _lin(op: MoEOp, name: str, M: int, K: int, N: int, *, w_bits: Optional[int] = None) -> LinearOp:
    quant = w_bits is None
    return LinearOp(
        name=name, in_features=K, out_features=N, tokens=M,
        weight_bits=op.weight_bits if quant else w_bits,
        group_size=op.group_size if quant else -1,
        weight_symmetric=op.weight_symmetric if quant else True,
        act_bits=op.act_bits if quant else 16,
        act_granularity=op.act_granularity if quant else "none",
        out_bits=op.out_bits, repeat=1,
    )


def moe_parts(op: MoEOp) -> list[tuple[LinearOp, float]]:
    """The GEMMs of one call as (LinearOp, multiplicity): gate, shared MLP, one routed expert x T."""
    h, inter = op.hidden, op.expert_intermediate
    parts: list[tuple[LinearOp, float]] = [(_lin(op, f"{op.name}.gate", op.tokens, h, op.experts,
                                                 w_bits=op.gate_bits), 1.0)]
    up_n = (2 if op.gated else 1)
    if op.shared_width:
        parts.append((_lin(op, f"{op.name}.shared_gate_up", op.tokens, h, up_n * op.shared_width), 1.0))
        parts.append((_lin(op, f"{op.name}.shared_down", op.tokens, op.shared_width, h), 1.0))
    T = moe_touched(op)
    if T > 0:
        me = moe_tokens_per_expert(op, T)
        parts.append((_lin(op, f"{op.name}.expert_gate_up", me, h, up_n * inter), T))
        parts.append((_lin(op, f"{op.name}.expert_down", me, inter, h), T))
    return parts


def weight_bytes(K: int, N: int, w_bits: int, group_size: int, symmetric: bool, hw: HardwareConfig) -> float:
    """Stored bytes of one dense [K, N] weight at ``w_bits`` with the metadata the config charges
    (group scales/zeros if ``count_group_metadata``; per-channel scales if ``count_channel_scales``)."""
    pol = hw.policy
    bits = K * N * w_bits
    if w_bits < 16 and group_size != -1 and pol.count_group_metadata:
        bits += N * math.ceil(K / group_size) * (pol.scale_bits + (0 if symmetric else w_bits))
    if w_bits < 16 and group_size == -1 and pol.count_channel_scales:
        bits += N * pol.scale_bits
    return bits / 8.0


def moe_weight_bytes(op: MoEOp, hw: HardwareConfig) -> dict[str, float]:
    """Stored weight bytes of one MoE layer: ``gate``, ``shared``, ``expert`` (ONE routed expert)
    and ``all_routed`` (all E). Loaded per call: gate + shared + touched x expert."""
    up_n = 2 if op.gated else 1
    h, inter = op.hidden, op.expert_intermediate
    q = (op.weight_bits, op.group_size, op.weight_symmetric, hw)
    expert = weight_bytes(h, up_n * inter, *q) + weight_bytes(inter, h, *q)
    shared = (weight_bytes(h, up_n * op.shared_width, *q) + weight_bytes(op.shared_width, h, *q)
              if op.shared_width else 0.0)
    gate = weight_bytes(h, op.experts, op.gate_bits, -1, True, hw)
    return {"gate": gate, "shared": shared, "expert": expert, "all_routed": expert * op.experts}


def _mv_reuse(lop: LinearOp, hw: HardwareConfig, h: _Hw, stage: str) -> OpSchedule:
    """A small per-expert batch of m_e tokens as m_e matrix-vector passes over each weight tile
    while it sits in the weight buffer: the weights are loaded once (as for one token), the MV
    compute and each token's input/output traffic are paid m_e times."""
    from dataclasses import replace

    m_e = lop.tokens
    s1 = _linear(lop.model_copy(update={"tokens": 1}), hw, h, stage)
    sp = hw.stage_policy(stage)
    load, store = dict(s1.load_bytes), dict(s1.store_bytes)
    if sp.activations_offchip:
        am = hw.placement.activations
        load[am] = load.get(am, 0.0) + (m_e - 1) * lop.in_features * lop.act_bits / 8.0
        store[am] = store.get(am, 0.0) + (m_e - 1) * lop.out_features * lop.out_bits / 8.0
    return replace(s1, load_bytes=_clean(load), store_bytes=_clean(store), mpe_cycles=s1.mpe_cycles * m_e,
                   macs=s1.macs * m_e)


def plan_moe(op: MoEOp, hw: HardwareConfig, stage: str) -> OpSchedule:
    """Lower one MoE op to its schedule (see the module docstring)."""
    h = _Hw.of(hw)
    load: dict[str, float] = {}
    store: dict[str, float] = {}
    mpe = 0.0
    steps = 0.0
    macs = 0.0
    notes = []
    for lop, mult in moe_parts(op):
        s = _linear(lop, hw, h, stage)
        if ".expert_" in lop.name and lop.tokens > hw.mpe.mv_max_rows:
            # the compiler's choice for a small per-expert batch: one MM GEMM padded to the array
            # rows, or m_e matrix-vector passes (weights re-read per token); the faster one
            s_mv = _mv_reuse(lop, hw, h, stage)
            if op_timing(s_mv, h.bpc).cycles < op_timing(s, h.bpc).cycles:
                s = s_mv
                notes.append(f"{lop.name.rsplit('.', 1)[1]}: {lop.tokens} MV passes, weights reused")
        for m, b in s.load_bytes.items():
            load[m] = load.get(m, 0.0) + b * mult
        for m, b in s.store_bytes.items():
            store[m] = store.get(m, 0.0) + b * mult
        mpe += s.mpe_cycles * mult
        steps += s.steps * mult
        macs += s.macs * mult
    T = moe_touched(op)
    notes.append(f"touched_experts={T:.3f}/{op.experts}")
    notes.append(f"tokens_per_expert={moe_tokens_per_expert(op, T)}")
    # SFU work: router scores + top-k, expert activation, intermediate quantization, combine
    M, k, inter, hid = op.tokens, op.top_k, op.expert_intermediate, op.hidden
    lanes = hw.sfu.lanes
    sm_el, sm_row = _sfu_cycles_per_element("softmax", hw)
    sfu = (M * op.experts * (sm_el + k * hw.sfu.reduce_cycles) + M * sm_row) / lanes
    act_el, _ = _sfu_cycles_per_element("silu_mul" if op.gated else "silu", hw)
    act_elems = M * k * inter + M * op.shared_width
    sfu += act_elems * act_el / lanes
    if op.act_bits < 16 and hw.policy.act_quant_unit == "sfu":
        q_el, q_row = _sfu_cycles_per_element("quantize", hw)
        rows = M * k + (M if op.shared_width else 0)
        sfu += (act_elems * q_el + rows * q_row) / lanes
    add_el, _ = _sfu_cycles_per_element("eltwise_add", hw)
    sfu += M * (k + (1 if op.shared_width else 0)) * hid * 2 * add_el / lanes  # scale + accumulate
    sp = hw.stage_policy(stage)
    if sp.activations_offchip:
        am = hw.placement.activations
        # the activation's inputs/outputs (gate,up in, product out) and the combine's reads
        act_bytes = (act_elems * 2 * op.out_bits + act_elems * op.out_bits) / 8.0
        comb = M * (k + 1) * hid * op.out_bits / 8.0
        load[am] = load.get(am, 0.0) + act_bytes * 2 / 3 + comb
        store[am] = store.get(am, 0.0) + act_bytes / 3 + M * hid * op.out_bits / 8.0
    pol = hw.policy
    return OpSchedule(
        name=op.name, kind="moe", repeat=op.repeat, steps=max(1, int(math.ceil(steps))),
        load_bytes=_clean(load), store_bytes=_clean(store), mpe_cycles=mpe, sfu_cycles=sfu,
        compute_hidden=sp.compute_hidden, double_buffered=pol.double_buffering,
        sfu_overlaps=pol.sfu_overlaps_mpe, macs=int(round(macs)), tile=None, notes=tuple(notes),
    )


# ----------------------------------------------------------------------------- Table-8-style report
SPEEDUP_SETTINGS = ("W4A6", "W4A8", "W3A16")
SPEEDUP_MODELS = ("kimi-vl-a3b", "qwen3-vl-30b-a3b")


def moe_layer_graph(model: str, *, setting: str, stage: str, tokens: int):
    """A graph of exactly one MoE op with the MoE shape of preset ``model`` (``tokens`` = M)."""
    from qesim.graph.builders import build_graph

    g = build_graph(model, stage=stage, seq_len=tokens if stage == "prefill" else 1,
                    batch=1 if stage == "prefill" else tokens, setting=setting,
                    context_len=0 if stage == "prefill" else 512)
    op = next(o for o in g.ops if o.kind == "moe").model_copy(update={"repeat": 1})
    return g.model_copy(update={"ops": [op], "name": f"{model}-moe-{stage}-{setting}", "meta": {"moe_only": True}})


def moe_speedup_table(hw: HardwareConfig, models=SPEEDUP_MODELS, settings=SPEEDUP_SETTINGS,
                      prefill_tokens: int = 128):
    """Speedups over fp16 (W16A16) for the expert shapes of ``models`` on ``hw``.

    Rows: (a) each expert linear alone as in QE Table 8 (single-linear graph, s = ``prefill_tokens``
    tokens, plain quantized and with QE adapters); (b) the whole MoE layer (gate + shared + routed
    experts, only touched experts loaded) at prefill s = ``prefill_tokens`` and decode (1 token).
    Returns a pandas DataFrame.
    """
    import pandas as pd

    from qesim.graph.builders import single_linear_graph
    from qesim.graph.presets import get_spec
    from qesim.perf.model import graph_cycles

    rows = []
    for model in models:
        spec = get_spec(model)
        m = spec.moe
        shapes = [("expert gate/up", spec.hidden, m.moe_intermediate), ("expert down", m.moe_intermediate, spec.hidden)]
        for label, k, n in shapes:
            for st in settings:
                base = graph_cycles(single_linear_graph(k, n, tokens=prefill_tokens, stage="prefill"), hw)
                for method in ("none", "qe"):
                    q = graph_cycles(single_linear_graph(k, n, tokens=prefill_tokens, setting=st, method=method,
                                                         stage="prefill"), hw)
                    rows.append(dict(model=model, part=label, shape=f"{k}x{n}", method=method, setting=st,
                                     stage="prefill", tokens=prefill_tokens, touched_experts=None,
                                     fp16_cycles=base, quant_cycles=q, speedup=base / q))
        for stage, toks in (("prefill", prefill_tokens), ("decode", 1)):
            base_g = moe_layer_graph(model, setting="W16A16", stage=stage, tokens=toks)
            base = graph_cycles(base_g, hw)
            for st in settings:
                g = moe_layer_graph(model, setting=st, stage=stage, tokens=toks)
                q = graph_cycles(g, hw)
                rows.append(dict(model=model, part="MoE layer", shape=f"E{m.experts} top{m.top_k} sh{m.shared_experts} "
                                 f"{spec.hidden}x{m.moe_intermediate}", method="none", setting=st, stage=stage,
                                 tokens=toks, touched_experts=round(moe_touched(g.ops[0]), 3),
                                 fp16_cycles=base, quant_cycles=q, speedup=base / q))
    return pd.DataFrame(rows)


def write_moe_speedup_report(out_dir, hw_names=("qe-paper-npu", "flightllm-u280")) -> list:
    """Write ``moe_speedup.csv`` and ``moe_speedup.md`` under ``out_dir``; returns the paths."""
    from pathlib import Path

    import pandas as pd

    from qesim.hw.loader import load_hw

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    frames = []
    for name in hw_names:
        df = moe_speedup_table(load_hw(name))
        df.insert(0, "hw", name)
        frames.append(df)
    df = pd.concat(frames, ignore_index=True)
    csv = out / "moe_speedup.csv"
    df.to_csv(csv, index=False, float_format="%.6g")
    md = [
        "# MoE expert shapes: Table-8-style NPU speedup over fp16",
        "",
        "Generated by `qesim moe speedup --out reports` (function `qesim.perf.moe.write_moe_speedup_report`). "
        "Regenerate; do not edit.",
        "",
        "Method: speedup = cycles of the fp16 (W16A16) graph / cycles of the quantized graph, same hardware "
        "config, analytical model. *Expert linear* rows cost one expert linear alone at s = 128 tokens exactly "
        "like QE Table 8 (`method=qe`: 32 shared + 8 routed rank-32 adapters, router). *MoE layer* rows cost "
        "one whole MoE FFN (`MoEOp`): fp16 router gate, shared experts, and only the experts the tokens touch "
        "(expected distinct experts under uniform top-k routing, column `touched_experts`), each touched "
        "expert processing the average M*k/T tokens (the faster of one padded MM GEMM or per-token MV passes reusing each weight tile). "
        "Adapters are not modelled on MoE experts. Models: language models of Kimi-VL-A3B (Moonlight shapes: "
        "64 experts, top-6, 2 shared, 2048x1408) and Qwen3-VL-30B-A3B (128 experts, top-8, 2048x768).",
        "",
        "Nothing here is measured on hardware; no paper reports these cells.",
        "",
    ]
    for name in hw_names:
        d = df[df.hw == name]
        md += [f"## `{name}`", "", "| model | part | shape | method | setting | stage | tokens | touched | speedup |",
               "|---|---|---|---|---|---|---|---|---|"]
        for r in d.itertuples():
            t = "" if r.touched_experts is None or pd.isna(r.touched_experts) else f"{r.touched_experts:.2f}"
            md.append(f"| {r.model} | {r.part} | {r.shape} | {r.method} | {r.setting} | {r.stage} | {r.tokens} | "
                      f"{t} | {r.speedup:.3f} |")
        md.append("")
    md += [
        "## Modelling notes",
        "",
        "- Decode (1 token) touches exactly top_k experts: the MoE layer loads gate + shared + k experts, "
        "not all E (tested in `tests/test_moe.py`). Prefill at 128 tokens touches nearly every expert "
        "(64 x (1 - (1 - 6/64)^128) = 64.0 for Kimi, 128 x (1 - (1 - 8/128)^128) = 128.0 for Qwen3), so the "
        "whole expert set streams once per layer.",
        "- Kimi-VL (Moonlight) uses MLA: the KV cache is costed at kv_lora_rank + qk_rope = 576 elements per "
        "token per layer (exact bytes); attention MACs use an AttentionOp with 1 KV head of width 288, i.e. "
        "0.53x the absorbed-MLA MACs (attention is a small share of the MoE model's cycles).",
        "- Not modelled: Qwen3's per-head q/k RMSNorm, expert-parallel/multi-device placement, routing skew "
        "(pass measured `expert_freqs` in the graph to use it), load imbalance across experts.",
        "",
    ]
    mdp = out / "moe_speedup.md"
    mdp.write_text("\n".join(md))
    return [csv, mdp]
