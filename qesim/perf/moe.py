"""Mixture-of-experts costing (the lowering lives in :mod:`qesim.perf.ops.moe`)."""

from qesim.perf.ops.moe import (  # noqa: F401
    LoweredMoE, moe_parts, moe_tokens_per_expert, moe_touched, moe_weight_bytes,
)
from qesim.perf.ops.linear import weight_bytes  # noqa: F401


def plan_moe(op, hw, stage: str):
    """The :class:`~qesim.perf.schedule.OpSchedule` of one MoE op on ``hw`` (n = 1)."""
    from qesim.perf.compiled import CompiledGraph  # noqa: F401  (registers the lowerings)
    from qesim.perf.points import HwPoints
    from qesim.perf.schedule import schedule_of

    return schedule_of(LoweredMoE(op, hw, stage).cost(HwPoints.of(hw)))
