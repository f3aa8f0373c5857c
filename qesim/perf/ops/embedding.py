"""Embedding lookup: a gather of tokens x hidden from its memory (no compute)."""

from __future__ import annotations

import numpy as np

from qesim.graph.ir import EmbeddingOp
from qesim.hw.config import HardwareConfig
from qesim.perf.ops.base import Lowered, OpCost, lowering
from qesim.perf.points import HwPoints


class LoweredEmbedding(Lowered):
    def __init__(self, op: EmbeddingOp, hw: HardwareConfig, stage: str):
        sp = hw.stage_policy(stage)
        self.op, self.name, self.kind, self.repeat = op, op.name, "embedding", op.repeat
        self.load = {hw.placement.embeddings: op.tokens * op.hidden * op.bits / 8.0}
        am = hw.placement.activations
        self.store = {am: op.tokens * op.hidden * 16 / 8.0} if sp.activations_offchip else {}
        self.steps = float(max(1, min(op.tokens, 64)))  # gathered in per-token chunks
        self.db = hw.policy.double_buffering
        from qesim.perf.terms.actions import embedding_actions

        self.actions = embedding_actions(tokens=op.tokens, hidden=op.hidden)

    def cost(self, pts: HwPoints) -> OpCost:
        z = np.zeros(pts.n)
        return OpCost(self.name, "embedding", self.repeat, dict(self.load), dict(self.store), z, z, self.steps, 0,
                      False, self.db, True, actions=dict(self.actions))


@lowering("embedding")
def lower_embedding(op: EmbeddingOp, hw: HardwareConfig, stage: str) -> LoweredEmbedding:
    return LoweredEmbedding(op, hw, stage)
