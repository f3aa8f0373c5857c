"""Fast path of the analytical model for sweeps: many hardware points of one graph at once.

``qesim.perf.model.estimate_graph`` costs one (graph, config) pair. A sweep asks for thousands of
configs that differ only in a few numbers. This module splits a config into

- *structural* fields (buffers, arrays, policy, placement, sparsity, bit-widths of the rate
  tables): they change the tiling search space, so a :class:`CompiledGraph` is built per distinct
  structural config and workload (the candidate tilings and their bytes, once);
- *vector* fields (frequency, HBM/DDR bandwidth and efficiency, MPE MAC rates, SFU lanes and
  cycles): they only change numbers, and :class:`HwVec` holds them as numpy arrays over points.

:meth:`CompiledGraph.evaluate` then reproduces, for every point at once, exactly what
``plan_graph`` + ``estimate_schedule`` compute: the planner's choice among the least-traffic
tilings (fewest cycles, then fewest steps, then the first; the two loop orders compared as
``plan_gemm`` does), the per-op schedule and the pipeline timing, with the same floating-point
formulas in the same order. ``tests/test_dse_fast.py`` checks it against ``estimate_graph``, and
:func:`qesim.dse.runner` re-checks one point of every compiled group at run time.

Units: cycles, bytes, MAC/cycle, Hz, as in ``qesim.perf``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Optional

import numpy as np

from qesim.graph.ir import AttentionOp, EmbeddingOp, LayerGraph, LinearOp, SfuOp
from qesim.hw.config import HardwareConfig
from qesim.perf.fusion import fused_deltas, fusion_plan, sfu_traffic
from qesim.perf.model import linear_terms
from qesim.perf.planner import ACC_BYTES, _pad, candidates

MEMS = ("hbm", "ddr")
SFU_FIELDS = ("lanes", "exp_cycles", "reciprocal_cycles", "rsqrt_cycles", "reduce_cycles", "elementwise_cycles")


# ----------------------------------------------------------------------------- vector params
class HwVec:
    """The per-point numbers of ``n`` configs that share ``rep``'s structure.

    ``over`` maps dotted paths (``hbm.bandwidth_gbps``, ``mpe.mm.0.macs_per_cycle``, ``sfu.lanes``,
    ``frequency_mhz``, ...) to arrays of length n; fields not given take ``rep``'s value.
    MAC-rate overrides must already include any ``scale.macs`` factor.
    """

    def __init__(self, rep: HardwareConfig, n: int, over: Optional[dict] = None):
        over = over or {}
        self.n = n

        def f(path, default):
            if path in over:
                return np.asarray(over[path], dtype=float).reshape(n)
            return np.full(n, float(default))

        self.freq_mhz = f("frequency_mhz", rep.frequency_mhz)
        self.freq_hz = self.freq_mhz * 1e6
        self.bpc = {}
        for m in MEMS:
            ch = getattr(rep, m)
            if ch is None:
                self.bpc[m] = np.full(n, np.inf)
                continue
            bw = f(f"{m}.bandwidth_gbps", ch.bandwidth_gbps)
            eff = f(f"{m}.efficiency", ch.efficiency)
            self.bpc[m] = bw * 1e9 * eff / self.freq_hz
        self.rates = {}
        for mode in ("mm", "mv"):
            table = getattr(rep.mpe, mode)
            cols = [f(f"mpe.{mode}.{i}.macs_per_cycle", r.macs_per_cycle) for i, r in enumerate(table)]
            self.rates[mode] = (np.stack(cols, axis=1), [(r.w_bits, r.a_bits) for r in table])
        self.sfu = {k: f(f"sfu.{k}", getattr(rep.sfu, k)) for k in SFU_FIELDS}
        self._rate_cache: dict = {}
        self.memo: dict = {}  # planner choices per (plan, rates) for this set of points

    def rate(self, mode: str, w_bits: int, a_bits: int) -> np.ndarray:
        """``MPE.rate`` over points: fastest entry covering both widths, else the slowest entry."""
        key = (mode, w_bits, a_bits)
        r = self._rate_cache.get(key)
        if r is None:
            R, bits = self.rates[mode]
            ok = [i for i, (wb, ab) in enumerate(bits) if wb >= w_bits and ab >= a_bits]
            r = R[:, ok].max(axis=1) if ok else R.min(axis=1)
            self._rate_cache[key] = r
        return r


def _sfu_table(func: str, s: dict):
    """Mirror of ``qesim.perf.model._sfu_cycles_per_element`` over arrays (same formulas)."""
    e, r, q, red, rs = (s["elementwise_cycles"], s["reciprocal_cycles"], s["rsqrt_cycles"], s["reduce_cycles"],
                        s["exp_cycles"])
    table = {
        "softmax": (red + rs + red + e, r),
        "layernorm": (red + red + 4 * e, q),
        "rmsnorm": (red + 2 * e, q),
        "silu": (rs + r + 2 * e, 0.0),
        "silu_mul": (rs + r + 3 * e, 0.0),
        "gelu": (rs + r + 6 * e, 0.0),
        "relu": (e, 0.0),
        "eltwise_add": (e, 0.0),
        "eltwise_mul": (e, 0.0),
        "quantize": (red + 2 * e, r),
        "dequantize": (e, 0.0),
        "rope": (3 * e, 0.0),
    }
    return table[func]


# ----------------------------------------------------------------------------- op results
@dataclass
class OpVec:
    """One op's timing over points (arrays of length n unless scalar)."""

    name: str
    kind: str
    repeat: int
    cycles: np.ndarray  # per call
    mpe_cycles: np.ndarray  # schedule MPE cycles (before the compute-hidden switch)
    mpe_busy: np.ndarray  # 0 if compute hidden
    sfu_cycles: np.ndarray
    mem_cycles: dict  # memory -> busy cycles per call (only memories the op touches)
    mem_bytes: dict  # memory -> bytes per call
    macs: float
    steps: np.ndarray
    tile: Optional[list] = None  # per point: TilePlan.describe() strings (linear ops; if requested)

    def bound(self) -> np.ndarray:
        """``op_timing``'s bound per point: first maximum of compute, sfu, hbm, ddr (touched)."""
        names = ["compute", "sfu"] + list(self.mem_cycles)
        n = len(self.cycles)
        busy = np.stack([np.broadcast_to(self.mpe_busy, n), np.broadcast_to(self.sfu_cycles, n)]
                        + [np.broadcast_to(self.mem_cycles[m], n) for m in self.mem_cycles], axis=1)
        top = np.array(names, dtype=object)[np.argmax(busy, axis=1)]
        return np.where((busy > 0).any(axis=1), top, "none")


