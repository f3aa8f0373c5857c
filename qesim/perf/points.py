"""Design points: the per-point numbers of hardware configs that share one structure.

The cost model (:mod:`qesim.perf`) is written over arrays of design points. A config splits into

- **structural** fields (policy, placement, array shapes, ``mv_max_rows``, sparsity, the operand
  widths of the MAC-rate tables, which memories exist): they decide how an op is lowered, so a
  :class:`~qesim.perf.compiled.CompiledGraph` is built once per distinct structure;
- **point** fields (:data:`POINT_FIELDS`): plain numbers that the lowering reads per point —
  clock, bandwidths and efficiencies, MAC rates, SFU lanes and cycle counts, and the buffer sizes
  (they only change *which* tilings fit: the planner takes them per point with a fits-mask).

:class:`HwPoints` holds the point fields of ``n`` points as numpy arrays of length ``n``; the
scalar estimate is ``n = 1`` (:meth:`HwPoints.of`). A new numeric hardware field that should be
sweepable without re-lowering is added here (and read by the lowering through ``HwPoints``).

Units: Hz, bytes per cycle, MAC per cycle, bytes, cycles per element.
"""

from __future__ import annotations

import json
import re
from typing import Optional

import numpy as np

from qesim.errors import InputError
from qesim.hw.config import HardwareConfig, achieved_bytes_per_cycle

MEMORIES = ("hbm", "ddr")
SFU_FIELDS = ("lanes", "exp_cycles", "reciprocal_cycles", "rsqrt_cycles", "reduce_cycles", "elementwise_cycles")
BUFFER_FIELDS = ("weight_bytes", "act_bytes", "out_bytes", "adapter_bytes")

#: fidelity terms per op class (HardwareConfig.terms.<class>.<field>, qesim.perf.terms) that are point fields
TERM_CLASSES = ("linear", "attention", "softmax", "norm", "elementwise", "embedding")
TERM_FIELDS = ("fixed_us", "fixed_cycles", "issue_cycles_per_step", "floor_us", "compute_efficiency", "k_half",
               "memory_efficiency")

#: dotted paths of the point fields (everything else is structural)
POINT_FIELDS_RE = re.compile(
    r"^(frequency_mhz|(hbm|ddr)\.(bandwidth_gbps|efficiency)|mpe\.(mm|mv)\.\d+\.macs_per_cycle|"
    r"sfu\.(" + "|".join(SFU_FIELDS) + r")|buffers\.(" + "|".join(BUFFER_FIELDS) + r")|"
    r"terms\.(" + "|".join(TERM_CLASSES) + r")\.(" + "|".join(TERM_FIELDS) + r")|terms\.correction_factor)$")


def is_point_field(path: str) -> bool:
    """True if ``path`` (dotted) is a per-point number (no re-lowering when it changes)."""
    return bool(POINT_FIELDS_RE.match(path))


_OF: dict = {}  # id(config) -> (config, its n = 1 HwPoints)


