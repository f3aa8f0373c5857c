"""Evaluate sweep points with the cost model of :mod:`qesim.perf` over arrays of points: one
:class:`~qesim.perf.compiled.CompiledGraph` per (structural config, workload) group, evaluated at
all the group's points at once (``exact=True``: the n = 1 estimate per point, for checks).

Output columns (one row per point; see ``OUTPUT_COLUMNS``):
``hw`` (base config name), ``cycles``, ``latency_s``, ``tokens_per_s``, ``bound`` (the resource
with the most busy cycles over the pass), ``speedup`` (latency of the W16A16 / method-none graph
of the same workload on the same config, over this point's latency), ``baseline_latency_s``,
``hbm_bytes``/``ddr_bytes`` (off-chip bytes per pass), ``util_mpe``/``util_sfu``/``util_hbm``/
``util_ddr`` (busy cycles / pass cycles), ``sram_bytes`` (weight + activation + output + adapter
buffers), ``mpe_macs_per_cycle`` (the fastest matrix-matrix MAC rate: the MPE size),
``energy_per_token_j``, ``avg_power_w``, ``area_mm2``, ``cost_usd`` (:mod:`qesim.perf.terms.energy`;
NaN where the config does not know them),
``footprint_hbm_bytes``/``footprint_ddr_bytes`` (resident bytes, :mod:`qesim.perf.footprint`) and
``fits`` (every memory holds them; Pareto fronts skip points that do not fit).
"""

from __future__ import annotations

import warnings
from typing import Optional

import numpy as np

from qesim.errors import InputError
from qesim.perf.compiled import CompiledGraph
from qesim.perf.estimate import fp16_baseline
from qesim.perf.points import HwPoints
from qesim.dse.space import PSEUDO_AXES, WORKLOAD_FIELDS, Space, apply_updates, expand_updates, is_vector_field

OUTPUT_COLUMNS = ["hw", "cycles", "latency_s", "tokens_per_s", "bound", "speedup", "baseline_latency_s",
                  "hbm_bytes", "ddr_bytes", "util_mpe", "util_sfu", "util_hbm", "util_ddr", "sram_bytes",
                  "mpe_macs_per_cycle", "energy_per_token_j", "avg_power_w", "area_mm2", "cost_usd",
                  "footprint_hbm_bytes", "footprint_ddr_bytes", "fits"]
ENERGY_COLUMNS = {"energy_per_token_j": "per_token_j", "avg_power_w": "avg_power_w", "area_mm2": "area_mm2",
                  "cost_usd": "cost_usd"}  # column -> GraphEnergy field


def _dtype(c: str):
    return object if c in ("hw", "bound") else bool if c == "fits" else float


def _graph(w: dict):
    from qesim.graph.vision import workload_graph  # text-only, or a whole VLM request (images / quantize axes)

    return workload_graph(w)  # density: a float, or a per-linear string (dse.space.density_value)


def _baseline(w: dict) -> dict:
    return fp16_baseline(w)


def _plan(w: dict):
    """The ParallelPlan of a multi-device workload, or None for one device."""
    d = int(w.get("devices") or 1)
    if d == 1:
        return None
    from qesim.graph.parallel import parse_parallel

    return parse_parallel(str(w.get("parallel") or "tp"), d)


def _native(v):
    return v.item() if isinstance(v, np.generic) else v


