"""Fidelity terms of the cost model (issue 16): pure numpy functions over arrays of design points.

Each function takes arrays (one entry per design point or per op; scalars broadcast) of cycles,
bytes and shapes plus config numbers, and returns arrays. The cost model (``qesim.perf``) applies
them where it times a schedule, and the cycle model replays the same per-op amounts; nothing
here reads a graph or a config object except :func:`op_class`, which names the config block
(``HardwareConfig.terms.<class>``) that holds an op's terms.

- :mod:`.overheads`  fixed cost per call (kernel launch / instruction issue), host floor,
  the FlightLLM profiler's correction factor.
- :mod:`.efficiency` achieved compute efficiency (peak fraction, wave quantisation over
  ``mpe.cores``, small-K roll-off) and achieved memory bandwidth per op class.
- :mod:`.dequant`    dequantization work of weight-only formats.
- :mod:`.attention`  the off-chip traffic of unfused attention (QK^T, softmax, PV as three ops).
- :mod:`.collectives` multi-device communication (all-reduce, all-to-all, p2p) and pipeline bubbles
  (issue 13), over ``HardwareConfig.interconnect``.

Energy, area and cost (issue 14), same style: :mod:`.energy` (energy per action x action counts,
static power x time, per op / pass / token, average power), :mod:`.area` (area per unit, die cost),
:mod:`.tech` (Stillmaker-Baas node scaling), :mod:`.actions` (action counts per op from the
schedule) and :mod:`.costing` (ties them to one estimate).

Every default of the config fields is neutral: with them each function returns its input
unchanged (``x * 1``, ``+ 0``, ``max(0, x)``), so today's numbers are reproduced exactly.
"""

from qesim.perf.terms.attention import unfused_attention_bytes
from qesim.perf.terms.dequant import dequant_cycles, dequant_ops
from qesim.perf.terms.efficiency import compute_efficiency, k_rolloff, memory_bytes_per_cycle, wave_efficiency
from qesim.perf.terms.overheads import call_cycles, corrected, floor_cycles, op_class, overhead_cycles, with_overheads

__all__ = [
    "call_cycles", "corrected", "op_class", "overhead_cycles", "floor_cycles", "with_overheads", "compute_efficiency", "k_rolloff", "wave_efficiency",
    "memory_bytes_per_cycle", "dequant_ops", "dequant_cycles", "unfused_attention_bytes",
]
