"""Area (mm^2) and die cost ($) terms (pure numpy over design points).

Area of a designed NPU = MPE + SFU + on-chip buffers + memory controllers and PHYs, divided by
(1 - ``area.overhead_fraction``) for what the units leave out (control, NoC, pads):

- MPE: a unified multi-precision array must be able to deliver every row of its MAC-rate table,
  so it is at least as big as the largest single-precision array in it:
  ``max over mm rows (macs_per_cycle x um^2 per MAC at that precision)`` (the MV mode reuses the
  same array). MAC areas at ``area.ref_node_nm`` are scaled to ``area.node_nm`` (Stillmaker-Baas).
- SFU: lanes x ``sfu_lane_um2``.
- buffers: bits / array efficiency x bit-cell area (LLMCompass ``calc_cache_sram_area_mm2``):
  arrays of 4 KiB .. 2^(11+n) bytes have the tabulated efficiencies; a bigger buffer is built of
  banks of the largest tabulated size. Bit cells at ``sram_ref_node_nm`` are scaled to the node.
- memory: PHYs per HBM stack / DDR link (not scaled: PHYs are analog and do not shrink,
  LLMCompass) and controllers (logic, scaled from ``ctrl_ref_node_nm``).

A bought device (GPU, FPGA) has no per-unit numbers: its area is the published
``area.die_area_mm2`` or None.

Die cost = wafer price / (good dies per wafer): dies per wafer
``pi r^2 / A - pi d / sqrt(2 A)`` (d = wafer diameter, r = d/2) and the negative-binomial yield
``(1 + A D0 / alpha)^-alpha`` (both as in LLMCompass' ``supply_chain_model.py``).
"""

from __future__ import annotations

from typing import Mapping, Optional

import numpy as np

from qesim.perf.terms.tech import area_scale

UM2_PER_MM2 = 1e6
SRAM_MIN_ARRAY = 4096  # bytes: the first entry of sram_array_efficiency


def mac_area_um2(table, w_bits: int, a_bits: int) -> float:
    """Area of one MAC unit for w_bits x a_bits operands: the smallest entry that covers them."""
    ok = [e for e in table if e.w_bits >= w_bits and e.a_bits >= a_bits]
    if ok:
        return min(e.um2 for e in ok)
    return max(e.um2 for e in table)


def mpe_area_mm2(rates, um2_per_mac):
    """max over precisions p of rates[..., p] x um2_per_mac[p] (arrays: (..., P) and (P,))."""
    r = np.asarray(rates, dtype=float)
    a = np.asarray(um2_per_mac, dtype=float)
    return (r * a).max(axis=-1) / UM2_PER_MM2


def sram_area_mm2(buffer_bytes, bitcell_um2: float, efficiency) -> np.ndarray:
    """Area of an SRAM buffer of ``buffer_bytes`` (array) built of arrays with the given efficiencies.

    Capacities are rounded up to a power-of-two array (at least 4 KiB); above the largest tabulated
    array size the buffer is ceil(bytes / that size) banks of that size. Monotone in bytes while
    each efficiency is at most twice the previous one (true of the LLMCompass table)."""
    eff = np.asarray(efficiency, dtype=float)
    b = np.maximum(np.asarray(buffer_bytes, dtype=float), 0.0)
    max_unit = SRAM_MIN_ARRAY * 2 ** (len(eff) - 1)
    units = np.where(b > max_unit, np.ceil(b / max_unit), 1.0)
    unit = np.where(b > max_unit, float(max_unit), np.maximum(b, SRAM_MIN_ARRAY))
    idx = np.clip(np.ceil(np.log2(unit / SRAM_MIN_ARRAY) - 1e-9).astype(int), 0, len(eff) - 1)
    # the array is a macro of the power-of-two capacity it is rounded up to (LLMCompass charges the
    # exact bytes at the rounded-up size's efficiency, which can make a larger buffer smaller)
    cap = SRAM_MIN_ARRAY * 2.0 ** idx
    area = units * cap * 8.0 * bitcell_um2 / eff[idx] / UM2_PER_MM2
    return np.where(b > 0, area, 0.0)