def _timing(n, mem_bytes: dict, bpc: dict, mpe, sfu, steps, hidden: bool, db: bool, overlaps: bool):
    """Mirror of ``op_timing`` + ``pipeline_cycles`` over points."""
    mem = {}
    for m in MEMS:
        b = mem_bytes.get(m)
        if b is None:
            continue
        b = np.broadcast_to(b, (n,))
        if not np.any(b > 0):
            continue
        mem[m] = np.where(b > 0, b / bpc[m], 0.0)
    mem_total = np.zeros(n)
    for v in mem.values():
        mem_total = np.maximum(mem_total, v)
    mpe_busy = np.zeros(n) if hidden else np.broadcast_to(mpe, (n,))
    sfu = np.broadcast_to(sfu, (n,))
    c = np.maximum(mpe_busy, sfu) if overlaps else mpe_busy + sfu
    comp_total = c / steps * steps
    if db:
        cyc = np.maximum(mem_total, comp_total) + np.minimum(mem_total, comp_total) / steps
    else:
        cyc = mem_total + comp_total
    return cyc, mem, mpe_busy, sfu


# ----------------------------------------------------------------------------- linear ops
def _prune(cand, w_bytes, a_bytes, padded, steps, hidden: bool) -> np.ndarray:
    """Drop least-traffic candidates that can never be the planner's choice.

    Within one (weight bytes, activation bytes) class every candidate has the same memory time,
    and the pipeline cycles grow with padded MACs and shrink with steps. So a candidate with at
    least as many padded MACs and at most as many steps as another one is never strictly faster;
    it could win only a tie within ``plan_gemm``'s 1e-12 relative tolerance, which needs compute
    time below 1e-12 of memory time or the reverse. With ``compute_hidden`` all cycles of a
    class are equal and the planner picks the fewest steps, first in order: that one is kept.
    """
    wb = np.broadcast_to(w_bytes, padded.shape)[cand]
    ab = np.broadcast_to(a_bytes, padded.shape)[cand]
    p = padded[cand]
    s = steps[cand]
    keep = np.zeros(len(cand), dtype=bool)
    cls = np.unique(np.stack([wb, ab], axis=1), axis=0, return_inverse=True)[1].ravel()
    for c in np.unique(cls):
        idx = np.flatnonzero(cls == c)  # in candidate (ravel) order
        if hidden:
            keep[idx[np.argmin(s[idx])]] = True
            continue
        order = np.lexsort((idx, -s[idx], p[idx]))  # padded up, steps down, first index first
        best = -np.inf
        for k in idx[order]:
            if s[k] > best:
                keep[k] = True
                best = s[k]
    return cand[keep]


@lru_cache(maxsize=512)
def _grid(M: int, K: int, N: int, pm: int, pk: int, pn: int) -> dict:
    """The planner's candidate grid for one GEMM shape on one array (independent of bytes and
    buffers): tile sizes, tile counts, padded MACs, steps, and re-reads per loop order, raveled."""
    cm, ck, cn = candidates(M, pm), candidates(K, pk), candidates(N, pn)
    tm, tk, tn = np.meshgrid(cm, ck, cn, indexing="ij")
    nm, nk, nn = np.ceil(M / tm), np.ceil(K / tk), np.ceil(N / tn)
    g = dict(shape=tm.shape, cm=cm, ck=ck, cn=cn, tm=tm.ravel(), tk=tk.ravel(), tn=tn.ravel(),
             padded=(_pad(M, tm, pm) * _pad(K, tk, pk) * _pad(N, tn, pn)).ravel(), steps=(nm * nk * nn).ravel())
    g["reads"] = {
        "m_outer": (np.where((nk == 1) & (nn == 1), 1.0, nm).ravel(), np.where(nk == 1, 1.0, nn).ravel()),
        "n_outer": (np.where(nk == 1, 1.0, nm).ravel(), np.where((nk == 1) & (nm == 1), 1.0, nn).ravel()),
    }
    for v in list(g.values()):
        if isinstance(v, np.ndarray):
            v.setflags(write=False)
    return g


