"""SFU fusion: which vector ops stream through the SFU behind the matrix op that feeds them.

FlightLLM hides its MISC (SFU) ops "between vectors" of MM / multi-head MV work [P §3.3]: the
SFU post-processes one output vector while the MPE computes the next. With
``policy.sfu_fusion`` on, an :class:`~qesim.graph.ir.SfuOp` is fused into the nearest preceding
*MPE op* (linear, attention or MoE) of the graph when

- every op between them is itself a fused SFU op (a chain: ``o_proj -> residual add -> norm ->
  activation quantize`` fuses whole),
- it has the same ``repeat`` and the same number of rows (tokens) as that MPE op, and
- its ``width`` equals the width of the vector it consumes: the MPE op's output width for the
  first op of a chain (a linear's ``out_features``, attention's ``heads * head_dim``, an MoE op's
  ``hidden``), else the previous fused SFU op's width.

So RoPE, which rotates q and k but follows ``v_proj`` in the graph, is *not* fused, and neither
are SFU ops after an embedding gather or at the head of a layer (the pre-attention norm): they
run standalone, as before.

A fused op's SFU cycles join the MPE op's step pipeline (overlapped with MPE compute when
``policy.sfu_overlaps_mpe``, else serial); the fused op runs ``max(MPE op steps, SFU op steps)``
steps (the SFU consumes the output block by block, so the finer granularity pipelines). With
that, fusing never costs cycles: the pipeline time ``max(M, C) + min(M, C)/n = (M + C)/n +
(1 - 1/n) max(M, C)`` is subadditive and non-increasing in ``n``, and fusion never adds bytes or
SFU cycles (tested with hypothesis). Its traffic changes as follows (bytes per call):
the SFU reads the vector it consumes from the output buffer instead of off-chip memory (its load
shrinks by one operand: ``rows * width * in_bits / 8``) and, for the first op of a chain, the MPE
op no longer stores its output (that vector is consumed only by the fused op). Every fused op's
own store is kept (a residual-add output is both normalised and kept for the next residual).
Where activations stay on chip (``activations_offchip: false``) only the cycles move.

Pure functions; :class:`qesim.perf.compiled.CompiledGraph` applies them (so the scalar estimate,
the sweep and the cycle model's schedule all fuse the same way).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from qesim.graph.ir import AttentionOp, LayerGraph, LinearOp, SfuOp
from qesim.hw.config import HardwareConfig

MPE_KINDS = ("linear", "attention", "moe")


def _out_shape(op) -> tuple[int, int]:
    """(rows, width) of an MPE op's output vector set."""
    if isinstance(op, LinearOp):
        return op.tokens, op.out_features
    if isinstance(op, AttentionOp):
        return op.batch * op.q_len, op.heads * op.head_dim
    return op.tokens, op.hidden  # MoEOp


@dataclass(frozen=True)
class Fused:
    """SFU op ``index`` is fused into MPE op ``into``; ``first``: it consumes the MPE op's output
    (so the MPE op's output store is dropped); ``streamed_bytes``: the operand it no longer loads
    (bytes per call, counted only where activations are off chip)."""

    index: int
    into: int
    first: bool
    streamed_bytes: float


def fusion_plan(graph: LayerGraph, hw: HardwareConfig) -> dict[int, Fused]:
    """Op index -> :class:`Fused` for every SFU op fused into an MPE op (empty when
    ``hw.policy.sfu_fusion`` is off)."""
    if not hw.policy.sfu_fusion:
        return {}
    plan: dict[int, Fused] = {}
    anchor: Optional[int] = None
    rows = width = 0
    chained = False
    for i, op in enumerate(graph.ops):
        if op.kind in MPE_KINDS:
            anchor, chained = i, False
            rows, width = _out_shape(op)
            continue
        if (isinstance(op, SfuOp) and anchor is not None and op.repeat == graph.ops[anchor].repeat
                and op.rows == rows and op.width == width):
            plan[i] = Fused(index=i, into=anchor, first=not chained,
                            streamed_bytes=op.rows * op.width * op.in_bits / 8.0)
            chained = True
            continue
        anchor = None  # anything else breaks the chain
    return plan


def sfu_traffic(op: SfuOp, hw: HardwareConfig, stage: str) -> tuple[dict, dict]:
    """(loads, stores) of a standalone SFU op, memory -> bytes per call: every operand vector is
    read and the result written when activations live off chip, nothing otherwise."""
    if not hw.stage_policy(stage).activations_offchip:
        return {}, {}
    mem = hw.placement.activations
    return ({mem: op.rows * op.width * op.in_bits / 8.0 * op.inputs},
            {mem: op.rows * op.width * op.out_bits / 8.0})


def sfu_const_bytes(op: SfuOp, hw: HardwareConfig) -> dict:
    """Bytes per call of an SFU op's constant vector operand (``const_elems`` at ``in_bits``, e.g.
    QE's per-linear omega), loaded from the weight memory like a linear's per-channel scales, so
    charged under ``policy.count_channel_scales``; fused or not, and wherever activations live."""
    if not op.const_elems or not hw.policy.count_channel_scales:
        return {}
    return {hw.placement.weights: op.const_elems * op.in_bits / 8.0}


def producer_output_bytes(op, hw: HardwareConfig, stage: str) -> float:
    """Bytes per call an MPE op stores for its output vectors (0 with activations on chip); the
    same amounts the cost model charges (linear: ``out_bits``; attention: 16 bits; MoE: ``out_bits``)."""
    if not hw.stage_policy(stage).activations_offchip:
        return 0.0
    r, w = _out_shape(op)
    bits = 16 if isinstance(op, AttentionOp) else op.out_bits
    return r * w * bits / 8.0


def fused_deltas(graph: LayerGraph, hw: HardwareConfig, plan: dict[int, Fused]) -> dict[int, tuple[dict, dict]]:
    """MPE op index -> (load delta, store delta), memory -> bytes per call, that fusing its SFU
    ops adds to it (see the module docstring); deltas of one memory may be negative for stores."""
    out: dict[int, tuple[dict, dict]] = {}
    for f in plan.values():
        op = graph.ops[f.index]
        load, store = sfu_traffic(op, hw, graph.stage)
        dl, ds = out.setdefault(f.into, ({}, {}))
        for m, b in load.items():
            dl[m] = dl.get(m, 0.0) + max(0.0, b - f.streamed_bytes)
        for m, b in sfu_const_bytes(op, hw).items():  # not streamed from the MPE op's output
            dl[m] = dl.get(m, 0.0) + b
        for m, b in store.items():
            ds[m] = ds.get(m, 0.0) + b
        if f.first:
            drop = producer_output_bytes(graph.ops[f.into], hw, graph.stage)
            if drop:
                m = hw.placement.activations
                ds[m] = ds.get(m, 0.0) - drop
    return out
