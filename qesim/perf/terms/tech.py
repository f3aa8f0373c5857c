"""Technology-node scaling of energy and area (pure numpy).

Source: A. Stillmaker and B. Baas, "Scaling equations for the accurate prediction of CMOS device
performance from 180 nm to 7 nm", Integration, the VLSI Journal 58 (2017) 74-81 (with its
corrigendum). Energy per operation at node n and supply V is proportional to the fitted
``a_n V^2 + b_n V + c_n`` (their Table 5; PTM high-performance models for 45 nm and below, bulk
for 65 nm and above); area scales by their area table (ratios to 45 nm below). The coefficient
values are as tabulated in the MIT-licensed ``nodeScale`` tool (UCLA NanoCAD), which reproduces
the paper's tables; the corrigendum's worked example (32 nm at 0.9 V: 0.4571) checks them
(``tests/test_energy_terms.py``).

Between tabulated nodes both are interpolated linearly in log(node) (log of the area ratio;
the energy fit value itself): an assumption, the paper tabulates nodes only. Nodes outside
7..180 nm are refused (no extrapolation).
"""

from __future__ import annotations

import numpy as np

# node (nm) -> (a, b, c) of the energy factor a V^2 + b V + c  [Stillmaker & Baas 2017, Table 5]
ENERGY_FIT = {
    180: (0.0, 24.64, -17.98),
    130: (7.171, -6.709, 2.904),
    90: (4.762, -4.781, 2.092),
    65: (3.755, -4.398, 1.975),
    45: (1.018, -0.3107, 0.1539),   # HP45
    32: (0.8367, -0.4341, 0.1701),  # HP32
    20: (0.373, -0.1582, 0.04104),  # HP20
    16: (0.2958, -0.1241, 0.03024),  # HP16
    14: (0.2363, -0.09675, 0.02239),  # HP14
    10: (0.2068, -0.09311, 0.02375),  # HP10
    7: (0.1776, -0.09097, 0.02447),  # HP7
}
# node (nm) -> area relative to 45 nm  [Stillmaker & Baas 2017, area scaling table, 45 nm column]
AREA_VS_45 = {180: 19.0, 130: 6.4, 90: 2.8, 65: 1.5, 45: 1.0, 32: 0.46, 20: 0.21, 16: 0.19, 14: 0.17,
              10: 0.1, 7: 0.059}

_NODES = np.array(sorted(ENERGY_FIT))  # ascending


def _check(node):
    node = np.asarray(node, dtype=float)
    if np.any((node < _NODES[0]) | (node > _NODES[-1])):
        raise ValueError(f"process node {node} nm outside the scaling table ({_NODES[0]}..{_NODES[-1]} nm)")
    return node


def _bracket(node):
    """(index i, weight w) of ``node`` between tabulated nodes i and i+1, linear in log(node)."""
    x = np.log(_NODES)
    t = np.log(node)
    i = np.clip(np.searchsorted(x, t) - 1, 0, len(x) - 2)
    return i, (t - x[i]) / (x[i + 1] - x[i])


def energy_factor(node_nm, vdd_v):
    """Stillmaker-Baas energy factor a V^2 + b V + c at ``node_nm`` and ``vdd_v`` (arrays broadcast)."""
    node, vdd = np.broadcast_arrays(_check(node_nm), np.asarray(vdd_v, dtype=float))
    i, w = _bracket(node)
    coef = np.array([ENERGY_FIT[n] for n in _NODES])

    def fit(j):
        return coef[j, 0] * vdd ** 2 + coef[j, 1] * vdd + coef[j, 2]

    out = (1 - w) * fit(i) + w * fit(i + 1)
    return out if out.ndim else float(out)


def energy_scale(from_nm, to_nm, from_vdd_v, to_vdd_v):
    """Factor that turns an energy per operation at (from_nm, from_vdd_v) into one at (to_nm, to_vdd_v)."""
    return energy_factor(to_nm, to_vdd_v) / energy_factor(from_nm, from_vdd_v)


def area_rel_45(node_nm):
    """Area at ``node_nm`` relative to 45 nm (log-log interpolation of the table)."""
    node = _check(node_nm)
    x = np.log(_NODES)
    y = np.log([AREA_VS_45[n] for n in _NODES])
    return np.exp(np.interp(np.log(node), x, y))


def area_scale(from_nm, to_nm):
    """Factor that turns an area at ``from_nm`` into the same circuit's area at ``to_nm``."""
    return area_rel_45(to_nm) / area_rel_45(from_nm)
