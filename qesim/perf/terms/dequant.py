"""Dequantization work of weight-only formats (group-wise int4/int3 -> the MPE's input precision).

Operations are counted per stored weight element and per group; they run on the unit that
``terms.dequant.unit`` names at ``sfu.lanes`` operations per cycle.
"""

from __future__ import annotations

import numpy as np


def dequant_ops(weights, groups, ops_per_weight, ops_per_group=0.0):
    """Vector operations to dequantize ``weights`` stored weight elements in ``groups`` groups."""
    return (np.asarray(weights, dtype=float) * np.asarray(ops_per_weight, dtype=float)
            + np.asarray(groups, dtype=float) * np.asarray(ops_per_group, dtype=float))


def dequant_cycles(ops, lanes):
    """Cycles of ``ops`` vector operations on ``lanes`` lanes (one operation per lane per cycle)."""
    return np.asarray(ops, dtype=float) / np.asarray(lanes, dtype=float)
