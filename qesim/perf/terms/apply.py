"""The one call site of the per-op fidelity terms: :func:`apply_terms` maps the op costs of a
graph at ``n`` points to the costs the pipeline formula times.

For each op (its class from :func:`qesim.perf.terms.op_class`, its block ``hw.terms.<class>`` as
per-point arrays in :class:`~qesim.perf.points.HwPoints`):

- compute: MPE cycles / :func:`~qesim.perf.terms.efficiency.compute_efficiency` (peak fraction,
  K roll-off on the op's K, wave quantisation of its M x N output over ``mpe.cores`` when
  ``terms.wave_tile`` is set); SFU-only ops (vector classes) divide their SFU cycles by the
  class's peak fraction;
- memory: the class's achieved bytes/cycle (``memory_efficiency``, else the memory's own);
- the profiler correction factor divides MPE and SFU cycles and multiplies bytes/cycle
  (every instruction time, loads and stores included, divided by it);
- fixed cost per call (``fixed_us``, ``fixed_cycles``, ``issue_cycles_per_step`` x steps) and
  the floor (``floor_us``), which :func:`qesim.perf.timing.time_ops` adds as
  ``max(floor, fixed + pipeline)``.

With every field neutral the costs come back unchanged (the same objects), so today's numbers
are reproduced exactly. Dequantization (``terms.dequant``) and unfused attention
(``policy.attention_fused``) change an op's own work and live in its lowering
(:mod:`qesim.perf.ops.linear`, :mod:`qesim.perf.ops.attention`).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from qesim.perf.terms.efficiency import compute_efficiency
from qesim.perf.terms.overheads import floor_cycles, op_class, overhead_cycles


def _neutral(t: dict, correction) -> bool:
    return (not np.any(t["fixed_us"]) and not np.any(t["fixed_cycles"]) and not np.any(t["issue_cycles_per_step"])
            and not np.any(t["floor_us"]) and np.all(t["compute_efficiency"] == 1.0) and not np.any(t["k_half"])
            and np.isnan(t["memory_efficiency"]).all() and np.all(correction == 1.0))


def apply_terms(costs: list, pts, hw) -> list:
    """The op costs with the fidelity terms applied (see the module docstring)."""
    wave = hw.terms.wave_tile
    cores = hw.mpe.cores
    out = []
    corr = pts.correction
    neutral = pts.memo.get("neutral_terms")
    if neutral is None:  # per op class, once per point set
        neutral = pts.memo["neutral_terms"] = {k: _neutral(t, corr) for k, t in pts.terms.items()}
    for c in costs:
        cls = op_class(c.kind, c.func)
        t = pts.terms[cls]
        if neutral[cls] and (wave is None or c.shape is None):
            out.append(c)
            continue
        mpe, sfu = c.mpe_cycles, c.sfu_cycles
        if c.kind in ("linear", "attention", "moe"):
            M, N, K = c.shape if c.shape is not None else (1, 1, 1)
            k_half = t["k_half"] if c.shape is not None else 0.0
            eff = compute_efficiency(M, N, K, peak_fraction=t["compute_efficiency"], k_half=k_half,
                                     wave_tile=(wave.m, wave.n) if (wave is not None and c.shape is not None) else None,
                                     cores=cores)
            mpe = np.asarray(mpe, dtype=float) / eff
        else:
            sfu = np.asarray(sfu, dtype=float) / t["compute_efficiency"]
        bpc = pts.class_bpc(cls)
        if np.any(corr != 1.0):
            mpe, sfu = np.asarray(mpe, dtype=float) / corr, np.asarray(sfu, dtype=float) / corr
            bpc = {m: v * corr for m, v in bpc.items()}
        fixed = overhead_cycles(pts.freq_hz, steps=c.steps, fixed_us=t["fixed_us"], fixed_cycles=t["fixed_cycles"],
                                issue_cycles_per_step=t["issue_cycles_per_step"])
        out.append(replace(c, mpe_cycles=mpe, sfu_cycles=sfu, fixed_cycles=fixed,
                           floor_cycles=floor_cycles(pts.freq_hz, t["floor_us"]),
                           bpc=None if bpc is pts.bpc else bpc))
    return out
