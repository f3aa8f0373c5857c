"""The cost model's public surface (kept for callers of ``qesim.perf.model``).

The formulas live in :mod:`qesim.perf.ops` (one lowering per op kind), :mod:`qesim.perf.planner`
(tiling), :mod:`qesim.perf.timing` (the pipeline formula) and :mod:`qesim.perf.compiled` (a graph
over arrays of design points); :mod:`qesim.perf.estimate` is the n = 1 call.
"""

from qesim.perf.estimate import (  # noqa: F401
    FP16_BASELINE, OP_COLUMNS, GraphEstimate, clear_caches, compiled_graph, estimate_graph, estimate_schedule,
    fp16_baseline, graph_cycles, plan_graph, speedup,
)
from qesim.perf.ops.linear import (  # noqa: F401
    LinearTerms, adapter_macs, adapter_params, linear_terms, touched_experts, weight_bytes,
)
from qesim.perf.ops.routing import expected_touched  # noqa: F401
from qesim.perf.ops.sfu import sfu_cycles_per_element  # noqa: F401