class _LinearPlan:
    """The least-traffic tilings of one GEMM (per loop order), deduplicated, with their costs."""

    def __init__(self, st: dict):
        self.st = st
        self._cache: dict = {}
        M, K, N = st["M"], st["K"], st["N"]
        pm, pk, pn = st["pm"], st["pk"], st["pn"]
        g = _grid(M, K, N, pm, pk, pn)
        tm, tk, tn = g["tm"], g["tk"], g["tn"]
        db = 2 if st["double_buffered"] else 1
        wbe, abe = st["w_bytes_per_elem"], st["a_bytes_per_elem"]
        fits = ((tk * tn * wbe * db <= st["w_buf"]) & (tm * tk * abe * db <= st["a_buf"])
                & (tm * tn * ACC_BYTES * db <= st["o_buf"]))
        padded, steps = g["padded"], g["steps"]
        self.orders = []
        for order in ("m_outer", "n_outer"):
            if not fits.any():
                continue
            w_reads, x_reads = g["reads"][order]
            w_bytes = w_reads * (K * N * wbe)
            x_bytes = x_reads * (M * K * abe) if st["x_offchip"] else 0.0 * w_reads
            a_bytes = x_bytes + st["o_bytes_total"]
            byt = w_bytes + a_bytes + st["extra_bytes"]
            key = np.where(fits, byt, np.inf)
            mn = key.min()
            cand = np.flatnonzero(key <= mn * (1 + 1e-9))
            # equal (reads, padding, steps) -> equal cost for every point: keep the first only
            sig = np.stack([w_reads[cand], x_reads[cand], padded[cand], steps[cand]], axis=1)
            _, first = np.unique(sig, axis=0, return_index=True)
            cand = cand[np.sort(first)]
            cand = _prune(cand, w_bytes, a_bytes, padded, steps, st["compute_hidden"])
            tmv, tkv, tnv = tm[cand], tk[cand], tn[cand]
            inm = -(-M // tmv)
            ink = -(-K // tkv)
            inn = -(-N // tnv)
            if order == "m_outer":
                wr = np.where((ink == 1) & (inn == 1), 1, inm)
                xr = np.where(ink == 1, 1, inn)
            else:
                wr = np.where(ink == 1, 1, inm)
                xr = np.where((ink == 1) & (inm == 1), 1, inn)
            self.orders.append(dict(
                order=order, w_bytes=w_bytes[cand], a_bytes=a_bytes[cand], byt=byt[cand], padded=padded[cand],
                steps=steps[cand], isteps=(inm * ink * inn).astype(np.int64),
                w_traffic=(wr * K * N).astype(np.int64) * wbe,
                x_traffic=(xr * M * K).astype(np.int64) * abe if st["x_offchip"] else np.zeros(len(cand)),
                tiles=[f"{st['mode']}:{int(x)}x{int(y)}x{int(z)}/{order}" for x, y, z in zip(tmv, tkv, tnv)],
            ))
        for o in self.orders:  # fewest steps first, then candidate order: argmax(ok) = planner's pick
            srt = np.argsort(o["steps"], kind="stable")
            for k in list(o):
                if k not in ("order",):
                    v = o[k]
                    o[k] = [v[i] for i in srt] if isinstance(v, list) else v[srt]
        if len(self.orders) == 2 and all(np.array_equal(self.orders[0][k], self.orders[1][k])
                                         for k in ("byt", "w_bytes", "a_bytes", "padded", "steps")):
            # identical candidates in both orders: n_outer never beats m_outer strictly (plan_gemm)
            self.orders = self.orders[:1]
        if not self.orders:  # nothing fits: plan_gemm's array-granule fallback
            t = (min(M, pm), min(K, pk), min(N, pn))
            inm, ink, inn = math.ceil(M / t[0]), math.ceil(K / t[1]), math.ceil(N / t[2])
            wr = 1 if (ink == 1 and inn == 1) else inm
            xr = 1 if ink == 1 else inn
            pad = float(_pad(M, t[0], pm) * _pad(K, t[1], pk) * _pad(N, t[2], pn))
            self.fallback = dict(isteps=inm * ink * inn, padded=pad, w_traffic=wr * K * N * wbe,
                                 x_traffic=xr * M * K * abe if st["x_offchip"] else 0.0,
                                 tile=f"{st['mode']}:{t[0]}x{t[1]}x{t[2]}/m_outer")
        else:
            self.fallback = None

    def choose(self, mpc: np.ndarray, extra_cycles: np.ndarray, w_bpc: np.ndarray, a_bpc: np.ndarray):
        """Index arrays of the planner's choice per point: (order index, candidate index).

        For a handful of points the choice is cached by the exact input values (what
        ``plan_gemm``'s lru_cache does for the library path), so re-evaluating one hardware point
        does not search again."""
        n = len(mpc)
        if n <= 8:
            key = (mpc.tobytes(), np.broadcast_to(extra_cycles, (n,)).tobytes(), w_bpc.tobytes(), a_bpc.tobytes())
            hit = self._cache.get(key)
            if hit is None:
                if len(self._cache) > 4096:
                    self._cache.clear()
                hit = self._cache[key] = self._choose(mpc, np.broadcast_to(extra_cycles, (n,)), w_bpc, a_bpc)
            return hit
        return self._choose(mpc, extra_cycles, w_bpc, a_bpc)

    def _choose(self, mpc, extra_cycles, w_bpc, a_bpc):
        st = self.st
        n = len(mpc)
        recs = []
        for o in self.orders:
            S = len(o["byt"])
            js = np.empty(n, dtype=np.int64)
            cys = np.empty(n)
            step = max(1, int(1_000_000 // max(S, 1)))
            wb = o["w_bytes"][None, :]
            ab = o["a_bytes"][None, :]
            num = wb + ab + st["extra_bytes"]
            uniform = st["same_memory"] and bool(np.all(num == num[0, 0]))
            stp = o["steps"][None, :]
            pad = o["padded"][None, :]
            for lo in range(0, n, step):
                sl = slice(lo, lo + step)
                if st["same_memory"]:
                    mem = (num[:, :1] if uniform else num) / w_bpc[sl, None]
                else:
                    mem = np.maximum((wb + st["extra_bytes"]) / w_bpc[sl, None], ab / a_bpc[sl, None])
                if st["compute_hidden"]:
                    comp = 0.0 * np.broadcast_to(mem, (len(w_bpc[sl]), S))
                else:
                    comp = pad / mpc[sl, None]
                    comp += extra_cycles[sl, None]
                if st["double_buffered"]:
                    hi = np.maximum(mem, comp)
                    low = np.minimum(mem, comp, out=comp)
                    low /= stp
                    hi += low
                    cyc = hi
                else:
                    cyc = comp
                    cyc += mem  # mem + comp (addition commutes exactly)
                cmin = cyc.min(axis=1)
                cmin *= 1 + 1e-12
                ok = cyc <= cmin[:, None]
                j = np.argmax(ok, axis=1)  # candidates are sorted by steps, then original order
                js[sl] = j
                cys[sl] = cyc[np.arange(len(j)), j]
            recs.append((o["byt"][js], cys, js))
        if len(recs) == 1:
            return np.zeros(n, dtype=np.int64), recs[0][2]
        (mb, mc, mj), (nb, nc, nj) = recs
        # plan_gemm: best = m_outer; n_outer replaces it if _better((nb, nc), (mb, mc))
        n_better = np.where(nb < mb * (1 - 1e-9), True, np.where(mb < nb * (1 - 1e-9), False, nc < mc))
        return n_better.astype(np.int64), np.where(n_better, nj, mj)


class _LinearVec:
    """Mirror of ``qesim.perf.model._linear`` with the vector fields left open."""

    def __init__(self, op: LinearOp, hw: HardwareConfig, stage: str, plan_cache: dict):
        pol = hw.policy
        sp = hw.stage_policy(stage)
        M, K, N = op.tokens, op.in_features, op.out_features
        t = linear_terms(op, hw, stage)  # the same tiling-independent terms as estimate_graph
        mode, arr, kept, w_bytes_elem, extra, ad_macs, o_bytes = (
            t.mode, t.arr, t.kept, t.w_bytes_elem, t.extra, t.ad_macs, t.o_bytes)
        ad = op.adapters
        self.op, self.mode, self.kept, self.ad, self.ad_macs = op, mode, kept, ad, ad_macs
        self.extra, self.o_bytes = extra, o_bytes
        self.wmem, self.amem = hw.placement.weights, hw.placement.activations
        self.hidden, self.db, self.overlaps = sp.compute_hidden, pol.double_buffering, pol.sfu_overlaps_mpe
        self.macs = int(M * K * N * kept + ad_macs)
        st = dict(M=M, K=K, N=N, w_bytes_per_elem=w_bytes_elem, a_bytes_per_elem=op.act_bits / 8.0,
                  o_bytes_total=o_bytes, x_offchip=sp.activations_offchip, extra_bytes=extra,
                  w_buf=hw.buffers.weight_bytes, a_buf=hw.buffers.act_bytes, o_buf=hw.buffers.out_bytes,
                  double_buffered=pol.double_buffering, pm=arr.m, pk=arr.k, pn=arr.n,
                  compute_hidden=sp.compute_hidden, same_memory=self.wmem == self.amem, mode=mode)
        key = tuple(sorted(st.items()))
        plan = plan_cache.get(key)
        if plan is None:
            plan = plan_cache[key] = _LinearPlan(st)
        self.plan = plan
        self.fused: list = []  # _FixedVec SFU ops fused into this op (qesim.perf.fusion)
        self.mem_delta: dict = {}  # memory -> bytes per call that fusion adds (may be < 0)
        self.min_steps = 0.0  # the fused op runs at least the fused SFU ops' steps

    def evaluate(self, hv: HwVec, tiles: bool = False) -> OpVec:
        op, n = self.op, hv.n
        padded, steps, w_b, x_b, tile, rate, ad_cycles = self.plan_arrays(hv, tiles)
        kept = self.kept
        mpe = padded * kept / rate + ad_cycles
        load_w = w_b + self.extra
        mem_bytes = {}
        mem_bytes[self.wmem] = load_w
        mem_bytes[self.amem] = mem_bytes.get(self.amem, 0.0) + x_b
        if self.o_bytes > 0:
            mem_bytes[self.amem] = mem_bytes[self.amem] + self.o_bytes
        sfu = 0.0
        if self.fused:
            steps = np.maximum(steps, self.min_steps)
            sfu = sum(f.sfu_array(hv) for f in self.fused)
            for m, d in self.mem_delta.items():
                mem_bytes[m] = mem_bytes.get(m, 0.0) + d
        cyc, mem, busy, sfu = _timing(n, mem_bytes, hv.bpc, mpe, sfu, steps, self.hidden, self.db, self.overlaps)
        return OpVec(op.name, "linear", op.repeat, cyc, mpe, busy, sfu, mem, mem_bytes, self.macs, steps, tile)

    def plan_arrays(self, hv: HwVec, tiles: bool = False):
        """The planner's choice per point: (padded MACs, steps, weight bytes, x bytes, tiles, rate,
        adapter cycles), each an array over points."""
        op, n = self.op, hv.n
        rate = hv.rate(self.mode, op.weight_bits, op.act_bits)
        ad_rate = hv.rate(self.mode, self.ad.adapter_bits, op.act_bits) if self.ad is not None else rate
        ad_cycles = self.ad_macs / ad_rate
        kept = self.kept
        mpc = rate / kept if kept < 1 else rate
        p = self.plan
        tile = None
        if p.fallback is not None:
            fb = p.fallback
            padded, steps = np.full(n, fb["padded"]), np.full(n, float(fb["isteps"]))
            w_b, x_b = np.full(n, fb["w_traffic"]), np.full(n, fb["x_traffic"])
            if tiles:
                tile = [fb["tile"]] * n
        else:
            key = (id(p), self.mode, op.weight_bits, op.act_bits, self.ad.adapter_bits if self.ad else None,
                   self.ad_macs, kept, self.wmem, self.amem)
            hit = hv.memo.get(key)
            if hit is None:
                hit = hv.memo[key] = p.choose(mpc, ad_cycles, hv.bpc[self.wmem], hv.bpc[self.amem])
            oi, j = hit
            padded, steps, w_b, x_b = (np.empty(n) for _ in range(4))
            if tiles:
                tile = [None] * n
            for k, o in enumerate(p.orders):
                sel = oi == k
                if not sel.any():
                    continue
                jj = j[sel]
                padded[sel] = o["padded"][jj]
                steps[sel] = o["isteps"][jj]
                w_b[sel] = o["w_traffic"][jj]
                x_b[sel] = o["x_traffic"][jj]
                if tiles:
                    for idx, t in zip(np.flatnonzero(sel), jj):
                        tile[idx] = o["tiles"][t]
        return padded, steps, w_b, x_b, tile, rate, ad_cycles


# ----------------------------------------------------------------------------- other ops
class _FixedVec:
    """SFU, attention and embedding ops: bytes and steps are structural; MPE/SFU cycles are not."""

    def __init__(self, op, hw: HardwareConfig, stage: str):
        sp = hw.stage_policy(stage)
        pol = hw.policy
        self.quant_in_mmu = getattr(op, "func", None) == "quantize" and pol.act_quant_unit == "mmu"
        self.op = op
        self.att_macs, self.scores, self.mode, self.att_bits = 0.0, 0.0, "mm", 16
        load: dict = {}
        store: dict = {}
        self.fused: list = []  # SFU ops fused into this (attention) op
        if isinstance(op, SfuOp):
            self.kind = "sfu"
            load, store = sfu_traffic(op, hw, stage)
            self.steps = max(1, min(op.rows, 64))
            self.hidden, self.db, self.overlaps = False, pol.double_buffering, True
            self.macs = 0
        elif isinstance(op, AttentionOp):
            self.kind = "attention"
            b, H, Hkv, d, q, kv = op.batch, op.heads, op.kv_heads, op.head_dim, op.q_len, op.kv_len
            if op.causal:
                past = kv - q
                scores = q * past + q * (q + 1) / 2.0
            else:
                scores = float(q * kv)
            self.scores = scores
            self.att_macs = 2.0 * b * H * scores * d
            self.mode = "mv" if q <= hw.mpe.mv_max_rows else "mm"
            self.att_bits = pol.attention_bits
            kvm = hw.placement.kv_cache
            load = {kvm: 2.0 * b * Hkv * kv * d * op.kv_bits / 8.0}
            store = {kvm: 2.0 * b * Hkv * q * d * op.kv_bits / 8.0}
            if sp.activations_offchip:
                am = hw.placement.activations
                load[am] = load.get(am, 0.0) + b * q * H * d * op.act_bits / 8.0
                store[am] = store.get(am, 0.0) + b * q * H * d * 16 / 8.0
            self.steps = max(1, b * Hkv)
            self.hidden, self.db, self.overlaps = sp.compute_hidden, pol.double_buffering, pol.sfu_overlaps_mpe
            self.macs = int(self.att_macs)
        elif isinstance(op, EmbeddingOp):
            self.kind = "embedding"
            load = {hw.placement.embeddings: op.tokens * op.hidden * op.bits / 8.0}
            if sp.activations_offchip:
                store = {hw.placement.activations: op.tokens * op.hidden * 16 / 8.0}
            self.steps = max(1, min(op.tokens, 64))  # as qesim.perf.model._embedding
            self.hidden, self.db, self.overlaps = False, pol.double_buffering, True
            self.macs = 0
        else:  # pragma: no cover
            raise TypeError(f"no cost model for op kind {op.kind!r}")
        load = {k: float(v) for k, v in load.items() if v > 0}
        store = {k: float(v) for k, v in store.items() if v > 0}
        self.mem_bytes = {m: load.get(m, 0.0) + store.get(m, 0.0) for m in MEMS if m in load or m in store}

    def sfu_array(self, hv: HwVec) -> np.ndarray:
        """SFU cycles per call over points (as ``_sfu`` / ``_attention`` in qesim.perf.model)."""
        op, n = self.op, hv.n
        if self.kind == "sfu":
            if self.quant_in_mmu:  # as qesim.perf.model._sfu
                return np.zeros(n)
            per_el, per_row = _sfu_table(op.func, hv.sfu)
            return np.broadcast_to((op.rows * op.width * per_el + op.rows * per_row) / hv.sfu["lanes"], (n,))
        if self.kind == "attention":
            per_el, per_row = _sfu_table("softmax", hv.sfu)
            b, H, q = op.batch, op.heads, op.q_len
            return np.broadcast_to((b * H * self.scores * per_el + b * H * q * per_row) / hv.sfu["lanes"], (n,))
        return np.zeros(n)

    def evaluate(self, hv: HwVec, tiles: bool = False) -> OpVec:
        n = hv.n
        op = self.op
        if self.kind == "attention":
            mpe = self.att_macs / hv.rate(self.mode, self.att_bits, op.act_bits)
        else:
            mpe = np.zeros(n)
        sfu = self.sfu_array(hv)
        for f in self.fused:
            sfu = sfu + f.sfu_array(hv)
        steps = float(self.steps)
        cyc, mem, busy, sfu = _timing(n, self.mem_bytes, hv.bpc, mpe, sfu, steps, self.hidden, self.db,
                                      self.overlaps)
        return OpVec(op.name, self.kind, op.repeat, cyc, np.broadcast_to(mpe, (n,)), busy, sfu, mem,
                     dict(self.mem_bytes), self.macs, np.full(n, steps), [""] * n if tiles else None)


# ----------------------------------------------------------------------------- graphs
@dataclass
class GraphVec:
    """Whole-graph results over points (the ``GraphEstimate`` properties, vectorised)."""

    tokens: int
    cycles: np.ndarray
    latency_s: np.ndarray
    tokens_per_s: np.ndarray
    bound: np.ndarray
    hbm_bytes: np.ndarray
    ddr_bytes: np.ndarray
    util: dict  # mpe, sfu, hbm, ddr -> array
    ops: list  # list[OpVec]


class CompiledGraph:
    """A graph lowered once for one structural config; evaluate it for many vector points.

    ``evaluate`` times all ops at once (arrays ops x points: a fixed number of numpy calls per
    graph, whatever the op count); ``evaluate(..., detail=True)`` goes op by op and returns the
    per-op results (``GraphVec.ops``) and, with ``tiles=True``, the chosen tilings.
    """

    def __init__(self, graph: LayerGraph, hw: HardwareConfig, plan_cache: Optional[dict] = None):
        plan_cache = {} if plan_cache is None else plan_cache
        self.graph, self.hw = graph, hw
        self.tokens = graph.batch * graph.seq_len
        self.ops = [(_LinearVec(op, hw, graph.stage, plan_cache) if isinstance(op, LinearOp)
                     else _FixedVec(op, hw, graph.stage)) for op in graph.ops]
        # SFU fusion (qesim.perf.fusion, as plan_graph): fused SFU ops are folded into their MPE op
        self.fplan = fusion_plan(graph, hw)
        for i, f in self.fplan.items():
            t, sf = self.ops[f.into], self.ops[i]
            t.fused.append(sf)
            if isinstance(t, _LinearVec):
                t.min_steps = max(t.min_steps, float(sf.steps))
            else:
                t.steps = max(t.steps, sf.steps)
        for j, (dl, ds) in fused_deltas(graph, hw, self.fplan).items():
            t = self.ops[j]
            delta = {m: dl.get(m, 0.0) + ds.get(m, 0.0) for m in set(dl) | set(ds)}
            if isinstance(t, _LinearVec):
                t.mem_delta = delta
            else:
                mb = dict(t.mem_bytes)
                for m, d in delta.items():
                    mb[m] = mb.get(m, 0.0) + d
                t.mem_bytes = {m: b for m, b in mb.items() if b > 0}
        lin = [o for o in self.ops if isinstance(o, _LinearVec)]
        fix = [o for o in self.ops if isinstance(o, _FixedVec)]
        pos = {id(o): k for k, o in enumerate(lin)}
        pos.update({id(o): k for k, o in enumerate(fix)})
        fused_ids = {id(self.ops[i]) for i in self.fplan}
        # (fixed-op index of a fused SFU op, index of its target among lin / fix ops)
        self._fuse_lin = [(pos[id(self.ops[i])], pos[id(self.ops[f.into])]) for i, f in self.fplan.items()
                          if isinstance(self.ops[f.into], _LinearVec)]
        self._fuse_fix = [(pos[id(self.ops[i])], pos[id(self.ops[f.into])]) for i, f in self.fplan.items()
                          if isinstance(self.ops[f.into], _FixedVec)]
        self._lin, self._fix = lin, fix
        col = lambda xs, dt=float: np.array(xs, dtype=dt).reshape(-1, 1)  # noqa: E731
        if lin:
            self._L = dict(rep=col([o.op.repeat for o in lin]), kept=col([o.kept for o in lin]),
                           dmb={m: col([o.mem_delta.get(m, 0.0) for o in lin]) for m in MEMS
                                if any(m in o.mem_delta for o in lin)},
                           minsteps=col([o.min_steps for o in lin]),
                           extra=col([o.extra for o in lin]), ob=col([o.o_bytes for o in lin]),
                           hidden=col([o.hidden for o in lin], bool), db=col([o.db for o in lin], bool),
                           ov=col([o.overlaps for o in lin], bool), wmem=hw.placement.weights,
                           amem=hw.placement.activations)
        if fix:
            att = [isinstance(o.op, AttentionOp) for o in fix]
            a1, a2 = [], []
            for o in fix:
                if o.kind == "sfu" and o.quant_in_mmu:  # no SFU work (as qesim.perf.model._sfu)
                    a1.append(0)
                    a2.append(0)
                elif o.kind == "sfu":
                    a1.append(o.op.rows * o.op.width)
                    a2.append(o.op.rows)
                elif o.kind == "attention":
                    a1.append(o.op.batch * o.op.heads * o.scores)
                    a2.append(o.op.batch * o.op.heads * o.op.q_len)
                else:
                    a1.append(0)
                    a2.append(0)
            # a fused SFU op counts 0 times on its own (its work is in its MPE op's row)
            self._F = dict(rep=col([0 if id(o) in fused_ids else o.op.repeat for o in fix]),
                           steps=col([o.steps for o in fix]),
                           hidden=col([o.hidden for o in fix], bool), db=col([o.db for o in fix], bool),
                           ov=col([o.overlaps for o in fix], bool), att=np.array(att),
                           att_macs=col([o.att_macs if a else 0.0 for o, a in zip(fix, att)]),
                           a1=col(a1), a2=col(a2),
                           mb={m: col([o.mem_bytes.get(m, 0.0) for o in fix]) for m in MEMS},
                           funcs=[o.op.func if o.kind == "sfu" else ("softmax" if o.kind == "attention" else None)
                                  for o in fix])

    def evaluate(self, hv: HwVec, tiles: bool = False, detail: bool = False) -> GraphVec:
        if tiles or detail:
            return self._evaluate_ops(hv, tiles)
        n = hv.n
        zeros = np.zeros(n)
        acc = dict(cycles=zeros, compute=zeros, sfu=zeros, hbm=zeros, ddr=zeros, b_hbm=zeros, b_ddr=zeros)

        def block(mb: dict, mpe, sfu, steps, hidden, db, ov, rep):
            mem_total = np.zeros((1, n))
            memc = {}
            for m in MEMS:
                b = mb.get(m)
                if b is None or not np.any(b > 0):
                    continue
                memc[m] = np.where(b > 0, b / hv.bpc[m][None, :], 0.0)
                mem_total = np.maximum(mem_total, memc[m])
            busy = np.where(hidden, 0.0, mpe)
            c = np.where(ov, np.maximum(busy, sfu), busy + sfu)
            comp = c / steps * steps
            cyc = np.where(db, np.maximum(mem_total, comp) + np.minimum(mem_total, comp) / steps, mem_total + comp)
            acc["cycles"] = acc["cycles"] + (cyc * rep).sum(axis=0)
            acc["compute"] = acc["compute"] + (busy * rep).sum(axis=0)
            acc["sfu"] = acc["sfu"] + (np.broadcast_to(sfu, cyc.shape) * rep).sum(axis=0)
            for m in MEMS:
                if m in memc:
                    acc[m] = acc[m] + (memc[m] * rep).sum(axis=0)
                    acc["b_" + m] = acc["b_" + m] + (np.broadcast_to(mb[m], cyc.shape) * rep).sum(axis=0)

        sfu_lin = np.zeros((len(self._lin), n))
        if self._fix:
            F = self._F
            tabs = hv.memo.get("sfu_tables")
            if tabs is None:
                z = np.zeros(n)
                tabs = {None: (z, z)}
                for f in ("softmax", "layernorm", "rmsnorm", "silu", "silu_mul", "gelu", "relu", "eltwise_add",
                          "eltwise_mul", "quantize", "dequantize", "rope"):
                    a, b = _sfu_table(f, hv.sfu)
                    tabs[f] = (np.broadcast_to(a, (n,)), np.broadcast_to(b, (n,)))
                hv.memo["sfu_tables"] = tabs
            pe = np.stack([tabs[f][0] for f in F["funcs"]])
            pr = np.stack([tabs[f][1] for f in F["funcs"]])
            sfu = (F["a1"] * pe + F["a2"] * pr) / hv.sfu["lanes"][None, :]
            for a, b in self._fuse_lin:  # fused SFU work joins its MPE op (rep of a is 0)
                sfu_lin[b] += sfu[a]
            for a, b in self._fuse_fix:
                sfu[b] = sfu[b] + sfu[a]
        if self._lin:
            L = self._L
            parts = [o.plan_arrays(hv) for o in self._lin]
            pad = np.stack([p[0] for p in parts])
            steps = np.maximum(np.stack([p[1] for p in parts]), L["minsteps"])
            wb = np.stack([p[2] for p in parts])
            xb = np.stack([p[3] for p in parts])
            rate = np.stack([p[5] for p in parts])
            adc = np.stack([np.broadcast_to(p[6], (n,)) for p in parts])
            mpe = pad * L["kept"] / rate + adc
            mb = {L["wmem"]: wb + L["extra"]}
            mb[L["amem"]] = (mb[L["amem"]] if L["amem"] in mb else 0.0) + xb
            mb[L["amem"]] = mb[L["amem"]] + L["ob"]
            for m, d in L["dmb"].items():
                mb[m] = (mb[m] if m in mb else 0.0) + d
            block(mb, mpe, sfu_lin, steps, L["hidden"], L["db"], L["ov"], L["rep"])
        if self._fix:
            mpe = np.zeros((len(self._fix), n))
            if F["att"].any():
                idx = np.flatnonzero(F["att"])
                rates = np.stack([hv.rate(self._fix[i].mode, self._fix[i].att_bits, self._fix[i].op.act_bits)
                                  for i in idx])
                mpe[idx] = F["att_macs"][idx] / rates
            block(F["mb"], mpe, sfu, F["steps"], F["hidden"], F["db"], F["ov"], F["rep"])
        return self._finish(hv, acc, [])

    def _finish(self, hv, acc, ops) -> GraphVec:
        cycles = acc["cycles"]
        lat = cycles / hv.freq_hz
        with np.errstate(divide="ignore"):
            tps = np.where(lat > 0, self.tokens / np.where(lat > 0, lat, 1.0), np.inf)
        names = np.array(["compute", "sfu", "hbm", "ddr"], dtype=object)
        B = np.stack([acc[k] for k in names], axis=1)
        bound = names[np.argmax(B, axis=1)]
        c = np.where(cycles == 0, 1.0, cycles)
        util = {"mpe": acc["compute"] / c, "sfu": acc["sfu"] / c, "hbm": acc["hbm"] / c, "ddr": acc["ddr"] / c}
        return GraphVec(self.tokens, cycles, lat, tps, bound, acc["b_hbm"], acc["b_ddr"], util, ops)

    def _evaluate_ops(self, hv: HwVec, tiles: bool = False) -> GraphVec:
        n = hv.n
        ops = [o.evaluate(hv, tiles) for k, o in enumerate(self.ops) if k not in self.fplan]
        acc = {k: np.zeros(n) for k in ("cycles", "compute", "sfu", "hbm", "ddr", "b_hbm", "b_ddr")}
        for o in ops:
            r = o.repeat
            acc["cycles"] = acc["cycles"] + o.cycles * r
            acc["compute"] = acc["compute"] + o.mpe_busy * r
            acc["sfu"] = acc["sfu"] + o.sfu_cycles * r
            for m in MEMS:
                if m in o.mem_cycles:
                    acc[m] = acc[m] + o.mem_cycles[m] * r
                if m in o.mem_bytes:
                    acc["b_" + m] = acc["b_" + m] + np.broadcast_to(o.mem_bytes[m], (n,)) * r
        return self._finish(hv, acc, ops)


def estimate_fast(graph: LayerGraph, hw: HardwareConfig) -> GraphVec:
    """One (graph, config) pair through the fast path (n = 1); for checks and benchmarks."""
    return CompiledGraph(graph, hw).evaluate(HwVec(hw, 1), detail=True)