class Evaluator:
    """Caches graphs, structural configs and compiled graphs across chunks of one space."""

    def __init__(self, space: Space):
        self.space = space
        self.struct_paths = [p for p in space.hw_paths if not is_vector_field(p)]
        self.vector_paths = [p for p in space.hw_paths if is_vector_field(p)]
        self._graphs: dict = {}
        self._hw: dict = {}
        self._compiled: dict = {}
        self._base_cache: dict = {}
        self._footprints: dict = {}
        self._structures: dict = {}
        self._shard_compiled: dict = {}

    # ---------------------------------------------------------------- caches
    def graph(self, w: dict):
        key = tuple(w[k] for k in WORKLOAD_FIELDS)
        g = self._graphs.get(key)
        if g is None:
            g = self._graphs[key] = _graph(w)
        return g

    def struct_hw(self, skey: tuple):
        hw = self._hw.get(skey)
        if hw is None:
            hw = self._hw[skey] = apply_updates(self.space.base, dict(zip(self.struct_paths, skey)),
                                                self.space.source)
        return hw

    def compiled(self, skey: tuple, w: dict) -> CompiledGraph:
        key = (skey, tuple(w[k] for k in WORKLOAD_FIELDS))
        cg = self._compiled.get(key)
        if cg is None:
            cg = self._compiled[key] = CompiledGraph(self.graph(w), self.struct_hw(skey))
        return cg

    def multi(self, skey: tuple, w: dict, hv: HwPoints) -> dict:
        """A multi-device workload at the points ``hv`` (:func:`qesim.perf.multidevice.parallel_points`;
        the shard graphs and their lowerings are kept across chunks)."""
        from qesim.perf.multidevice import parallel_points, parallel_structure

        plan, hw, g = _plan(w), self.struct_hw(skey), self.graph(w)
        key = (skey, tuple(w[k] for k in WORKLOAD_FIELDS))
        st = self._structures.get(key)
        if st is None:
            mg = (lambda b: self.graph({**w, "batch": b})) if int(w["batch"]) > 1 else None
            try:
                st = self._structures[key] = parallel_structure(g, hw, plan, micro_graph=mg)
            except InputError as e:  # name the space's fields, not the estimate command's flags
                raise InputError(f"{self.space.source}: space.workload devices={w['devices']} "
                                 f"parallel={w['parallel']}: {e}") from None

        def compiled_of(dg):
            ck = (key, id(dg))
            hit = self._shard_compiled.get(ck)
            if hit is None:
                hit = self._shard_compiled[ck] = (dg, CompiledGraph(dg, hw))
            return hit[1]

        return parallel_points(g, hw, plan, hv, compiled_of, structure=st)

    def _cycles_latency(self, skey: tuple, w: dict, hv: HwPoints):
        """(cycles, latency_s) arrays of workload ``w`` at ``hv`` (one device or a system)."""
        if _plan(w) is not None:
            r = self.multi(skey, w, hv)
            return r["cycles"], r["latency_s"]
        res = self.compiled(skey, w).evaluate(hv)
        return res.cycles, res.latency_s

    def hwvec(self, rep, rows) -> HwPoints:
        """The point fields of ``rows`` (a dict of arrays: ``point_id`` and the hardware axes;
        pseudo-axes expanded as :func:`expand_updates` does)."""
        n = len(rows["point_id"])
        over = {p: np.asarray(rows[p], dtype=float) for p in self.vector_paths if p not in PSEUDO_AXES}
        if "scale.macs" in self.vector_paths:
            s = np.asarray(rows["scale.macs"], dtype=float)
            for mode in ("mm", "mv"):
                for i, r in enumerate(getattr(rep.mpe, mode)):
                    key = f"mpe.{mode}.{i}.macs_per_cycle"
                    over[key] = over.get(key, np.full(n, float(r.macs_per_cycle))) * s
        if "scale.buffers" in self.vector_paths:
            s = np.asarray(rows["scale.buffers"], dtype=float)
            for f in ("weight_bytes", "act_bytes", "out_bytes"):
                key = f"buffers.{f}"
                over[key] = np.maximum(1.0, np.round(over.get(key, np.full(n, float(getattr(rep.buffers, f)))) * s))
        return HwPoints(rep, n, over)

    # ---------------------------------------------------------------- evaluation
    def evaluate(self, pts: pd.DataFrame, exact: bool = False) -> pd.DataFrame:
        """Rows of ``pts`` (from ``Space.points()``) with the output columns appended."""
        import pandas as pd  # not at module level: the sweep runner's path (evaluate_block) needs no pandas

        if exact:
            return pd.DataFrame([dict(r, **self.exact_row(r)) for r in pts.to_dict("records")])[
                list(pts.columns) + OUTPUT_COLUMNS]
        out = {c: np.empty(len(pts), dtype=_dtype(c)) for c in OUTPUT_COLUMNS}
        cols = {c: pts[c].to_numpy() for c in ["point_id"] + self.space.hw_paths}
        for wkey, idx in pts.groupby(list(WORKLOAD_FIELDS), sort=False, dropna=False).indices.items():
            w = {k: _native(v) for k, v in zip(WORKLOAD_FIELDS, wkey)}
            res = self.evaluate_block(w, {c: v[idx] for c, v in cols.items()})
            for c in OUTPUT_COLUMNS:
                out[c][idx] = res[c]
        left = pts.reset_index(drop=True)
        return pd.concat([left, pd.DataFrame(out, index=left.index)], axis=1)

    def evaluate_block(self, w: dict, cols: dict) -> dict:
        """Output columns (``OUTPUT_COLUMNS`` -> length-n arrays) of n points that share the
        workload ``w``; ``cols``: ``point_id`` and one array per hardware axis. No DataFrame
        (the sweep runner's interface, see /work/coord/SWEEP_NEEDS.md)."""
        n = len(cols["point_id"])
        out = {c: np.empty(n, dtype=_dtype(c)) for c in OUTPUT_COLUMNS}
        for skey, sel in self._struct_groups(cols, n):
            rows = cols if len(sel) == n else {c: v[sel] for c, v in cols.items()}
            sel = slice(None) if len(sel) == n else sel
            rep = self.struct_hw(skey)
            hv = self.hwvec(rep, rows)
            for c, v in self._columns(skey, w, rows, hv).items():
                out[c][sel] = v
        return out

    def _columns(self, skey: tuple, w: dict, rows: dict, hv: HwPoints) -> dict:
        """The output columns of workload ``w`` at the points ``hv`` (arrays, or numbers that hold
        for all of them). A multi-device workload: the system's latency, energy, area and cost;
        bytes, utilisation and buffers of one device of the first stage; the footprint of the
        fullest device."""
        out = {"hw": self.space.base.name}
        if _plan(w) is not None:
            r = self.multi(skey, w, hv)
            res, cycles, lat, bound = r["first"], r["cycles"], r["latency_s"], r["bound"]
            util = {k: res.busy[b] / cycles for k, b in (("mpe", "compute"), ("sfu", "sfu"), ("hbm", "hbm"),
                                                          ("ddr", "ddr"))}
            e = r["energy"]
            energy = {"energy_per_token_j": e["energy_per_token_j"], "avg_power_w": e["avg_power_w"],
                      "area_mm2": r["area_mm2"], "cost_usd": r["cost_usd"]}
            need = r["need_bytes_by_memory"]
            fp_cols = (need["hbm"], need.get("ddr", 0.0), r["fits"])
        else:
            res = self.compiled(skey, w).evaluate(hv)
            cycles, lat, bound, util = res.cycles, res.latency_s, res.bound, res.utilization()
            energy = {col: (getattr(res.energy, f) if res.energy is not None else None)
                      for col, f in ENERGY_COLUMNS.items()}
            fp = self.footprint(skey, w)
            fp_cols = (fp.bytes["hbm"], fp.bytes.get("ddr", 0.0), fp.fits)
        base_cycles, base_lat = self._baseline(skey, w, rows, hv, cycles, lat)
        tokens = res.tokens
        with np.errstate(divide="ignore"):
            out.update(cycles=cycles, latency_s=lat, tokens_per_s=tokens / np.asarray(lat, dtype=float),
                       bound=bound, speedup=base_cycles / cycles, baseline_latency_s=base_lat,
                       hbm_bytes=res.bytes["hbm"], ddr_bytes=res.bytes["ddr"])
        for k in ("mpe", "sfu", "hbm", "ddr"):
            out[f"util_{k}"] = util[k]
        out["sram_bytes"] = sum(hv.buf[k] for k in ("weight_bytes", "act_bytes", "out_bytes", "adapter_bytes"))
        out["mpe_macs_per_cycle"] = hv.peak_mm_rate()
        for col, v in energy.items():
            out[col] = np.nan if v is None else v
        out["footprint_hbm_bytes"], out["footprint_ddr_bytes"], out["fits"] = fp_cols
        return out

    def footprint(self, skey: tuple, w: dict):
        """Resident bytes of workload ``w`` on structural config ``skey`` (capacities and placement
        are structural, so one footprint holds for the whole group)."""
        from qesim.perf.footprint import footprint

        key = (skey, tuple(w[k] for k in WORKLOAD_FIELDS))
        fp = self._footprints.get(key)
        if fp is None:
            fp = self._footprints[key] = footprint(self.graph(w), self.struct_hw(skey))
        return fp

    def _struct_groups(self, cols: dict, n: int) -> list:
        """(structural key, point indices) per distinct combination of structural axis values,
        in order of first appearance."""
        if not self.struct_paths:
            return [((), np.arange(n))]
        key = np.zeros(n, dtype=np.int64)
        for p in self.struct_paths:
            u, inv = np.unique(np.asarray(cols[p]), return_inverse=True)
            key = key * len(u) + inv.reshape(-1)
        _, first, inv = np.unique(key, return_index=True, return_inverse=True)
        order = np.argsort(inv, kind="stable")
        splits = np.split(order, np.cumsum(np.bincount(inv.reshape(-1)))[:-1])
        groups = [(tuple(_native(cols[p][first[g]]) for p in self.struct_paths), splits[g])
                  for g in range(len(first))]
        return sorted(groups, key=lambda gs: gs[1][0])

    def _baseline(self, skey, w, rows, hv, cycles, latency_s):
        """Cycles and latency of the W16A16 graph on the same points, cached by hardware point
        (``point_id mod n_hw``: every workload runs on the same hardware points)."""
        bw = _baseline(w)
        key = (skey, tuple(bw[k] for k in WORKLOAD_FIELDS))
        n_hw = self.space.n_hw_points()
        hidx = np.asarray(rows["point_id"]) % n_hw
        cache = self._base_cache.get(key)
        if cache is None:
            cache = self._base_cache[key] = (np.full(n_hw, np.nan), np.full(n_hw, np.nan))
        if bw == w:
            cache[0][hidx], cache[1][hidx] = cycles, latency_s
            return cycles, latency_s
        cyc, lat = cache[0][hidx], cache[1][hidx]
        miss = np.isnan(cyc)
        if miss.any():
            sel = np.flatnonzero(miss)
            sub = self.hwvec(self.struct_hw(skey), {c: v[sel] for c, v in rows.items()})
            cache[0][hidx[miss]], cache[1][hidx[miss]] = self._cycles_latency(skey, bw, sub)
            cyc, lat = cache[0][hidx], cache[1][hidx]
        return cyc, lat

    def seed_baseline(self, bw: dict, cols: dict, cycles, latency_s) -> None:
        """Put the fp16-baseline cycles / latency of points costed elsewhere into the cache that
        :meth:`_baseline` reads (``bw``: the baseline workload; ``cols``: its points' ``point_id``
        and hardware axes). A process-pool worker gets them from the parent instead of recomputing
        a chunk another worker already did."""
        n_hw = self.space.n_hw_points()
        wkey = tuple(bw[k] for k in WORKLOAD_FIELDS)
        hidx = np.asarray(cols["point_id"]) % n_hw
        for skey, sel in self._struct_groups(cols, len(hidx)):
            cache = self._base_cache.get((skey, wkey))
            if cache is None:
                cache = self._base_cache[(skey, wkey)] = (np.full(n_hw, np.nan), np.full(n_hw, np.nan))
            cache[0][hidx[sel]] = np.asarray(cycles)[sel]
            cache[1][hidx[sel]] = np.asarray(latency_s)[sel]

    def point_hw(self, row: dict):
        upd = {p: _native(row[p]) for p in self.space.hw_paths}
        return apply_updates(self.space.base, upd, self.space.source)

    def exact_row(self, row: dict) -> dict:
        """Output columns of one point from ``estimate_graph`` (the reference path)."""
        from qesim.perf.model import estimate_graph

        hw = self.point_hw(row)
        w = {k: _native(row[k]) for k in WORKLOAD_FIELDS}
        if _plan(w) is not None:  # a system: the same composition at n = 1 of the point's own config
            cols = {"point_id": np.array([row["point_id"]]), **{p: np.array([row[p]]) for p in self.space.hw_paths}}
            res = _OnePoint(self.space, hw)._columns((), w, cols, HwPoints.of(hw))
            return {c: (_native(np.ravel(v)[0]) if np.ndim(v) else v) for c, v in res.items()}
        est = estimate_graph(self.graph(w), hw)
        base = estimate_graph(self.graph(_baseline(w)), hw)
        u = est.utilization()
        by = est.bytes_by_memory
        b = hw.buffers
        from qesim.perf.footprint import footprint

        fp = footprint(self.graph(w), hw)
        return dict(hw=self.space.base.name, cycles=est.cycles, latency_s=est.latency_s, tokens_per_s=est.tokens_per_s,
                    bound=est.bound, speedup=base.cycles / est.cycles, baseline_latency_s=base.latency_s,
                    hbm_bytes=by["hbm"], ddr_bytes=by["ddr"], util_mpe=u["mpe"], util_sfu=u["sfu"],
                    util_hbm=u["hbm"], util_ddr=u["ddr"],
                    sram_bytes=float(b.weight_bytes + b.act_bytes + b.out_bytes + b.adapter_bytes),
                    mpe_macs_per_cycle=float(max(r.macs_per_cycle for r in hw.mpe.mm)),
                    **{c: (np.nan if (est.energy or {}).get(c) is None else est.energy[c]) for c in ENERGY_COLUMNS},
                    footprint_hbm_bytes=fp.bytes["hbm"], footprint_ddr_bytes=fp.bytes.get("ddr", 0.0), fits=fp.fits)


