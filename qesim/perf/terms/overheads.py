"""Fixed cost per op call, the host-side floor, and the profiler correction factor (cycles).

Units: cycles of the config's clock (``frequency_hz``); ``*_us`` in microseconds.
"""

from __future__ import annotations

import numpy as np

#: SFU functions -> op class; every other SFU function is 'elementwise'
_SFU_CLASS = {"softmax": "softmax", "layernorm": "norm", "rmsnorm": "norm"}


def op_class(kind: str, func: str | None = None) -> str:
    """The ``HardwareConfig.terms`` block of an op: 'linear' (linear and MoE), 'attention', 'softmax',
    'norm' (layernorm, rmsnorm), 'elementwise' (every other SFU function) or 'embedding'."""
    if kind in ("linear", "moe"):
        return "linear"
    if kind in ("attention", "embedding"):
        return kind
    if kind == "sfu":
        return _SFU_CLASS.get(func or "", "elementwise")
    raise ValueError(f"no op class for op kind {kind!r}")


def overhead_cycles(frequency_hz, *, steps=1, fixed_us=0.0, fixed_cycles=0.0, issue_cycles_per_step=0.0):
    """Cycles an op call pays on top of its work: ``fixed_us * f + fixed_cycles + issue_cycles_per_step * steps``."""
    f = np.asarray(frequency_hz, dtype=float)
    return (np.asarray(fixed_us, dtype=float) * 1e-6 * f + np.asarray(fixed_cycles, dtype=float)
            + np.asarray(issue_cycles_per_step, dtype=float) * np.asarray(steps, dtype=float))


def floor_cycles(frequency_hz, floor_us=0.0):
    """The minimum cycles of one call: ``floor_us * f``."""
    return np.asarray(floor_us, dtype=float) * 1e-6 * np.asarray(frequency_hz, dtype=float)


def with_overheads(work_cycles, fixed, floor):
    """``max(floor, fixed + work)`` (cycles): THE overhead rule, used by :func:`qesim.perf.timing.time_ops`."""
    return np.maximum(floor, np.asarray(work_cycles, dtype=float) + fixed)


def call_cycles(work_cycles, frequency_hz, *, steps=1, fixed_us=0.0, fixed_cycles=0.0,
                issue_cycles_per_step=0.0, floor_us=0.0):
    """Cycles of one op call with its fixed costs:

        max(floor_us * f, fixed_us * f + fixed_cycles + issue_cycles_per_step * steps + work_cycles)

    ``work_cycles``: the op's pipelined memory/compute time (cycles); ``frequency_hz``: clock (Hz);
    ``steps``: tile steps of the op (each issues its instructions); the rest as in
    :class:`qesim.hw.config.OpClassTerms`. All zero: returns ``work_cycles`` unchanged."""
    fx = overhead_cycles(frequency_hz, steps=steps, fixed_us=fixed_us, fixed_cycles=fixed_cycles,
                         issue_cycles_per_step=issue_cycles_per_step)
    return with_overheads(work_cycles, fx, floor_cycles(frequency_hz, floor_us))


def corrected(cycles, correction_factor=1.0):
    """An instruction time divided by the profiler's correction factor (FlightLLM artifact:
    ``inst_profiler.py`` divides every queue's instruction time, loads and stores included, by 3.2).
    Dimensionless factor; 1 returns ``cycles`` unchanged."""
    return np.asarray(cycles, dtype=float) / np.asarray(correction_factor, dtype=float)
