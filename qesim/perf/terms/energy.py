"""Energy terms (pure numpy over design points): action counts x energy per action + static power x time.

Actions of one op call (arrays over design points, any broadcastable shape):

- ``mac:wWaA`` MACs at the MAC-energy entry (w, a) that covers the operands (main GEMM, adapters
  and router each at their own precision; attention at ``policy.attention_bits``);
- ``sfu`` SFU lane-cycles (the SFU's busy cycles x lanes);
- ``sram_read:BUF`` / ``sram_write:BUF`` bytes read from / written into on-chip buffer BUF
  (``weight``, ``act``, ``out``, ``adapter``), as the tiling implies (:mod:`.actions`);
- ``offchip:MEM`` bytes moved to or from off-chip memory MEM (``hbm``, ``ddr``).

Energy of a call = sum over actions of count x pJ per action (:func:`dynamic_energy_j`); energy of
a pass = sum over ops of repeat x (dynamic + static power x op time) (:func:`pass_energy`), so
energy = sum over ops holds by construction. A device with only a published board power (GPU,
FPGA: ``energy.board_power_w``) has no per-action numbers: its energy is board power x time, the
static term with P = board power (an upper bound when the board is not at its rated power).

Per-action energies come from the config's ``energy`` section at its ``ref_node_nm`` and are scaled
to ``node_nm`` with :func:`qesim.perf.terms.tech.energy_scale` (:func:`action_energies_pj`).
Units: pJ per action, J, W, s.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional

import numpy as np

from qesim.perf.terms.tech import energy_scale

BUFFERS = ("weight", "act", "out", "adapter")
PJ = 1e-12


def mac_key(w_bits: int, a_bits: int) -> str:
    return f"mac:w{w_bits}a{a_bits}"


def mac_entry(table, w_bits: int, a_bits: int):
    """The MAC-energy entry used for ``w_bits`` x ``a_bits`` operands: the cheapest entry whose widths
    cover both (the same rule as ``MPE.rate``'s fastest covering entry); the widest if none covers."""
    ok = [e for e in table if e.w_bits >= w_bits and e.a_bits >= a_bits]
    if ok:
        return min(ok, key=lambda e: e.pj)
    return max(table, key=lambda e: (e.w_bits * e.a_bits, e.pj))


def sram_pj_per_byte(points, access_bits: int, bank_bytes: Optional[int], buffer_bytes):
    """pJ per byte accessed in a buffer of ``buffer_bytes`` (array over design points).

    Power-law fit E = c * size^p (least squares in log-log) over the published access energies
    ``points`` (size, pJ per ``access_bits`` access); a buffer bigger than ``bank_bytes`` is built of
    banks of that size, so an access costs one bank's energy (wiring between banks not charged)."""
    sizes = np.log([p.bytes for p in points])
    pjs = np.log([p.pj for p in points])
    if len(points) == 1:
        slope, icpt = 0.0, pjs[0]
    else:
        slope, icpt = np.polyfit(sizes, pjs, 1)
    size = np.asarray(buffer_bytes, dtype=float)
    if bank_bytes is not None:
        size = np.minimum(size, bank_bytes)
    size = np.maximum(size, 1.0)
    return np.exp(icpt + slope * np.log(size)) / (access_bits / 8.0)


def action_energies_pj(hw, buffer_bytes: Optional[Mapping[str, object]] = None) -> dict:
    """pJ per action for ``hw`` (scaled to its node). Empty dict when the config has no per-action
    numbers (board-power devices). ``buffer_bytes`` overrides the buffer sizes (arrays over points)."""
    e = hw.energy
    if not e.per_action:
        return {}
    vdd_from = e.ref_vdd_v if e.ref_vdd_v is not None else 1.0
    vdd_to = e.vdd_v if e.vdd_v is not None else 1.0
    k = energy_scale(e.ref_node_nm, e.node_nm, vdd_from, vdd_to)
    out = {mac_key(m.w_bits, m.a_bits): m.pj * k for m in e.mac_pj}
    if e.sfu_lane_op_pj is not None:
        out["sfu"] = e.sfu_lane_op_pj * k
    if e.sram_points:
        sizes = buffer_bytes or {}
        for b in BUFFERS:
            size = sizes.get(b, getattr(hw.buffers, f"{b}_bytes"))
            rd = sram_pj_per_byte(e.sram_points, e.sram_access_bits, e.sram_bank_bytes, size) * k
            out[f"sram_read:{b}"] = rd
            out[f"sram_write:{b}"] = rd * e.sram_write_factor
    if e.hbm_pj_per_bit is not None:
        out["offchip:hbm"] = e.hbm_pj_per_bit * 8.0
    if e.ddr_pj_per_bit is not None:
        out["offchip:ddr"] = e.ddr_pj_per_bit * 8.0
    return out


def dynamic_energy_j(counts: Mapping[str, object], pj_per_action: Mapping[str, object]) -> dict:
    """Energy (J) per action class of one op call: count x pJ per action. An action with no energy
    in ``pj_per_action`` costs nothing (board-power devices have none). Arrays broadcast."""
    return {a: np.asarray(c, dtype=float) * np.asarray(pj_per_action[a], dtype=float) * PJ
            for a, c in counts.items() if a in pj_per_action}


def action_class(action: str) -> str:
    """Group of an action for breakdowns: mac, sfu, sram, hbm, ddr."""
    head, _, tail = action.partition(":")
    if head == "offchip":
        return tail
    if head.startswith("sram"):
        return "sram"
    return head


@dataclass
class PassEnergy:
    """Energy of one pass over ``n_ops`` ops and the design points (trailing axes)."""

    op_dynamic_j: np.ndarray  # (n_ops, ...) dynamic energy per op, all repeats
    op_static_j: np.ndarray  # (n_ops, ...) static power x op time, all repeats
    total_j: np.ndarray
    per_token_j: np.ndarray
    avg_power_w: np.ndarray

    @property
    def op_j(self) -> np.ndarray:
        return self.op_dynamic_j + self.op_static_j


def pass_energy(op_dynamic_j, repeat, op_time_s, static_w, tokens) -> PassEnergy:
    """Per-op and total energy of a pass.

    Args:
        op_dynamic_j: (n_ops, ...) dynamic energy of ONE call of each op.
        repeat: (n_ops,) calls of each op per pass.
        op_time_s: (n_ops, ...) seconds of ONE call of each op.
        static_w: (...) static (or board) power, W.
        tokens: tokens per pass.
    """
    dyn = np.asarray(op_dynamic_j, dtype=float)
    t = np.asarray(op_time_s, dtype=float)
    rep = np.asarray(repeat, dtype=float).reshape((-1,) + (1,) * (max(dyn.ndim, t.ndim) - 1))
    op_dyn = dyn * rep
    op_static = np.asarray(static_w, dtype=float) * t * rep
    op_dyn, op_static = np.broadcast_arrays(op_dyn, op_static)
    total = op_dyn.sum(axis=0) + op_static.sum(axis=0)
    time = (t * rep).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        power = np.where(time > 0, total / np.where(time > 0, time, 1.0), 0.0)
    return PassEnergy(op_dyn, op_static, total, total / float(tokens), power)


def static_power_w(hw, area_breakdown_mm2: Optional[Mapping[str, object]] = None):
    """Static power (W): board power for a board-power device; for a per-action design, leakage per
    mm^2 x the area of its units (``area_breakdown_mm2``): buffers (``*_buffer``) at
    ``sram_leakage_w_per_mm2``, the other units at ``leakage_w_per_mm2``, PHYs excluded (their power
    is in the per-bit energy), plus ``other_static_w``. None when nothing is known."""
    e = hw.energy
    if not e.per_action:
        return e.board_power_w
    static = e.other_static_w
    for k, v in (area_breakdown_mm2 or {}).items():
        if k == "total" or k.endswith("_phy"):
            continue
        dens = e.sram_leakage_w_per_mm2 if k.endswith("_buffer") else e.leakage_w_per_mm2
        if dens is not None:
            static = static + dens * np.asarray(v, dtype=float)
    return static


# ----------------------------------------------------------------------------- the whole graph
@dataclass
class GraphEnergy:
    """Energy, power, area and cost of a graph at ``n`` points (arrays; per-op arrays are ops x n).

    ``model``: ``per-action`` | ``board-power`` | ``none`` (nothing known: every number None)."""

    model: str
    op_j: Optional[np.ndarray]  # (ops, n) energy of each op over the pass (all repeats)
    by_class_j: dict  # class -> (ops, n) J over the pass
    total_j: Optional[np.ndarray]
    per_token_j: Optional[np.ndarray]
    avg_power_w: Optional[np.ndarray]
    static_w: Optional[np.ndarray]
    area_mm2: Optional[np.ndarray]
    area_breakdown_mm2: dict  # unit -> (n,)
    cost_usd: Optional[np.ndarray]

    def at(self, i: int) -> dict:
        """Point ``i`` as plain Python numbers (None where not known)."""
        def g(x):
            if x is None:
                return None
            x = np.ravel(np.asarray(x, dtype=float))
            return float(x[i] if x.size > 1 else x[0])

        return {
            "model": self.model, "energy_j": g(self.total_j), "energy_per_token_j": g(self.per_token_j),
            "avg_power_w": g(self.avg_power_w), "static_w": g(self.static_w), "area_mm2": g(self.area_mm2),
            "cost_usd": g(self.cost_usd),
            "area_breakdown_mm2": {k: g(v) for k, v in self.area_breakdown_mm2.items()},
        }

    def op_at(self, i: int) -> list:
        """Per op at point ``i``: {"energy_j", "by_class_j": {class: J}} over the pass (all repeats)."""
        if self.op_j is None:
            return []
        col = lambda a: np.broadcast_to(a, self.op_j.shape)[:, i].tolist()  # noqa: E731  (one column -> floats)
        classes = {c: col(v) for c, v in self.by_class_j.items()}
        return [{"energy_j": e, "by_class_j": {c: v[k] for c, v in classes.items()}}
                for k, e in enumerate(col(self.op_j))]


CLASSES = ("mac", "sfu", "sram", "hbm", "ddr", "static")


def _resolve(table, actions: dict) -> dict:
    """MAC actions keyed by operand precision -> keyed by the energy-table entry that prices them."""
    out: dict = {}
    for k, v in actions.items():
        if k.startswith("mac:") and table:
            w, _, a = k[5:].partition("a")
            e = mac_entry(table, int(w), int(a))
            k = mac_key(e.w_bits, e.a_bits)
        out[k] = out.get(k, 0.0) + v
    return out


def graph_energy(hw, costs, cycles, repeat, pts, tokens: int) -> GraphEnergy:
    """Energy of a lowered graph at ``n`` points (the cost model's call site: after timing).

    Args:
        hw: the structure's config (its ``energy``/``area``/``cost`` sections).
        costs: list of OpCost (per call; ``actions``, bytes, SFU cycles).
        cycles: (ops, n) cycles of one call of each op (the pipeline formula's).
        repeat: (ops, 1) calls per pass.
        pts: HwPoints (clock, buffer sizes, MAC rates and SFU lanes per point).
        tokens: tokens per pass.
    """
    from qesim.perf.terms import area as area_terms

    n = pts.n
    ov = {"mm_rates": pts._rates["mm"][0], "sfu_lanes": pts.sfu["lanes"]}
    if hw.area.hbm_gbps_per_stack:  # peak GB/s per point (achieved / the structure's efficiency)
        ov["hbm_gbps"] = pts.bpc["hbm"] * pts.freq_hz / (1e9 * hw.hbm.efficiency)
    ov.update({k: pts.buf[k] for k in ("weight_bytes", "act_bytes", "out_bytes", "adapter_bytes")})
    area = area_terms.area_breakdown_mm2(hw, ov)
    area_total = None if area is None else np.broadcast_to(area["total"], (n,)).astype(float)
    cost = area_terms.device_cost_usd(hw, area_total)
    pj = action_energies_pj(hw, buffer_bytes=pts.buf)
    model = "per-action" if pj else ("board-power" if hw.energy.board_power_w is not None else "none")
    empty = GraphEnergy(model, None, {}, None, None, None, None, area_total,
                        {k: np.broadcast_to(v, (n,)) for k, v in (area or {}).items()},
                        None if cost is None else np.broadcast_to(cost, (n,)))
    if model == "none":
        return empty
    k = len(costs)
    rep = np.asarray(repeat, dtype=float).reshape(k, 1)
    by_class = {c: np.zeros((k, n)) for c in CLASSES} if pj else {}
    table = hw.energy.mac_pj
    lanes = pts.sfu["lanes"]
    if pj:
        for i, c in enumerate(costs):
            counts = _resolve(table, getattr(c, "actions", {}) or {})
            counts["sfu"] = np.asarray(c.sfu_cycles, dtype=float) * lanes
            for m in ("hbm", "ddr"):
                counts[f"offchip:{m}"] = c.mem_bytes(m)
            for a, j in dynamic_energy_j(counts, pj).items():
                by_class[action_class(a)][i] += np.broadcast_to(j, (n,)) * rep[i, 0]
    static = static_power_w(hw, area)
    static = np.broadcast_to(np.asarray(0.0 if static is None else static, dtype=float), (n,))
    t = np.asarray(cycles, dtype=float) / pts.freq_hz  # (ops, n) seconds per call
    by_class["static"] = static * t * rep
    op_j = sum(by_class.values()) if pj else by_class["static"]
    zero = np.broadcast_to(0.0, (k, n))  # classes with no actions (board-power model): no (ops, n) arrays
    by_class = {c: by_class.get(c, zero) for c in CLASSES}
    total = op_j.sum(axis=0)
    time = (t * rep).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        power = np.where(time > 0, total / np.where(time > 0, time, 1.0), 0.0)
    empty.op_j, empty.by_class_j, empty.total_j = op_j, by_class, total
    empty.per_token_j, empty.avg_power_w, empty.static_w = total / float(tokens), power, static
    return empty


def energy_object(e: GraphEnergy, i: int, op_names: list) -> dict:
    """The ``energy`` object of ``qesim estimate --json`` for point ``i``: totals (None where not
    known), ``by_class_j`` over the pass and ``ops`` (name, energy_j, by_class_j; all repeats)."""
    d = e.at(i)
    ops = e.op_at(i)
    d["by_class_j"] = ({c: sum(o["by_class_j"][c] for o in ops) for c in CLASSES} if ops else {})
    d["ops"] = [{"name": n, **o} for n, o in zip(op_names, ops)]
    return d
