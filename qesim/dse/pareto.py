"""Pareto fronts over sweep results.

A point is on the front when no other point is at least as good in every objective and
strictly better in one. Objectives are column names with a direction, e.g.
``{"latency_s": "min", "sram_bytes": "min", "mpe_macs_per_cycle": "min"}``. Rows with equal
objective values are all kept (neither dominates the other).
"""

from __future__ import annotations

from typing import Mapping, Optional, Sequence

import numpy as np
import pandas as pd


def pareto_mask(values: np.ndarray) -> np.ndarray:
    """Boolean mask of the non-dominated rows of ``values`` (n x k), every objective minimised.

    Rows are visited in lexicographic order; every row still unmarked when visited is on the
    front (anything dominating it comes earlier and would have marked it), and marks the rows it
    dominates. Cost: O(front size x n x k).
    """
    v = np.asarray(values, dtype=float)
    if v.ndim != 2:
        raise ValueError("values must be 2-D (rows x objectives)")
    n = len(v)
    if n == 0:
        return np.zeros(0, dtype=bool)
    order = np.lexsort(v.T[::-1])  # first objective is the primary key
    dominated = np.zeros(n, dtype=bool)
    for i in order:
        if dominated[i]:
            continue
        d = np.all(v[i] <= v, axis=1) & np.any(v[i] < v, axis=1)
        dominated |= d
    return ~dominated


def pareto_front(df: pd.DataFrame, objectives: Mapping[str, str], by: Optional[Sequence[str]] = None) -> pd.DataFrame:
    """Rows of ``df`` on the Pareto front of ``objectives`` (column -> 'min' | 'max').

    ``by``: compute one front per group (e.g. per workload); the result keeps ``df``'s order.
    """
    for c, d in objectives.items():
        if c not in df.columns:
            raise KeyError(f"objective column {c!r} not in the table")
        if d not in ("min", "max"):
            raise ValueError(f"objective {c!r}: direction must be 'min' or 'max' (got {d!r})")
    if df.empty:
        return df.copy()

    def one(g: pd.DataFrame) -> np.ndarray:
        vals = np.column_stack([g[c].to_numpy(dtype=float) * (1 if d == "min" else -1)
                                for c, d in objectives.items()])
        return pareto_mask(vals)

    if not by:
        return df[one(df)]
    mask = np.zeros(len(df), dtype=bool)
    pos = np.arange(len(df))
    for _, idx in df.groupby(list(by), sort=False, dropna=False).indices.items():
        mask[pos[idx]] = one(df.iloc[idx])
    return df[mask]
