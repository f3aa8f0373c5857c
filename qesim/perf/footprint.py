"""Memory footprint: the bytes a pass keeps resident in each off-chip memory, against its capacity.

Read-only over the graph and the hardware config (it changes no cycle or byte count). Per memory
(``placement`` says which one holds each class):

- ``weights``: every linear's weights at ``weight_bits`` times the kept fraction of N:M sparsity
  plus sparse-index bits (as the cost model loads them), per-output-channel scales
  (``policy.scale_bits`` per output, quantized per-channel weights) and group-wise scales /
  zero-points (``ceil(K / g)`` groups per output); MoE layers: the router gate at ``gate_bits``,
  every routed expert (all are resident, not only the touched ones) and the shared-expert MLP.
  Each op counts ``repeat`` times (one copy per layer). A linear that reuses another op's
  weights (a tied lm_head) adds nothing. Biases and norm weights are left out (< 0.1 %).
- ``embeddings``: the embedding tables (vocab x hidden at their bits).
- ``adapters``: low-rank adapters and routers of every linear, all experts, at ``adapter_bits``
  (resident in their memory even with ``policy.adapters_resident``, which preloads a copy on chip).
- ``kv_cache``: K and V of every attention op for the ``kv_len`` tokens held after the pass (the
  context plus the new tokens; a sliding-window layer holds at most its window), at ``kv_bits``,
  ``2 x batch x kv_heads x head_dim`` elements per token (MLA: the latent + RoPE key).
- ``activations``: when the stage keeps activations off chip, the largest working set of one op
  (its inputs plus its output) -- a lower bound on the live activations; 0 when they stay on chip.

Units: bytes; capacities from ``capacity_gib`` (GiB = 2^30 bytes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from qesim.graph.ir import AttentionOp, EmbeddingOp, LayerGraph, LinearOp, MoEOp, SfuOp
from qesim.hw.config import HardwareConfig

COMPONENTS = ("weights", "embeddings", "adapters", "kv_cache", "activations")
GIB = float(2 ** 30)


@dataclass(frozen=True)
class Footprint:
    """Resident bytes per memory and component, and the capacities they are held against."""

    components: dict = field(default_factory=dict)  # memory -> component -> bytes
    capacity_bytes: dict = field(default_factory=dict)  # memory -> bytes

    @property
    def bytes(self) -> dict:
        """Total resident bytes per memory."""
        return {m: float(sum(c.values())) for m, c in self.components.items()}

    @property
    def over_bytes(self) -> dict:
        """Bytes beyond the capacity, per memory that overflows."""
        return {m: b - self.capacity_bytes[m] for m, b in self.bytes.items() if b > self.capacity_bytes[m]}

    @property
    def fits(self) -> bool:
        """Every memory holds what is placed in it."""
        return not self.over_bytes

    def to_dict(self) -> dict:
        return {"footprint_bytes": self.bytes, "footprint_detail_bytes": {m: dict(c) for m, c in self.components.items()},
                "capacity_bytes": dict(self.capacity_bytes), "fits": self.fits}

    def describe(self) -> str:
        """One line: per memory, used / capacity GiB and the components."""
        parts = []
        for m, c in self.components.items():
            comp = ", ".join(f"{k} {v / GIB:.2f}" for k, v in c.items() if v)
            parts.append(f"{m} {sum(c.values()) / GIB:.2f} of {self.capacity_bytes[m] / GIB:.4g} GiB"
                         + (f" ({comp})" if comp else ""))
        return "; ".join(parts)

    def warning(self) -> str | None:
        """The 'does not fit' message, or None when it fits."""
        if self.fits:
            return None
        over = ", ".join(f"{m} by {b / GIB:.2f} GiB" for m, b in self.over_bytes.items())
        return f"does not fit in memory ({over}): {self.describe()}"

    def __repr__(self) -> str:
        return f"<Footprint fits={self.fits}: {self.describe()}>"


def _scale_bits(hw: HardwareConfig) -> int:
    return hw.policy.scale_bits


def _quant_meta_bytes(K: int, N: int, w_bits: int, group: int, symmetric: bool, hw: HardwareConfig) -> float:
    """Scales (and zero-points) stored with a K x N weight matrix, bytes."""
    if w_bits >= 16:
        return 0.0
    sb = _scale_bits(hw)
    if group == -1:
        return N * sb / 8.0
    return N * math.ceil(K / group) * (sb + (0 if symmetric else w_bits)) / 8.0


def _linear_weight_bytes(op: LinearOp, hw: HardwareConfig) -> float:
    sp = hw.mpe.sparsity
    kept = sp.kept_fraction(op.weight_density)
    idx = min(sp.index_bits_per_kept_weight, 1.0 / kept) if kept < 1.0 else 0.0
    K, N = op.in_features, op.out_features
    return K * N * kept * (op.weight_bits + idx) / 8.0 + _quant_meta_bytes(
        K, N, op.weight_bits, op.group_size, op.weight_symmetric, hw)


def _adapter_bytes(op: LinearOp) -> float:
    ad = op.adapters
    if ad is None:
        return 0.0
    K, N = op.in_features, op.out_features
    params = ad.shared_rank * (K + N) + ad.routed_experts * ad.routed_rank * (K + N)
    if ad.router and ad.routed_experts:
        params += K * ad.routed_experts
    return params * ad.adapter_bits / 8.0


def _moe_weight_bytes(op: MoEOp, hw: HardwareConfig) -> float:
    h, ei = op.hidden, op.expert_intermediate
    per_mat = h * ei * op.weight_bits / 8.0 + _quant_meta_bytes(h, ei, op.weight_bits, op.group_size,
                                                                 op.weight_symmetric, hw)
    shared = 0.0
    if op.shared_width:
        sw = op.shared_width
        shared = op.mats * (h * sw * op.weight_bits / 8.0 + _quant_meta_bytes(h, sw, op.weight_bits, op.group_size,
                                                                                op.weight_symmetric, hw))
    return h * op.experts * op.gate_bits / 8.0 + op.experts * op.mats * per_mat + shared


def _working_set(op) -> float:
    """Bytes of one op's inputs plus output (activations only)."""
    if isinstance(op, LinearOp):
        return op.tokens * (op.in_features * op.act_bits + op.out_features * op.out_bits) / 8.0
    if isinstance(op, SfuOp):
        return op.rows * op.width * (op.inputs * op.in_bits + op.out_bits) / 8.0
    if isinstance(op, AttentionOp):
        return op.batch * op.q_len * op.heads * op.head_dim * (op.act_bits + 16) / 8.0
    if isinstance(op, EmbeddingOp):
        return op.tokens * op.hidden * op.bits / 8.0
    if isinstance(op, MoEOp):
        return op.tokens * op.hidden * (op.act_bits + op.out_bits) / 8.0
    return 0.0


