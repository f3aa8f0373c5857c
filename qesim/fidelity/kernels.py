"""The one-op layer graph of a measured kernel, and the predictor that costs it.

- ``matmul`` M, N, K: x[M, K] @ W[K, N] in 16-bit -> a single linear (``in_features`` = K,
  ``out_features`` = N, ``tokens`` = M) at W16A16, prefill (MV mode if M <= ``mpe.mv_max_rows``).
- ``softmax`` / ``layernorm`` M, N: one SFU op over M rows of N elements, fp16 in and out.
- ``gelu`` n: one SFU op over n elements, laid out as rows of 1,024 (an elementwise op has no row
  structure; the layout only sets the op's pipeline steps, min(rows, 64)).

Every graph is costed by the cost model itself (:func:`predict`), so a calibrated config predicts
whole models with the same terms it was fitted with.
"""

from __future__ import annotations

import numpy as np

from qesim.graph.builders import single_linear_graph
from qesim.graph.ir import LayerGraph, SfuOp
from qesim.hw.config import HardwareConfig

GELU_ROW = 1024


def kernel_graph(kernel: str, M: int, N: int, K: int) -> LayerGraph:
    """The layer graph of one measured kernel (see the module docstring)."""
    if kernel == "matmul":
        return single_linear_graph(int(K), int(N), tokens=int(M), setting="W16A16", stage="prefill",
                                   name=f"matmul_{M}x{N}x{K}")
    if kernel in ("softmax", "layernorm"):
        op = SfuOp(name=f"{kernel}_{M}x{N}", func=kernel, rows=int(M), width=int(N))
    elif kernel == "gelu":
        n = int(M)
        rows = max(1, n // GELU_ROW)
        op = SfuOp(name=f"gelu_{n}", func="gelu", rows=rows, width=n // rows)
    else:
        raise ValueError(f"no graph for kernel {kernel!r}")
    return LayerGraph(name=op.name, model=op.name, stage="prefill", batch=1, seq_len=op.rows, context_len=0,
                      ops=[op], meta={"measured_kernel": kernel})


def kernel_graphs(table) -> list[LayerGraph]:
    """One graph per row of a :func:`qesim.fidelity.measured.read_measured` table."""
    return [kernel_graph(r.kernel, r.M, r.N, r.K) for r in table.itertuples(index=False)]


def predict(hw: HardwareConfig, graphs: list[LayerGraph]) -> np.ndarray:
    """Predicted latency (seconds) of each graph on ``hw``, by the analytical cost model."""
    from qesim.perf.model import estimate_graph

    return np.array([estimate_graph(g, hw).latency_s for g in graphs])


class Predictor:
    """``predict(values, idx) -> seconds`` for the kernels of a measured table on ``hw`` with the
    config fields ``values`` (dotted path -> number) replaced: the cost model's latency of each
    kernel graph. Each graph is lowered once (``qesim.perf.compiled_graph``); fitted fields are
    point fields (``qesim.perf.points``), so :meth:`many` evaluates several parameter vectors as
    design points of one call (the fit's finite-difference Jacobian)."""

    def __init__(self, hw: HardwareConfig, table):
        from qesim.perf.estimate import compiled_graph
        from qesim.perf.points import is_point_field

        self.hw = hw
        self.graphs = kernel_graphs(table)
        self.compiled = [compiled_graph(g, hw) for g in self.graphs]
        self._is_point = is_point_field

    def many(self, values: list, idx) -> np.ndarray:
        """Latencies (seconds), shape (len(values), len(idx)): one row per parameter dict."""
        from qesim.perf.points import HwPoints

        n = len(values)
        paths = sorted({k for v in values for k in v})
        bad = [p for p in paths if not self._is_point(p)]
        if bad:
            raise ValueError(f"not point fields of the cost model: {bad}")
        over = {}
        for p in paths:
            col = []
            for v in values:
                if p in v:
                    col.append(float(v[p]))
                else:  # the config's own value
                    col.append(np.nan)
            over[p] = np.array(col)
        pts = HwPoints(self.hw, n, over=self._fill(over, n))
        out = np.empty((n, len(np.asarray(idx))))
        for j, i in enumerate(np.asarray(idx)):
            out[:, j] = self.compiled[i].evaluate(pts).latency_s
        return out

    def _fill(self, over: dict, n: int) -> dict:
        """NaN entries (field not given for that row) -> the config's own value."""
        from qesim.perf.points import HwPoints

        base = HwPoints(self.hw, 1)
        filled = {}
        for p, col in over.items():
            if np.isnan(col).any():
                own = _own_value(base, p)
                col = np.where(np.isnan(col), own, col)
            filled[p] = col
        return filled

    def __call__(self, values: dict, idx) -> np.ndarray:
        return self.many([values], idx)[0]


def _own_value(pts, path: str) -> float:
    """The value of point field ``path`` in a one-point HwPoints (NaN memory efficiency stays NaN)."""
    parts = path.split(".")
    if parts[0] == "terms":
        if parts[1] == "correction_factor":
            return float(pts.correction[0])
        return float(pts.terms[parts[1]][parts[2]][0])
    raise ValueError(f"no default for {path}")


def make_predictor(hw: HardwareConfig, table) -> Predictor:
    """The cost model's predictor for the kernels of ``table`` on ``hw`` (see :class:`Predictor`)."""
    return Predictor(hw, table)
