"""Attention over a KV cache: QK^T and PV on the MPE, softmax on the SFU.

QK^T and PV run at ``policy.attention_bits`` (causal prefill counts only the unmasked half);
K/V are read from the cache once per KV head (GQA shares it), new K/V rows written at kv_bits;
Q in / O out off-chip only if activations are off-chip. Steps: one per (batch, KV head).
"""

from __future__ import annotations

import numpy as np

from qesim.graph.ir import AttentionOp
from qesim.hw.config import HardwareConfig
from qesim.perf.ops.base import Lowered, OpCost, lowering
from qesim.perf.ops.sfu import vector_cycles
from qesim.perf.points import HwPoints


def score_pairs(op: AttentionOp) -> float:
    """Unmasked (query, key) pairs per head."""
    q, kv = op.q_len, op.kv_len
    if op.causal:
        return q * (kv - q) + q * (q + 1) / 2.0
    return float(q * kv)


class LoweredAttention(Lowered):
    def __init__(self, op: AttentionOp, hw: HardwareConfig, stage: str):
        sp, pol = hw.stage_policy(stage), hw.policy
        self.op, self.name, self.kind, self.repeat = op, op.name, "attention", op.repeat
        b, H, Hkv, d, q, kv = op.batch, op.heads, op.kv_heads, op.head_dim, op.q_len, op.kv_len
        self.out_shape = (b * q, H * d)
        self.scores = score_pairs(op)
        self.macs = 2.0 * b * H * self.scores * d  # QK^T and PV
        self.mode = "mv" if q <= hw.mpe.mv_max_rows else "mm"
        self.bits = pol.attention_bits
        kvm = hw.placement.kv_cache
        self.load = {kvm: 2.0 * b * Hkv * kv * d * op.kv_bits / 8.0}
        self.store = {kvm: 2.0 * b * Hkv * q * d * op.kv_bits / 8.0}
        if sp.activations_offchip:
            am = hw.placement.activations
            self.load[am] = self.load.get(am, 0.0) + b * q * H * d * op.act_bits / 8.0
            self.store[am] = self.store.get(am, 0.0) + b * q * H * d * 16 / 8.0
        self.steps = float(max(1, b * Hkv))
        self.hidden, self.db, self.overlaps = sp.compute_hidden, pol.double_buffering, pol.sfu_overlaps_mpe

    def cost(self, pts: HwPoints) -> OpCost:
        op = self.op
        mpe = self.macs / pts.rate(self.mode, self.bits, op.act_bits)
        sfu = vector_cycles("softmax", op.batch * op.heads * self.scores, float(op.batch * op.heads * op.q_len), pts)
        return OpCost(self.name, "attention", self.repeat, dict(self.load), dict(self.store), mpe, sfu, self.steps,
                      self.macs, self.hidden, self.db, self.overlaps)


@lowering("attention")
def lower_attention(op: AttentionOp, hw: HardwareConfig, stage: str) -> LoweredAttention:
    return LoweredAttention(op, hw, stage)