def area_breakdown_mm2(hw, overrides: Optional[Mapping[str, object]] = None) -> Optional[dict]:
    """Area per unit (mm^2) and ``total`` for ``hw``; None if the config has no per-unit numbers and
    no published die area. ``overrides`` (arrays over design points) replace: ``mm_rates`` ((n, P)
    MAC/cycle of the mm table) or ``mac_scale`` (factor on every MAC rate), ``sfu_lanes``, ``hbm_gbps``
    (peak HBM bandwidth: sets the stack count when ``area.hbm_gbps_per_stack`` is given),
    ``weight_bytes``/``act_bytes``/``out_bytes``/``adapter_bytes``."""
    a = hw.area
    ov = dict(overrides or {})
    if not a.per_unit:
        if a.die_area_mm2 is None:
            return None
        return {"die": np.asarray(a.die_area_mm2, dtype=float), "total": np.asarray(a.die_area_mm2, dtype=float)}
    node = a.node_nm
    k_logic = area_scale(a.ref_node_nm, node)
    um2 = np.array([mac_area_um2(a.mac_um2, r.w_bits, r.a_bits) for r in hw.mpe.mm]) * k_logic
    if "mm_rates" in ov:  # (..., P) MAC/cycle of every mm entry per point
        rates = np.asarray(ov["mm_rates"], dtype=float)
    else:
        scale = np.asarray(ov.get("mac_scale", 1.0), dtype=float)
        rates = scale[..., None] * np.array([r.macs_per_cycle for r in hw.mpe.mm], dtype=float)
    out = {"mpe": mpe_area_mm2(rates, um2)}
    lanes = np.asarray(ov.get("sfu_lanes", hw.sfu.lanes), dtype=float)
    out["sfu"] = lanes * (a.sfu_lane_um2 or 0.0) * k_logic / UM2_PER_MM2
    if a.sram_bitcell_um2 is not None and a.sram_array_efficiency:
        cell = a.sram_bitcell_um2 * area_scale(a.sram_ref_node_nm or node, node)
        for b in ("weight", "act", "out", "adapter"):
            size = ov.get(f"{b}_bytes", getattr(hw.buffers, f"{b}_bytes"))
            out[f"{b}_buffer"] = sram_area_mm2(size, cell, a.sram_array_efficiency)
    k_ctrl = area_scale(a.ctrl_ref_node_nm, node) if a.ctrl_ref_node_nm else 1.0
    stacks = np.asarray(float(a.hbm_stacks))
    if a.hbm_gbps_per_stack and "hbm_gbps" in ov:
        stacks = np.maximum(stacks, np.ceil(np.asarray(ov["hbm_gbps"], dtype=float) / a.hbm_gbps_per_stack - 1e-9))
    if np.any(stacks > 0):
        out["hbm_phy"] = stacks * (a.hbm_phy_mm2_per_stack or 0.0)
        out["hbm_ctrl"] = stacks * (a.hbm_ctrl_mm2_per_stack or 0.0) * k_ctrl
    if a.ddr_links:
        out["ddr_phy"] = np.asarray(a.ddr_links * (a.ddr_phy_mm2_per_link or 0.0))
        out["ddr_ctrl"] = np.asarray(a.ddr_links * (a.ddr_ctrl_mm2_per_link or 0.0) * k_ctrl)
    units = sum(np.asarray(v, dtype=float) for v in out.values())
    if a.overhead_fraction:
        out["overhead"] = units * a.overhead_fraction / (1.0 - a.overhead_fraction)
    out["total"] = sum(np.asarray(v, dtype=float) for v in out.values())
    return out


def dies_per_wafer(die_area_mm2, wafer_diameter_mm: float = 300.0):
    """Gross dies per wafer: pi r^2 / A - pi d / sqrt(2 A) (edge loss), floored at 0."""
    A = np.asarray(die_area_mm2, dtype=float)
    d = float(wafer_diameter_mm)
    return np.maximum(np.pi * (d / 2) ** 2 / A - np.pi * d / np.sqrt(2 * A), 0.0)


def die_yield(die_area_mm2, defect_density_per_mm2: float, alpha: float = 3.0):
    """Negative-binomial die yield (1 + A D0 / alpha)^-alpha."""
    A = np.asarray(die_area_mm2, dtype=float)
    return (1.0 + A * defect_density_per_mm2 / alpha) ** (-alpha)


def die_cost_usd(die_area_mm2, wafer_price_usd: float, defect_density_per_mm2: float,
                 wafer_diameter_mm: float = 300.0, alpha: float = 3.0):
    """Cost of one good die: wafer price / (dies per wafer x yield); inf if no die fits."""
    good = dies_per_wafer(die_area_mm2, wafer_diameter_mm) * die_yield(die_area_mm2, defect_density_per_mm2, alpha)
    with np.errstate(divide="ignore"):
        return np.where(good > 0, wafer_price_usd / np.where(good > 0, good, 1.0), np.inf)


def device_cost_usd(hw, area_mm2) -> Optional[np.ndarray]:
    """Die cost from the cost model when wafer price and defect density are known, else the
    published list price, else None."""
    c = hw.cost
    if area_mm2 is not None and c.wafer_price_usd is not None and c.defect_density_per_mm2 is not None:
        return die_cost_usd(area_mm2, c.wafer_price_usd, c.defect_density_per_mm2, c.wafer_diameter_mm,
                            c.yield_cluster_alpha)
    if c.list_price_usd is not None:
        return np.asarray(c.list_price_usd, dtype=float)
    return None
