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


def make_predictor(hw: HardwareConfig, table):
    """``predict(values, idx) -> seconds`` for the kernels of ``table`` on ``hw`` with the config
    fields ``values`` (dotted path -> number) replaced: the cost model's latency of each kernel graph."""
    graphs = kernel_graphs(table)

    def predict(values: dict, idx) -> np.ndarray:
        h = hw.with_updates(values) if values else hw
        return predict_graphs(h, [graphs[i] for i in np.asarray(idx)])

    return predict


def predict_graphs(hw: HardwareConfig, graphs: list) -> np.ndarray:
    return predict(hw, graphs)
