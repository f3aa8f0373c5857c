"""Attention over a KV cache: QK^T and PV on the MPE, softmax on the SFU.

QK^T and PV run at ``policy.attention_bits`` (causal prefill counts only the unmasked half);
K/V are read from the cache once per KV head (GQA shares it), new K/V rows written at kv_bits;
Q in / O out off-chip only if activations are off-chip. Steps: one per (batch, KV head).

``policy.attention_fused: false`` lowers attention as three ops, as frameworks without a fused
kernel run it: ``<name>.qk`` (QK^T: reads Q and K, writes the new K/V rows and the score matrix),
``<name>.softmax`` (reads the scores, writes the probabilities; op class softmax) and ``<name>.pv``
(reads the probabilities and V, writes O). The score matrix goes through off-chip memory at
``attention_bits`` (:func:`qesim.perf.terms.attention.unfused_attention_bytes`); each op pays its
own fixed cost. MACs and SFU work are those of the fused form, split between the ops.
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
        from qesim.perf.terms.actions import attention_actions

        self.actions = attention_actions(batch=b, heads=H, kv_heads=Hkv, head_dim=d, q_len=q, scores=self.scores,
                                         kv_len=kv, kv_bits=op.kv_bits, act_bits=op.act_bits,
                                         attention_bits=self.bits)

    def cost(self, pts: HwPoints) -> OpCost:
        op = self.op
        mpe = self.macs / pts.rate(self.mode, self.bits, op.act_bits)
        sfu = vector_cycles("softmax", op.batch * op.heads * self.scores, float(op.batch * op.heads * op.q_len), pts)
        return OpCost(self.name, "attention", self.repeat, dict(self.load), dict(self.store), mpe, sfu, self.steps,
                      self.macs, self.hidden, self.db, self.overlaps, actions=dict(self.actions))


class _AttentionPart(Lowered):
    """One of the three ops of unfused attention (see the module docstring)."""

    def __init__(self, whole: LoweredAttention, part: str, load: dict, store: dict):
        self.whole, self.part = whole, part
        self.name, self.kind, self.repeat = f"{whole.name}.{part}", ("sfu" if part == "softmax" else "attention"), \
            whole.repeat
        self.out_shape = whole.out_shape if part == "pv" else None
        self.load, self.store = load, store

    def cost(self, pts: HwPoints) -> OpCost:
        w, op = self.whole, self.whole.op
        z = np.zeros(pts.n)
        if self.part == "softmax":
            sfu = vector_cycles("softmax", op.batch * op.heads * w.scores, float(op.batch * op.heads * op.q_len), pts)
            return OpCost(self.name, "sfu", self.repeat, dict(self.load), dict(self.store), z, sfu,
                          float(max(1, min(op.batch * op.heads * op.q_len, 64))), 0, False, w.db, True, func="softmax")
        mpe = w.macs / 2.0 / pts.rate(w.mode, w.bits, op.act_bits)
        return OpCost(self.name, "attention", self.repeat, dict(self.load), dict(self.store), mpe, z, w.steps,
                      w.macs / 2.0, w.hidden, w.db, w.overlaps)


def unfused_parts(whole: LoweredAttention, hw: HardwareConfig, stage: str) -> list:
    """The three ops of unfused attention: QK^T, softmax, PV (bytes per call, see the module docstring)."""
    from qesim.perf.terms.attention import unfused_attention_bytes

    op, sp = whole.op, hw.stage_policy(stage)
    b, H, Hkv, d, q, kv = op.batch, op.heads, op.kv_heads, op.head_dim, op.q_len, op.kv_len
    kvm, am = hw.placement.kv_cache, hw.placement.activations
    sb = unfused_attention_bytes(b, H, whole.scores, hw.policy.attention_bits)
    half = lambda x: float(x) / 2.0  # noqa: E731  (K or V of the cache)
    qk_load = {kvm: half(2.0 * b * Hkv * kv * d * op.kv_bits / 8.0)}
    qk_store = {kvm: 2.0 * b * Hkv * q * d * op.kv_bits / 8.0}
    pv_load = {kvm: half(2.0 * b * Hkv * kv * d * op.kv_bits / 8.0)}
    pv_store: dict = {}
    if sp.activations_offchip:
        qk_load[am] = qk_load.get(am, 0.0) + b * q * H * d * op.act_bits / 8.0
        pv_store[am] = pv_store.get(am, 0.0) + b * q * H * d * 16 / 8.0
    add = lambda dct, m, v: dct.__setitem__(m, dct.get(m, 0.0) + float(v))  # noqa: E731
    add(qk_store, am, sb["qk_store"])
    sm_load, sm_store = {am: float(sb["softmax_load"])}, {am: float(sb["softmax_store"])}
    add(pv_load, am, sb["pv_load"])
    return [_AttentionPart(whole, "qk", qk_load, qk_store), _AttentionPart(whole, "softmax", sm_load, sm_store),
            _AttentionPart(whole, "pv", pv_load, pv_store)]


@lowering("attention")
def lower_attention(op: AttentionOp, hw: HardwareConfig, stage: str):
    whole = LoweredAttention(op, hw, stage)
    if hw.policy.attention_fused:
        return whole
    return unfused_parts(whole, hw, stage)