class HwPoints:
    """Point fields of ``n`` configs sharing ``rep``'s structure, as arrays of length ``n``.

    ``over`` maps dotted paths of :data:`POINT_FIELDS_RE` to arrays (or scalars); fields not given
    take ``rep``'s value. Attributes: ``freq_hz`` (Hz), ``bpc[mem]`` (achieved bytes/cycle, ``inf``
    for an absent memory), ``sfu[field]``, ``buf[field]`` (bytes), and :meth:`rate`.
    """

    __slots__ = ("rep", "n", "freq_mhz", "freq_hz", "bpc", "_rates", "sfu", "buf", "_rate_cache", "memo", "_key",
                 "terms", "correction", "_bw", "_eff")

    def __init__(self, rep: HardwareConfig, n: int = 1, over: Optional[dict] = None):
        over = over or {}
        self.rep, self.n = rep, int(n)

        def f(path, default):
            v = over.get(path)
            if v is None:
                if self.n <= 256:  # a few points: a small array is cheaper than a broadcast view
                    return np.full(self.n, float(default))
                return np.broadcast_to(np.float64(default), (self.n,))  # read-only, no n-element copy
            return np.broadcast_to(np.asarray(v, dtype=float), (self.n,)).copy()

        self.freq_mhz = f("frequency_mhz", rep.frequency_mhz)
        self.freq_hz = self.freq_mhz * 1e6
        self.bpc, self._bw, self._eff = {}, {}, {}
        for m in MEMORIES:
            ch = getattr(rep, m)
            if ch is None:
                self.bpc[m] = np.full(self.n, np.inf)
                continue
            bw = f(f"{m}.bandwidth_gbps", ch.bandwidth_gbps)
            eff = f(f"{m}.efficiency", ch.efficiency)
            self._bw[m], self._eff[m] = bw, eff
            self.bpc[m] = achieved_bytes_per_cycle(bw, eff, self.freq_hz)
        # fidelity terms (qesim.perf.terms): memory_efficiency NaN = the memory's own efficiency
        self.terms = {}
        for c in TERM_CLASSES:
            oc = getattr(rep.terms, c)
            self.terms[c] = {k: f(f"terms.{c}.{k}", np.nan if getattr(oc, k) is None else getattr(oc, k))
                             for k in TERM_FIELDS}
        self.correction = f("terms.correction_factor", rep.terms.correction_factor)
        self._rates = {}
        for mode in ("mm", "mv"):
            table = getattr(rep.mpe, mode)
            cols = [f(f"mpe.{mode}.{i}.macs_per_cycle", r.macs_per_cycle) for i, r in enumerate(table)]
            self._rates[mode] = (np.stack(cols, axis=1), [(r.w_bits, r.a_bits) for r in table])
        self.sfu = {k: f(f"sfu.{k}", getattr(rep.sfu, k)) for k in SFU_FIELDS}
        self.buf = {k: f(f"buffers.{k}", getattr(rep.buffers, k)) for k in BUFFER_FIELDS}
        self._rate_cache: dict = {}
        self.memo: dict = {}  # per-point-set caches of the lowerings (e.g. planner choices)
        self._key = None

    @staticmethod
    def of(hw: HardwareConfig) -> "HwPoints":
        """The single point of ``hw`` (n = 1), memoised per config object (its arrays are read-only).
        Like every memo of the cost model it treats a config as immutable: change one with
        ``with_updates`` (a new object), never by assigning to its fields."""
        hit = _OF.get(id(hw))
        if hit is not None and hit[0] is hw:
            return hit[1]
        pts = HwPoints(hw, 1)
        for a in pts._arrays():
            a.setflags(write=False)
        _OF[id(hw)] = (hw, pts)
        if len(_OF) > 512:
            del _OF[next(iter(_OF))]
        return pts

    def _arrays(self):
        yield self.freq_mhz
        yield self.freq_hz
        for d in (self.bpc, self._bw, self._eff, self.sfu, self.buf):
            yield from d.values()
        for t in self.terms.values():
            yield from t.values()
        yield self.correction
        for r, _ in self._rates.values():
            yield r

    def rate(self, mode: str, w_bits: int, a_bits: int) -> np.ndarray:
        """MAC/cycle per point for a ``w_bits`` x ``a_bits`` product in ``mode``: the fastest
        entry whose operand widths cover both (``MPE.covering``: none is an error unless the
        config sets ``mpe.fallback: slowest``, then the slowest entry)."""
        key = (mode, w_bits, a_bits)
        r = self._rate_cache.get(key)
        if r is None:
            R, bits = self._rates[mode]
            try:
                ok = self.rep.mpe.covering(mode, w_bits, a_bits)
            except InputError as e:
                # name the config, not its file: an error naming the file means `qesim validate`
                # refuses the file; this config is valid but lacks what the workload needs
                raise InputError(f"hardware {self.rep.name!r}: {e}") from None
            r = R[:, ok].max(axis=1) if ok is not None else R.min(axis=1)
            self._rate_cache[key] = r
        return r

    def class_bpc(self, op_class: str) -> dict:
        """Achieved bytes/cycle per memory for ops of ``op_class``: the memory's bytes/cycle, or its
        bandwidth at the class's ``terms.<class>.memory_efficiency`` where that is set (the same
        bytes-per-cycle rule)."""
        me = self.terms[op_class]["memory_efficiency"]
        if not np.isnan(me).any():
            return {m: (achieved_bytes_per_cycle(self._bw[m], me, self.freq_hz) if m in self._bw else self.bpc[m])
                    for m in MEMORIES}
        if np.isnan(me).all():
            return self.bpc
        return {m: (np.where(np.isnan(me), self.bpc[m],
                             achieved_bytes_per_cycle(self._bw[m], np.nan_to_num(me), self.freq_hz))
                    if m in self._bw else self.bpc[m]) for m in MEMORIES}

    def peak_mm_rate(self) -> np.ndarray:
        """The fastest matrix-matrix MAC/cycle entry per point (the MPE's size)."""
        return self._rates["mm"][0].max(axis=1)

    def key(self) -> tuple:
        """Hashable value of every point field (memo key of a whole evaluation)."""
        if self._key is None:
            parts = [self.freq_hz.tobytes()] + [self.bpc[m].tobytes() for m in MEMORIES]
            parts += [self._rates[m][0].tobytes() for m in ("mm", "mv")]
            parts += [self.sfu[k].tobytes() for k in SFU_FIELDS] + [self.buf[k].tobytes() for k in BUFFER_FIELDS]
            parts += [self.terms[c][k].tobytes() for c in TERM_CLASSES for k in TERM_FIELDS]
            parts += [self.correction.tobytes()]
            self._key = (self.n, b"".join(parts))
        return self._key

    def take(self, idx) -> "HwPoints":
        """The points at ``idx`` (an index array or slice), as a new HwPoints."""
        sub = HwPoints.__new__(HwPoints)
        sub.rep = self.rep
        sub.freq_mhz, sub.freq_hz = self.freq_mhz[idx], self.freq_hz[idx]
        sub.n = len(sub.freq_hz)
        sub.bpc = {m: v[idx] for m, v in self.bpc.items()}
        sub._rates = {m: (R[idx], bits) for m, (R, bits) in self._rates.items()}
        sub.sfu = {k: v[idx] for k, v in self.sfu.items()}
        sub.buf = {k: v[idx] for k, v in self.buf.items()}
        sub._bw = {m: v[idx] for m, v in self._bw.items()}
        sub._eff = {m: v[idx] for m, v in self._eff.items()}
        sub.terms = {c: {k: v[idx] for k, v in d.items()} for c, d in self.terms.items()}
        sub.correction = self.correction[idx]
        sub._rate_cache, sub.memo, sub._key = {}, {}, None
        return sub


# ----------------------------------------------------------------------------- structure
_VOLATILE = ("name", "description", "sources")


def _strip(d, path=""):
    if isinstance(d, dict):
        return {k: _strip(v, f"{path}.{k}" if path else k) for k, v in d.items()
                if not (path == "" and k in _VOLATILE) and not is_point_field(f"{path}.{k}" if path else k)}
    if isinstance(d, list):
        return [_strip(v, f"{path}.{i}") for i, v in enumerate(d)]
    return d


def structural_key(hw: HardwareConfig) -> str:
    """A string equal for two configs exactly when they lower every graph the same way (all
    fields but the point fields, the name, description and sources)."""
    return json.dumps(_strip(hw.model_dump()), sort_keys=True)