def footprint(graph: LayerGraph, hw: HardwareConfig) -> Footprint:
    """The resident bytes of ``graph`` on ``hw`` per memory and component (see the module docstring)."""
    mems = ["hbm"] + (["ddr"] if hw.ddr is not None else [])
    comp = {m: {c: 0.0 for c in COMPONENTS} for m in mems}
    pl = hw.placement

    def add(mem: str, what: str, b: float) -> None:
        comp[mem][what] += float(b)

    for op in graph.ops:
        if isinstance(op, LinearOp):
            if op.weight_shared_with is None:
                add(pl.weights, "weights", _linear_weight_bytes(op, hw) * op.repeat)
            add(pl.adapters, "adapters", _adapter_bytes(op) * op.repeat)
        elif isinstance(op, MoEOp):
            add(pl.weights, "weights", _moe_weight_bytes(op, hw) * op.repeat)
        elif isinstance(op, EmbeddingOp):
            add(pl.embeddings, "embeddings", op.vocab * op.hidden * op.bits / 8.0 * op.repeat)
        elif isinstance(op, AttentionOp):
            add(pl.kv_cache, "kv_cache", 2.0 * op.batch * op.kv_heads * op.head_dim * op.kv_len * op.kv_bits / 8.0
                * op.repeat)
    if hw.stage_policy(graph.stage).activations_offchip:
        add(pl.activations, "activations", max((_working_set(op) for op in graph.ops), default=0.0))
    caps = {m: hw.memory(m).capacity_gib * GIB for m in mems}
    return Footprint(components=comp, capacity_bytes=caps)