class _OnePoint(Evaluator):
    """The evaluator at one point's full config (its own structure, n = 1): the reference path of
    a multi-device row."""

    def __init__(self, space: Space, hw):
        super().__init__(space)
        self._point_hw = hw

    def struct_hw(self, skey):
        return self._point_hw

    def hwvec(self, rep, rows) -> HwPoints:
        return HwPoints.of(self._point_hw)

    def compiled(self, skey, w) -> CompiledGraph:
        from qesim.perf.estimate import compiled_graph

        return compiled_graph(self.graph(w), self._point_hw)


_EVALUATORS: dict = {}


def evaluator_for(space: Space) -> Evaluator:
    """One Evaluator per space per process (workers reuse it across chunks)."""
    key = space.fingerprint()
    ev = _EVALUATORS.get(key)
    if ev is None:
        if len(_EVALUATORS) > 8:
            _EVALUATORS.clear()
        ev = _EVALUATORS[key] = Evaluator(space)
    return ev


def evaluate_space(space: Space, exact: bool = False, points: Optional[pd.DataFrame] = None) -> pd.DataFrame:
    """All points of ``space`` in memory (no files): the library entry point for small spaces."""
    pts = space.points() if points is None else points
    return evaluator_for(space).evaluate(pts, exact=exact)
