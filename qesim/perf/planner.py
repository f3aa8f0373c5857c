"""Tiling planner for a GEMM y[M,N] = x[M,K] W[K,N] on a buffered, double-buffered engine.

The planner chooses tile sizes (tm, tk, tn) and the outer loop order among the tilings whose tiles
fit the on-chip buffers: the least off-chip traffic (relative tolerance 1e-9), then the fewest
pipeline cycles (relative tolerance 1e-12), then the fewest steps, then the least padded MACs,
then the first in (order, tm, tk, tn) with m_outer before n_outer. Traffic first (as accelerator
compilers and Timeloop's energy objective do) keeps the plan independent of bandwidth and
guarantees the invariants "a bigger buffer never more traffic" and "more bandwidth never slower".
The reduction dimension k is always innermost, so an output tile accumulates on chip and is
written once. The search is exact: it returns the optimum over every (tm, tk, tn) in
[1, M] x [1, K] x [1, N] and both orders (``tests/test_planner*.py`` check it against brute force).

Rules (each written once, below):
- fits (``_fits``): tk*tn*w_bytes_per_elem, tm*tk*a_bytes_per_elem and tm*tn*ACC_BYTES, each x2 if
  double-buffered, within the weight, activation and output buffers (bytes).
- re-reads (``_reads``), off-chip traffic in bytes:
  ``m_outer`` (for m-tile: for n-tile: for k-tile): W is re-read once per m-tile unless it is a
  single resident tile (nk = nn = 1); x is read once if its row panel stays on chip (nk = 1),
  else once per n-tile.
  ``n_outer`` (for n-tile: for m-tile: for k-tile): W is read once if its column panel stays on
  chip (nk = 1), else once per m-tile; x is read once if it is a single resident tile
  (nk = nm = 1), else once per n-tile. y is written once.
- padding (``_pad``): MACs padded to the engine's spatial array (pm, pk, pn) per tile.
- cycles (``_cycles``): memory time of the traffic on its memory channel(s), compute = padded MACs
  at the MAC rate (+ tiling-independent cycles), combined by ``qesim.perf.timing.pipeline_cycles``.

Why the search is exact without a 3-D mesh. A dimension d cut into tiles of t has the tile count
n = ceil(d/t); traffic depends only on the counts (and on nk = 1), the buffer needs grow with each
tile size, and the padded extent P(t) and the steps nm*nk*nn are the only other terms. So:
1. Within one count, a smaller tile with no more padding needs less buffer and costs the same
   steps and traffic: only the tiles whose padding is a strict running minimum from the smallest
   tile of the count (``_Dim.opt``: the smallest tile ceil(d/n), ..., an array-aligned tile) can win.
2. The traffic classes are: nk > 1 with counts (nm, nn) (same traffic in both orders, so only
   m_outer can win); nk = 1 with m_outer and nn = 1 (W + x once, any tm), m_outer and nn > 1
   (nm reads of W), n_outer and nm = 1 (W + x once, any tn) and n_outer and nm > 1 (nn reads of x).
   A count that the traffic of a class does not depend on is *free* (k for nk > 1; m or n in the
   nk = 1 classes; n too when x is on chip).
3. Least traffic per design point: the smallest tiles of each count fit best, so for every count
   of one dimension the least count of the other follows in closed form from the buffers.
4. Among the least-traffic classes, cycles: fixed counts take every tile of (1); a free dimension
   takes, per count, its least-padded tile that fits (the other tiles of the count have the same
   steps and more padding), i.e. every count of the dimension, plus the best tile of the count the
   buffer cuts into (``_Dim.best_steps``). The fewest cycles of a free dimension lie on its tiles
   up to the array width, where the cycles are unimodal in the count (``_sub_cmin``: three rows);
   the fewest-steps tile within CYCLES_RTOL of them is found by scanning the counts upward from a
   lower bound (``_sub_winner``). With two free counts (x on chip) one is enumerated: first its
   running minima of padding (where the fewest cycles are), then its other tiles that a lower
   bound on the cycles does not rule out (``_may_reach``). With compute hidden the cycles of a
   class are its memory time, so only the fewest steps matter and one lookup is the whole search.
Buffers, MAC rates and bandwidths are per point (arrays); the per-dimension tables depend only on
(d, array width) and are cached.

Units: elements, bytes, cycles, MAC/cycle, bytes/cycle.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from functools import lru_cache

import numpy as np

from qesim.perf.schedule import TilePlan
from qesim.perf.timing import pipeline_cycles

ACC_BYTES = 4  # accumulator bytes per output element held on chip (int32 / fp32)
BYTES_RTOL = 1e-9  # traffic within this relative tolerance of the least counts as least
CYCLES_RTOL = 1e-12  # cycles within this relative tolerance of the fewest count as fewest
ORDERS = ("m_outer", "n_outer")
CHUNK_CELLS = 1 << 18  # (point, candidate) cells evaluated at once: bounds memory, keeps arrays in cache


# ----------------------------------------------------------------------------- problem types
@dataclass(frozen=True)
class GemmSpec:
    """The structure of one GEMM call (hashable; no per-design-point numbers)."""

    M: int
    K: int
    N: int
    w_bytes_per_elem: float  # stored bytes per weight element (bits*kept/8 + index + metadata)
    a_bytes_per_elem: float  # input activation bytes per element as read from memory
    o_bytes_total: float  # output bytes written off-chip per call (0 if on chip)
    x_offchip: bool  # x is read from off-chip memory
    extra_bytes: float  # bytes loaded once per call independent of tiling (adapters, scales)
    double_buffered: bool
    pm: int  # array granule (elements) along m, k, n
    pk: int
    pn: int
    compute_hidden: bool  # compute counts 0 cycles (idealised MPE)
    same_memory: bool  # weights and activations share one memory channel
    mode: str  # "mm" | "mv"


_POINT_FIELDS = ("w_buf", "a_buf", "o_buf", "macs_per_cycle", "extra_cycles", "w_bpc", "a_bpc")


@dataclass(frozen=True)
class GemmProblem:
    """One GEMM on one design point: a :class:`GemmSpec` plus the point's numbers (hashable)."""

    M: int
    K: int
    N: int
    w_bytes_per_elem: float
    a_bytes_per_elem: float
    o_bytes_total: float
    x_offchip: bool
    extra_bytes: float
    w_buf: int  # bytes
    a_buf: int
    o_buf: int
    double_buffered: bool
    pm: int
    pk: int
    pn: int
    macs_per_cycle: float  # MAC/cycle (already divided by the kept fraction for sparsity)
    extra_cycles: float  # compute cycles independent of tiling (adapters, router)
    compute_hidden: bool
    w_bpc: float  # bytes/cycle of the memory holding weights
    a_bpc: float  # bytes/cycle of the memory holding activations
    same_memory: bool
    mode: str

    def spec(self) -> GemmSpec:
        return GemmSpec(**{f.name: getattr(self, f.name) for f in fields(GemmSpec)})

    def point(self) -> dict:
        """The per-point keyword arguments of :func:`plan_points`."""
        return {k: getattr(self, k) for k in _POINT_FIELDS}


@dataclass
class PlanArrays:
    """The planner's choice per design point (numpy arrays of length n)."""

    tm: np.ndarray  # int64 tile sizes (elements)
    tk: np.ndarray
    tn: np.ndarray
    nm: np.ndarray  # int64 tile counts
    nk: np.ndarray
    nn: np.ndarray
    order: np.ndarray  # int8: 0 = m_outer, 1 = n_outer
    w_bytes: np.ndarray  # float64 weight traffic per call (bytes; excl. output and extras)
    x_bytes: np.ndarray  # float64 input traffic per call (bytes)
    padded_macs: np.ndarray  # float64 MACs padded to the array
    steps: np.ndarray  # float64 tile steps nm*nk*nn
    fits: np.ndarray  # bool: False where nothing fits and the array-granule fallback is used
    mode: str = "mm"

    def __len__(self) -> int:
        return len(self.tm)

    def tile_plan(self, i: int) -> TilePlan:
        return TilePlan(self.mode, int(self.tm[i]), int(self.tk[i]), int(self.tn[i]), ORDERS[int(self.order[i])],
                        int(self.nm[i]), int(self.nk[i]), int(self.nn[i]))

    def describe(self, i: int) -> str:
        """``TilePlan.describe()`` of point i, e.g. ``mm:256x4096x128/m_outer``."""
        return self.tile_plan(i).describe()

    def describe_all(self) -> list[str]:
        return [self.describe(i) for i in range(len(self))]


# ----------------------------------------------------------------------------- the rules
def _pad(d, t, p: int):
    """Padded extent of dimension d cut into tiles of t, each padded to a multiple of p."""
    full = d // t
    rem = d - full * t
    return full * (np.ceil(t / p) * p) + np.ceil(rem / p) * p


def _count(d, t):
    """Tile count ceil(d / t)."""
    return -(-d // t)


def _need(elems, bytes_per_elem: float, db: int):
    """Buffer bytes of a tile of ``elems`` elements (x2 when double-buffered)."""
    return elems * bytes_per_elem * db


def _fits(spec: GemmSpec, tm, tk, tn, w_buf, a_buf, o_buf):
    db = 2 if spec.double_buffered else 1
    return ((_need(tk * tn, spec.w_bytes_per_elem, db) <= w_buf)
            & (_need(tm * tk, spec.a_bytes_per_elem, db) <= a_buf)
            & (_need(tm * tn, ACC_BYTES, db) <= o_buf))


def _reads(order, nm, nk, nn):
    """(weight reads, input reads) per call; order 0 = m_outer, 1 = n_outer (module docstring)."""
    k1 = nk == 1
    w = np.where(order == 0, np.where(k1 & (nn == 1), 1, nm), np.where(k1, 1, nm))
    x = np.where(order == 0, np.where(k1, 1, nn), np.where(k1 & (nm == 1), 1, nn))
    return w, x


def _traffic_bytes(spec: GemmSpec, w_reads, x_reads):
    """(weight bytes, input bytes) per call for the given read counts."""
    w = (w_reads * (spec.K * spec.N)) * spec.w_bytes_per_elem
    x = (x_reads * (spec.M * spec.K)) * spec.a_bytes_per_elem if spec.x_offchip else 0.0 * w
    return w, x


def _total_bytes(spec: GemmSpec, w, x):
    """Off-chip bytes per call: weights, input, output and tiling-independent extras."""
    return w + (x + spec.o_bytes_total) + spec.extra_bytes


def _mem_cycles(spec: GemmSpec, w, x, w_bpc, a_bpc):
    """Memory cycles of traffic (w, x) bytes: one shared channel, or the busier of two."""
    a = x + spec.o_bytes_total
    if spec.same_memory:
        return (w + a + spec.extra_bytes) / w_bpc
    return np.maximum((w + spec.extra_bytes) / w_bpc, a / a_bpc)


def _comp_cycles(spec: GemmSpec, padded, mpc, extra_cycles, mem):
    """Compute cycles: padded MACs at the MAC rate plus tiling-independent cycles (0 if hidden)."""
    return 0.0 * mem if spec.compute_hidden else padded / mpc + extra_cycles


def _cycles(spec: GemmSpec, w, x, padded, steps, mpc, extra_cycles, w_bpc, a_bpc):
    """Pipeline cycles of a tiling with traffic (w, x) bytes, ``padded`` MACs and ``steps`` steps."""
    mem = _mem_cycles(spec, w, x, w_bpc, a_bpc)
    return pipeline_cycles(mem, _comp_cycles(spec, padded, mpc, extra_cycles, mem), steps, spec.double_buffered)


def _max_tile(other, bytes_per_elem: float, db: int, buf, cap: int):
    """Largest t in [0, cap] with ``_need(other * t, ...) <= buf`` (exactly the fits rule)."""
    other = np.asarray(other, dtype=np.int64)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        g = np.floor(np.asarray(buf, dtype=float) / (other * float(bytes_per_elem) * db))
    g = np.maximum(np.fmin(g, float(cap)), 0.0).astype(np.int64)  # nan (0/0) -> cap, then checked
    # the float quotient is at most one off the product rule
    g = g + ((g < cap) & (_need(other * (g + 1), bytes_per_elem, db) <= buf))
    return g - ((g > 0) & (_need(other * g, bytes_per_elem, db) > buf))


# ----------------------------------------------------------------------------- per-dimension tables
def _strict_running_min(key: np.ndarray) -> np.ndarray:
    """Mask of the entries strictly below every earlier entry."""
    prev = np.minimum.accumulate(key)
    out = np.ones(len(key), dtype=bool)
    out[1:] = key[1:] < prev[:-1]
    return out


@dataclass(frozen=True)
class _Dim:
    """Tile options of one dimension of extent d on an array of width p (all indexed by tile t)."""

    d: int
    n: np.ndarray  # [t] tile count (index 0 unused)
    P: np.ndarray  # [t] padded extent, float64
    counts: np.ndarray  # every distinct tile count, ascending
    opt: np.ndarray  # [count index, j] tiles worth trying for that count, ascending, 0-padded
    best: np.ndarray  # [count index] least-padded tile of the count (last of its opt row)
    best_steps: np.ndarray  # [T] best tile <= T by (count, padding, tile); [0] = 0
    union: np.ndarray  # every tile of opt, ascending

    def count_index(self, n):
        return np.searchsorted(self.counts, n)


@lru_cache(maxsize=512)
def _dim(d: int, p: int) -> _Dim:
    t = np.arange(1, d + 1, dtype=np.int64)
    n = _count(d, t)
    P = _pad(d, t, p)  # float64, exact integers
    Pi = P.astype(np.int64)
    start = np.ones(d, dtype=bool)
    start[1:] = n[1:] != n[:-1]
    g = np.cumsum(start) - 1  # group (count) index, t ascending = count descending
    big = int(Pi.max()) + 1
    opt_mask = _strict_running_min(Pi - g * big)  # strict running minimum within each count
    ot, og = t[opt_mask], g[opt_mask]
    first = np.flatnonzero(np.r_[True, og[1:] != og[:-1]])
    rank = np.arange(len(ot)) - np.repeat(first, np.diff(np.r_[first, len(ot)]))
    G = int(g[-1]) + 1
    opt = np.zeros((G, int(rank.max()) + 1), dtype=np.int64)
    opt[og, rank] = ot
    opt = opt[::-1].copy()  # counts ascending
    counts = n[start][::-1].copy()
    best = opt[np.arange(G), (opt > 0).sum(axis=1) - 1]
    k3 = n * big + Pi
    best_steps = np.zeros(d + 1, dtype=np.int64)
    best_steps[1:] = np.maximum.accumulate(np.where(_strict_running_min(k3), t, 0))
    nn = np.zeros(d + 1, dtype=np.int64)
    nn[1:] = n
    PP = np.zeros(d + 1)
    PP[1:] = P
    tabs = _Dim(d=d, n=nn, P=PP, counts=counts, opt=opt, best=best, best_steps=best_steps, union=np.sort(ot))
    for v in (tabs.n, tabs.P, tabs.counts, tabs.opt, tabs.best, tabs.best_steps, tabs.union):
        v.setflags(write=False)
    return tabs


# ----------------------------------------------------------------------------- traffic classes
# per class: order, and per dimension (m, k, n) either "fix" (count given per class) or a free
# condition: "any" count or "gt1" (count > 1).
_FREE = ("any", "gt1")


@dataclass
class _Classes:
    """Least-traffic classes of a set of buffer tuples: pair j is buffer tuple ``u[j]``."""

    name: str
    order: int
    kinds: tuple  # per dimension: "fix" | "any" | "gt1"
    u: np.ndarray
    idx: dict  # dimension -> count index array (fixed dimensions)
    w: np.ndarray  # traffic of the class (bytes)
    x: np.ndarray


def _least_traffic(spec: GemmSpec, dm: _Dim, dk: _Dim, dn: _Dim, wb, ab, ob) -> list[_Classes]:
    """Every least-traffic class (within BYTES_RTOL) of each buffer tuple (module docstring, 3)."""
    M, K, N = spec.M, spec.K, spec.N
    db = 2 if spec.double_buffered else 1
    cw, ca, co = spec.w_bytes_per_elem, spec.a_bytes_per_elem, ACC_BYTES
    x_zero = _traffic_bytes(spec, 1, 1)[1] == 0
    u_all = np.arange(len(wb))
    fam = []  # (name, order, kinds, ok (u[,C]), nm, nn, idx builder)

    def fw(e):  # per buffer tuple (rows) and, for 2-D tiles, per count (columns)
        return _need(e, cw, db) <= (wb[:, None] if np.ndim(e) == 2 else wb)

    def fa(e):  # per buffer tuple (rows) and, for 2-D tiles, per count (columns)
        return _need(e, ca, db) <= (ab[:, None] if np.ndim(e) == 2 else ab)

    def fo(e):  # per buffer tuple (rows) and, for 2-D tiles, per count (columns)
        return _need(e, co, db) <= (ob[:, None] if np.ndim(e) == 2 else ob)

    def traffic(order, nm, nk, nn):
        w, x = _traffic_bytes(spec, *_reads(order, nm, nk, nn))
        return w, x, _total_bytes(spec, w, x)

    one = np.ones(len(wb), dtype=np.int64)
    if K >= 2:  # nk > 1 (both orders cost the same: m_outer)
        if x_zero:
            tmx = np.minimum(_max_tile(1, ca, db, ab, M), _max_tile(1, co, db, ob, M))
            ok = (tmx >= 1) & fw(1)
            nm = _count(M, np.maximum(tmx, 1))
            fam.append(("A", 0, ("fix", "gt1", "any"), ok, {"m": nm}, traffic(0, nm, 2, one)))
        else:  # for every count of the dimension with fewer counts, the least count of the other
            # (class A reads: W nm times, x nn times; _reads with nk > 1)
            Tw = _max_tile(1, cw, db, wb, N)  # tile limits with the other tiles at 1
            Ta = _max_tile(1, ca, db, ab, M)
            if len(dm.counts) <= len(dn.counts):
                nm = dm.counts
                tm = _count(M, nm)
                ok = (tm[None, :] <= np.minimum(Ta, _max_tile(1, co, db, ob, M))[:, None]) & (Tw >= 1)[:, None]
                tnx = np.minimum(Tw[:, None], _max_tile(tm[None, :], co, db, ob[:, None], N))
                nn = _count(N, np.maximum(tnx, 1))
                nm = np.broadcast_to(nm[None, :], nn.shape)
            else:
                nn = dn.counts
                tn = _count(N, nn)
                ok = (tn[None, :] <= np.minimum(Tw, _max_tile(1, co, db, ob, N))[:, None]) & (Ta >= 1)[:, None]
                tmx = np.minimum(Ta[:, None], _max_tile(tn[None, :], co, db, ob[:, None], M))
                nm = _count(M, np.maximum(tmx, 1))
                nn = np.broadcast_to(nn[None, :], nm.shape)
            w, x = _traffic_bytes(spec, nm, nn)
            fam.append(("A", 0, ("fix", "gt1", "fix"), ok, {"m": nm, "n": nn}, (w, x, _total_bytes(spec, w, x))))
    # nk = 1, m_outer, nn = 1: W resident, x streamed once, any tm
    ok = fw(K * N) & fa(K) & fo(N)
    fam.append(("B1", 0, ("any", "fix", "fix"), ok, {"k": one, "n": one}, traffic(0, one, one, one)))
    if N >= 2:  # nk = 1, m_outer, nn > 1: W read once per m-tile
        tmx = np.minimum(_max_tile(K, ca, db, ab, M), _max_tile(1, co, db, ob, M))
        ok = (tmx >= 1) & fw(K)
        nm = _count(M, np.maximum(tmx, 1))
        fam.append(("B2", 0, ("fix", "fix", "gt1"), ok, {"m": nm, "k": one}, traffic(0, nm, one, 2 * one)))
    # nk = 1, n_outer, nm = 1: x resident, W streamed once, any tn
    ok = fa(M * K) & fw(K) & fo(M)
    fam.append(("C1", 1, ("fix", "fix", "any"), ok, {"m": one, "k": one}, traffic(1, one, one, one)))
    if M >= 2:  # nk = 1, n_outer, nm > 1: x read once per n-tile
        if x_zero:
            ok = fa(K) & fw(K) & fo(1)
            fam.append(("C2", 1, ("gt1", "fix", "any"), ok, {"k": one}, traffic(1, 2 * one, one, one)))
        else:
            tnx = np.minimum(_max_tile(K, cw, db, wb, N), _max_tile(1, co, db, ob, N))
            ok = (tnx >= 1) & fa(K)
            nn = _count(N, np.maximum(tnx, 1))
            fam.append(("C2", 1, ("gt1", "fix", "fix"), ok, {"k": one, "n": nn}, traffic(1, 2 * one, one, nn)))
    best = np.full(len(wb), np.inf)
    for f in fam:
        tot = np.where(f[3], f[5][2], np.inf)
        best = np.minimum(best, tot.min(axis=1) if tot.ndim == 2 else tot)
    thr = best * (1 + BYTES_RTOL)
    out = []
    tabs = {"m": dm, "k": dk, "n": dn}
    for name, order, kinds, ok, cnt, (w, x, tot) in fam:
        tie = ok & (tot <= (thr[:, None] if tot.ndim == 2 else thr))
        if not tie.any():
            continue
        if tie.ndim == 2:
            ui, ci = np.nonzero(tie)
            sel = lambda a: np.broadcast_to(a, tie.shape)[ui, ci]  # noqa: E731
        else:
            ui = np.flatnonzero(tie)
            sel = lambda a: np.broadcast_to(a, tie.shape)[ui]  # noqa: E731
        idx = {dname: tabs[dname].count_index(sel(c)) for dname, c in cnt.items()}
        out.append(_Classes(name, order, kinds, u_all[ui], idx, sel(w).astype(float), sel(x).astype(float)))
    return out


# ----------------------------------------------------------------------------- candidates of a class
def _free_cap(kind: str, d: int) -> int:
    return d - 1 if kind == "gt1" else d


@dataclass
class _Subs:
    """Candidate rows of one class: every combination of the fixed dimensions' tiles (and, with two
    free dimensions, every tile of opt of one of them); the last free dimension ``f`` is chosen per
    row. Arrays have one entry per row."""

    order: int
    f: str  # the last free dimension
    gt1: bool  # its count must exceed 1
    pt: np.ndarray  # design point (row of V)
    tiles: dict  # the two other dimensions -> tiles
    T: np.ndarray  # largest tile of f the buffers allow with those tiles (0: none)
    nT: np.ndarray  # its count
    w: np.ndarray  # traffic of the class (bytes)
    x: np.ndarray
    mem: np.ndarray  # memory cycles of the class traffic
    Pfix: np.ndarray  # padded extent product of the two other dimensions
    Sfix: np.ndarray  # tile count product of the two other dimensions
    cmin: np.ndarray = None  # fewest cycles of each row (_sub_cmin)


def _subs(spec: GemmSpec, tabs: dict, cl: _Classes, pj: np.ndarray, pt: np.ndarray, V: np.ndarray,
          f1_tiles: str = "union", thr=None) -> _Subs:
    """Candidate rows of class pairs (pj, pt). With two free dimensions, ``f1_tiles`` says which tiles of
    the enumerated one: "union" (every opt tile), "f1" (the running minima of padding, where the
    fewest cycles are) or "rest" (the union without those; with ``thr``, only rows that may reach it,
    :func:`_may_reach`)."""
    dims = ("m", "k", "n")
    size = {"m": spec.M, "k": spec.K, "n": spec.N}
    kinds = dict(zip(dims, cl.kinds))
    db = 2 if spec.double_buffered else 1
    cw, ca, co = spec.w_bytes_per_elem, spec.a_bytes_per_elem, ACC_BYTES
    r = np.arange(len(pj))  # row -> (pj, pt) index
    tiles: dict = {}

    def expand(rows):  # rows: (len(r), L) options, 0 = none: one row per option
        nz = (rows > 0).sum(axis=1)
        rep = np.repeat(np.arange(len(rows)), nz)
        col = np.arange(len(rep)) - np.repeat(np.cumsum(nz) - nz, nz)
        return rep, rows[rep, col]

    for dname in dims:  # fixed dimensions: every tile of opt for their count
        if kinds[dname] == "fix":
            rep, t = expand(tabs[dname].opt[cl.idx[dname][pj[r]]])
            tiles = {k: v[rep] for k, v in tiles.items()}
            tiles[dname], r = t, r[rep]
    free = [d for d in dims if kinds[d] != "fix"]
    buf = {"w": V[pt[r], 0], "a": V[pt[r], 1], "o": V[pt[r], 2]}
    f1 = prior = None
    if len(free) == 2:  # every tile of opt (all counts) of one free dimension, then the other
        pw = {"m": spec.pm, "k": spec.pk, "n": spec.pn}
        f1 = min(free, key=lambda f: (len(_free_lists(size[f], pw[f], kinds[f] == "gt1")[3]), len(tabs[f].union)))
        u1 = tabs[f1].union
        if f1_tiles != "union":
            run = np.isin(u1, _free_lists(size[f1], pw[f1], kinds[f1] == "gt1")[3])
            u1 = u1[run] if f1_tiles == "f1" else u1[~run]
        u1 = u1[u1 <= _free_cap(kinds[f1], size[f1])]
        (g,) = [d for d in dims if kinds[d] == "fix"]
        c, bk = {frozenset("kn"): (cw, "w"), frozenset("mk"): (ca, "a"), frozenset("mn"): (co, "o")}[
            frozenset((f1, g))]
        tg = tiles[g][:, None]  # (rows, 1) x (u1,): fits with the fixed tile, and may reach thr
        keep = _need(u1[None, :] * tg, c, db) <= buf[bk][:, None]
        if thr is not None:
            (f2,) = [f for f in free if f != f1]
            rows = pt[r]
            mem = _mem_cycles(spec, cl.w[pj[r]], cl.x[pj[r]], V[rows, 5], V[rows, 6])
            keep &= _may_reach(spec, tabs, f2, kinds[f2] == "gt1", tabs[g].P[tg] * tabs[f1].P[u1][None, :],
                               (tabs[g].n[tg] * tabs[f1].n[u1][None, :]).astype(float), mem[:, None],
                               V[rows, 3][:, None], V[rows, 4][:, None], thr[rows][:, None])
        rep, col = np.nonzero(keep)
        t = u1[col]
        keep = slice(None)
        rep, t = rep[keep], t[keep]
        tiles = {k: v[rep] for k, v in tiles.items()}
        tiles[f1], r, prior = t, r[rep], rep
        buf = {k: v[rep] for k, v in buf.items()}
        free = [f for f in free if f != f1]
    (f,) = free
    cap = _free_cap(kinds[f], size[f])
    tm, tk, tn = tiles.get("m"), tiles.get("k"), tiles.get("n")
    if f == "k":
        T = np.minimum(_max_tile(tn, cw, db, buf["w"], cap), _max_tile(tm, ca, db, buf["a"], cap))
        ok = _need(tm * tn, co, db) <= buf["o"]
    elif f == "m":
        T = np.minimum(_max_tile(tk, ca, db, buf["a"], cap), _max_tile(tn, co, db, buf["o"], cap))
        ok = _need(tk * tn, cw, db) <= buf["w"]
    else:
        T = np.minimum(_max_tile(tk, cw, db, buf["w"], cap), _max_tile(tm, co, db, buf["o"], cap))
        ok = _need(tm * tk, ca, db) <= buf["a"]
    T = np.where(ok, T, 0)
    keep = T >= 1
    if f1 is not None:  # same count of f1 and the same room T for f: only the least-padded tile of f1
        n1 = tabs[f1].n[tiles[f1]]
        keep[:-1] &= ~((prior[1:] == prior[:-1]) & (n1[1:] == n1[:-1]) & (T[1:] == T[:-1]))
    r, T = r[keep], T[keep]
    tiles = {k: v[keep] for k, v in tiles.items()}
    P = [tabs[d].P[tiles[d]] for d in dims if d != f]
    S = [tabs[d].n[tiles[d]] for d in dims if d != f]
    prow, jrow = pt[r], pj[r]
    w, x = cl.w[jrow], cl.x[jrow]
    return _Subs(order=cl.order, f=f, gt1=kinds[f] == "gt1", pt=prow, tiles=tiles, T=T, nT=_count(size[f], T),
                 w=w, x=x, mem=_mem_cycles(spec, w, x, V[prow, 5], V[prow, 6]), Pfix=P[0] * P[1],
                 Sfix=(S[0] * S[1]).astype(float))


def _sub_cycles(spec: GemmSpec, tabs: dict, sb: _Subs, V: np.ndarray, tf: np.ndarray, rows=slice(None)):
    """Cycles of rows ``rows`` of ``sb`` with tiles ``tf`` (rows x C) of the free dimension."""
    d = tabs[sb.f]
    padded = sb.Pfix[rows][:, None] * d.P[tf]
    steps = sb.Sfix[rows][:, None] * d.n[tf]
    mem = sb.mem[rows][:, None]
    pt = sb.pt[rows]
    comp = _comp_cycles(spec, padded, V[pt, 3][:, None], V[pt, 4][:, None], mem)
    return pipeline_cycles(mem, comp, steps, spec.double_buffered), padded, steps


@lru_cache(maxsize=1024)
def _free_lists(d: int, p: int, gt1: bool):
    """(counts, least-padded tile per count, F1 counts ascending, F1 tiles) of a free dimension."""
    t = _dim(d, p)
    sel = t.counts > (1 if gt1 else 0)
    f1 = np.flatnonzero(_strict_running_min(t.P[1:])) + 1  # strict running minima of padding
    f1 = f1[f1 <= (d - 1 if gt1 else d)][::-1]  # count ascending
    return t.counts[sel], t.best[sel], t.n[f1], f1


def _sub_cmin(spec: GemmSpec, tabs: dict, sb: _Subs, V: np.ndarray) -> np.ndarray:
    """Fewest cycles of each row over every tile of the free dimension that fits.

    The fewest cycles are reached at a strict running minimum of the padding (F1: the smallest tile
    of each count up to the array width p; any other tile has a smaller one with no more padding
    and no fewer steps). On F1 the padded extent is count * p, so the cycles are
    h(n) = max(m, a n + e) + min(m, a n + e) / (S n) (pipeline_cycles; m memory, a n + e compute,
    S n steps): decreasing up to the crossover n_c = (m - e) / a, then convex with its minimum at
    sqrt(m / (a S)). h is unimodal, so its least value over the counts that fit is at one of the
    two counts around max(n_c, sqrt(m / (a S))) or at the least count that fits: three rows."""
    d = tabs[sb.f]
    if spec.compute_hidden:
        tf = d.best_steps[sb.T][:, None]
        return _sub_cycles(spec, tabs, sb, V, tf)[0][:, 0]
    p = {"m": spec.pm, "k": spec.pk, "n": spec.pn}[sb.f]
    _, _, f1n, f1t = _free_lists(d.d, p, sb.gt1)
    mpc, ec = V[sb.pt, 3], V[sb.pt, 4]
    with np.errstate(divide="ignore", invalid="ignore"):
        a = sb.Pfix * p / mpc
        if spec.double_buffered:
            n_opt = np.maximum((sb.mem - ec) / a, np.sqrt(sb.mem / (a * sb.Sfix)))
        else:
            n_opt = np.zeros(len(a))
    n_opt = np.nan_to_num(n_opt, nan=0.0, posinf=float(d.d), neginf=0.0)
    lo = np.searchsorted(f1n, sb.nT)  # the least F1 count that fits
    hi = np.searchsorted(f1n, n_opt)
    last = len(f1n) - 1
    idx = np.stack([lo, np.clip(hi - 1, lo, last), np.clip(hi, lo, last)], axis=1)
    return _sub_cycles(spec, tabs, sb, V, f1t[np.minimum(idx, last)])[0].min(axis=1)


def _sub_winner(spec: GemmSpec, tabs: dict, sb: _Subs, V: np.ndarray, thr: np.ndarray):
    """Per row: the fewest-steps tile of the free dimension whose cycles are within ``thr`` (the
    point's fewest cycles x (1 + CYCLES_RTOL)); (rows, tiles, padded, steps).

    Within a row, steps grow with the free count and each count's best candidate is its
    least-padded tile that fits, so the winner is the least eligible count. No count below n_lb is
    eligible, where n_lb is where the row's cycles at the least padding of the dimension reach
    ``thr`` (a lower bound, non-increasing in the count); counts are scanned upward from there."""
    d = tabs[sb.f]
    th = thr[sb.pt]
    if spec.compute_hidden:  # every tile of a row costs the same cycles: the fewest steps
        tf = d.best_steps[sb.T][:, None]
        cyc, padded, steps = _sub_cycles(spec, tabs, sb, V, tf)
        rows = np.flatnonzero(cyc[:, 0] <= th)
        return rows, tf[rows, 0], padded[rows, 0], steps[rows, 0]
    p = {"m": spec.pm, "k": spec.pk, "n": spec.pn}[sb.f]
    cnt, best, _, _ = _free_lists(d.d, p, sb.gt1)
    pmin = d.P[best].min()
    mpc, ec = V[sb.pt, 3], V[sb.pt, 4]
    c0 = sb.Pfix * pmin / mpc + ec
    if spec.double_buffered:
        hi_, lo_ = np.maximum(sb.mem, c0), np.minimum(sb.mem, c0)
        with np.errstate(divide="ignore", invalid="ignore"):
            n_lb = np.where(th > hi_, lo_ / (sb.Sfix * (th - hi_)), 0.0)
        n_lb = np.floor(np.nan_to_num(n_lb, nan=0.0, posinf=0.0) * (1 - 1e-9)) - 1
    else:
        n_lb = np.zeros(len(c0))
    start = np.searchsorted(cnt, np.maximum(n_lb, sb.nT))
    rows_out, t_out, p_out, s_out = [], [], [], []
    act = np.flatnonzero((start < len(cnt)) & (sb.cmin <= th))  # rows with an eligible tile
    W = 4
    while len(act):
        cols = start[act][:, None] + np.arange(W)
        inside = cols < len(cnt)
        cols = np.minimum(cols, len(cnt) - 1)
        tf = np.where(cnt[cols] == sb.nT[act][:, None], d.best_steps[sb.T[act]][:, None], best[cols])
        cyc, padded, steps = _sub_cycles(spec, tabs, sb, V, tf, act)
        el = inside & (cyc <= th[act][:, None])
        found = el.any(axis=1)
        j = np.argmax(el, axis=1)[found]
        f = np.flatnonzero(found)
        rows_out.append(act[f])
        t_out.append(tf[f, j])
        p_out.append(padded[f, j])
        s_out.append(steps[f, j])
        start[act] += W
        act = act[~found & (start[act] < len(cnt))]
        W *= 2
    return (np.concatenate(rows_out) if rows_out else np.zeros(0, np.int64),
            *(np.concatenate(v) if v else np.zeros(0) for v in (t_out, p_out, s_out)))


def _may_reach(spec: GemmSpec, tabs: dict, f: str, gt1: bool, Pfix, Sfix, mem, mpc, ec, th) -> np.ndarray:
    """Rows that may reach ``thr`` cycles for some tile of the free dimension ``f``.

    A tile of count n pads to at least n * p, so compute c >= A n (A = Pfix p / mpc) with steps
    S = Sfix n, and c >= c_lo = Pfix * Pmin / mpc + e. With memory time m and alpha = A / Sfix, the
    pipeline cycles max(m, c) + min(m, c) / S are >= m + alpha where c <= m, and where c > m they are
    (c - m) + m / S + m >= (c - m) + alpha m / c + m, which is >= m + alpha when m >= alpha (else use
    S <= Sfix * d: >= m + min(alpha, m / (Sfix d))); and always >= max(m, c_lo). Not double-buffered:
    m + c_lo. Kept with a margin (1e-9) for rounding."""
    d = tabs[f]
    p = {"m": spec.pm, "k": spec.pk, "n": spec.pn}[f]
    _, best, _, _ = _free_lists(d.d, p, gt1)
    c_lo = Pfix * d.P[best].min() / mpc + ec
    if spec.double_buffered:
        with np.errstate(divide="ignore", invalid="ignore"):
            alpha = Pfix * p / (mpc * Sfix)
            step = np.where(mem >= alpha, alpha, np.minimum(alpha, mem / (Sfix * d.d)))
        lb = np.maximum(mem + np.nan_to_num(step, nan=0.0), np.maximum(mem, c_lo))
    else:
        lb = mem + c_lo
    return lb * (1 - 1e-9) <= th


def _solve_chunk(spec: GemmSpec, tabs: dict, V: np.ndarray, B: np.ndarray, binv: np.ndarray):
    """Plans of the points V (rows: w_buf, a_buf, o_buf, mpc, extra_cycles, w_bpc, a_bpc) whose
    buffer tuples are rows ``binv`` of B."""
    n = len(V)
    classes = _least_traffic(spec, tabs["m"], tabs["k"], tabs["n"], B[:, 0], B[:, 1], B[:, 2])
    by_u = np.argsort(binv, kind="stable")  # points of each buffer tuple
    ucount = np.bincount(binv, minlength=len(B))
    ustart = np.r_[0, np.cumsum(ucount)[:-1]]
    subs, later = [], []
    pcmin = np.full(n, np.inf)
    for cl in classes:
        rep = ucount[cl.u]
        pj = np.repeat(np.arange(len(cl.u)), rep)
        off = np.arange(len(pj)) - np.repeat(np.cumsum(rep) - rep, rep)
        pt = by_u[ustart[cl.u][pj] + off]
        two = sum(k != "fix" for k in cl.kinds) == 2 and not spec.compute_hidden
        # two free counts: the fewest cycles lie on the running minima of padding of the enumerated
        # one ("f1" rows); its other tiles can only tie them and are added once the threshold is known
        sb = _subs(spec, tabs, cl, pj, pt, V, "f1" if two else "union")
        if two:
            later.append((cl, pj, pt))
        if len(sb.pt):
            sb.cmin = _sub_cmin(spec, tabs, sb, V)
            np.minimum.at(pcmin, sb.pt, sb.cmin)
            subs.append(sb)
    thr = pcmin * (1 + CYCLES_RTOL)
    for cl, pj, pt in later:
        sb = _subs(spec, tabs, cl, pj, pt, V, "rest", thr)
        if len(sb.pt):
            sb.cmin = _sub_cmin(spec, tabs, sb, V)
            subs.append(sb)
    win = []
    for sb in subs:
        rows, tf, padded, steps = _sub_winner(spec, tabs, sb, V, thr)
        t = {k: v[rows] for k, v in sb.tiles.items()}
        t[sb.f] = tf.astype(np.int64)
        win.append((sb.pt[rows], steps, padded, np.full(len(rows), sb.order), t["m"], t["k"], t["n"]))
    out = dict(tm=np.zeros(n, np.int64), tk=np.zeros(n, np.int64), tn=np.zeros(n, np.int64),
               order=np.zeros(n, np.int8), fits=np.zeros(n, bool))
    if win:
        pt, steps, padded, order, tm, tk, tn = (np.concatenate(c) for c in zip(*win))
        srt = np.lexsort((tn, tk, tm, order, padded, steps, pt))
        pt_s = pt[srt]
        first = srt[np.r_[True, pt_s[1:] != pt_s[:-1]]]
        p = pt[first]
        out["tm"][p], out["tk"][p], out["tn"][p] = tm[first], tk[first], tn[first]
        out["order"][p] = order[first]
        out["fits"][p] = True
    nf = ~out["fits"]  # nothing fits even at the smallest tiles: the array granule, reported
    out["tm"][nf], out["tk"][nf], out["tn"][nf] = min(spec.M, spec.pm), min(spec.K, spec.pk), min(spec.N, spec.pn)
    return out


@lru_cache(maxsize=4096)
def _tables(spec: GemmSpec) -> dict:
    return {"m": _dim(spec.M, spec.pm), "k": _dim(spec.K, spec.pk), "n": _dim(spec.N, spec.pn)}


def _cells_per_point(spec: GemmSpec, tabs: dict) -> int:
    """A rough estimate of cells per point (least-traffic search and candidate rows; for chunking)."""
    C = min(len(tabs["m"].counts), len(tabs["n"].counts))
    U = 1 if spec.x_offchip else 64  # two free dimensions: rows of the enumerated one (bounded)
    return C + 16 * U


_BUFGROUPS: list = []  # [(w, a, o arrays, groups)]: the same buffer arrays recur for every GEMM of a graph


def _buffer_groups(w_raw, a_raw, o_raw, wb, ab, ob):
    """(distinct (w, a, o) buffer tuples B, index of each point's tuple, points sorted by tuple,
    start of each tuple's points in that order (len(B) + 1)); memoised on the identity of the
    caller's arrays (the same HwPoints buffers for every GEMM of a graph)."""
    for w, a, o, res in _BUFGROUPS:
        if w is w_raw and a is a_raw and o is o_raw:
            return res
    n = len(wb)
    if wb.min() == wb.max() and ab.min() == ab.max() and ob.min() == ob.max():
        res = (np.array([[wb[0], ab[0], ob[0]]]), np.zeros(n, dtype=np.int64), np.arange(n), np.array([0, n]))
    else:
        codes, vals = [], []
        for c in (wb, ab, ob):  # 1-D uniques combined into one integer key (np.unique(axis=0) is slow)
            v, i = np.unique(c, return_inverse=True)
            vals.append(v)
            codes.append(i.reshape(-1).astype(np.int64))
        key = (codes[0] * len(vals[1]) + codes[1]) * len(vals[2]) + codes[2]
        ukey, inv = np.unique(key, return_inverse=True)
        inv = inv.reshape(-1)
        io = ukey % len(vals[2])
        ia = (ukey // len(vals[2])) % len(vals[1])
        iw = ukey // (len(vals[2]) * len(vals[1]))
        uniq = np.stack([vals[0][iw], vals[1][ia], vals[2][io]], axis=1)
        by_u = np.argsort(inv, kind="stable")
        ustart = np.r_[0, np.cumsum(np.bincount(inv, minlength=len(uniq)))]
        res = (uniq, inv, by_u, ustart)
    if np.ndim(w_raw) or np.ndim(a_raw) or np.ndim(o_raw):  # arrays: memoise by identity
        _BUFGROUPS.insert(0, (w_raw, a_raw, o_raw, res))
        del _BUFGROUPS[8:]
    return res


def _arrays(w_buf, a_buf, o_buf, macs_per_cycle, extra_cycles, w_bpc, a_bpc):
    args = (w_buf, a_buf, o_buf, macs_per_cycle, extra_cycles, w_bpc, a_bpc)
    if all(isinstance(v, (float, int)) or (isinstance(v, np.ndarray) and v.shape in ((), (1,))) for v in args):
        return 1, [np.array([float(v) if isinstance(v, (float, int)) else float(v.reshape(-1)[0])]) for v in args]
    cols = [np.asarray(v, dtype=float) for v in (w_buf, a_buf, o_buf, macs_per_cycle, extra_cycles, w_bpc, a_bpc)]
    shape = np.broadcast_shapes(*(c.shape for c in cols))
    if len(shape) > 1:
        raise ValueError(f"plan_points: per-point arrays must be 1-D, got shape {shape}")
    n = shape[0] if shape else 1
    return n, [np.broadcast_to(c.reshape(-1) if c.ndim else c, (n,)) for c in cols]


def plan_points(spec: GemmSpec, *, w_buf, a_buf, o_buf, macs_per_cycle, extra_cycles, w_bpc, a_bpc,
                infer: bool | None = None) -> PlanArrays:
    """The planner's choice for every design point (module docstring).

    Keyword arguments are arrays of shape (n,) or scalars (broadcast): buffers in bytes,
    ``macs_per_cycle`` in MAC/cycle (already divided by the kept fraction for sparsity),
    ``extra_cycles`` in cycles, ``w_bpc``/``a_bpc`` in bytes/cycle of the memory holding weights /
    activations. The least-traffic search runs once per distinct buffer tuple; points are worked
    in chunks of about CHUNK_CELLS candidate cells. With ``infer`` (default :data:`INFER`) the
    choice along each line of points that differ only in rho (see "Plans along rho") is taken from
    exactly planned samples where the samples on both sides agree.
    """
    n, (wb, ab, ob, mpc, ec, wbpc, abpc) = _arrays(w_buf, a_buf, o_buf, macs_per_cycle, extra_cycles, w_bpc, a_bpc)
    B, inv, by_u, ustart = _buffer_groups(w_buf, a_buf, o_buf, wb, ab, ob)
    tabs = _tables(spec)
    cols = _Cols([wb, ab, ob, mpc, ec, wbpc, abpc])
    if INFER if infer is None else infer:
        out = _plan_along_rho(spec, tabs, cols, B, inv, by_u, ustart)
    else:
        out = _plan_exact(spec, tabs, cols.rows(slice(None)), inv)
    return _finish(spec, tabs, out["tm"], out["tk"], out["tn"], out["order"], out["fits"])


class _Cols:
    """The per-point columns (w_buf, a_buf, o_buf, mpc, extra_cycles, w_bpc, a_bpc) kept apart: a
    column by index, rows stacked into an (m, 7) array only for the subsets that are searched."""

    def __init__(self, cols: list):
        self.cols = cols

    def __len__(self) -> int:
        return len(self.cols[0])

    def col(self, j: int) -> np.ndarray:
        return self.cols[j]

    def rows(self, idx) -> np.ndarray:
        return np.stack([c[idx] for c in self.cols], axis=1)


def _plan_exact(spec: GemmSpec, tabs: dict, V: np.ndarray, inv: np.ndarray) -> dict:
    """Exact plans of the points V (rows: w_buf, a_buf, o_buf, mpc, extra_cycles, w_bpc, a_bpc) whose
    buffer tuple indices are ``inv``: (tm, tk, tn, order, fits) arrays."""
    n = len(V)
    step = max(1, CHUNK_CELLS // max(1, _cells_per_point(spec, tabs)))
    out = {k: np.zeros(n, dtype=np.int64) for k in ("tm", "tk", "tn")}
    out["order"], out["fits"] = np.zeros(n, dtype=np.int8), np.zeros(n, dtype=bool)
    if n == 0:
        return out
    one = inv.min() == inv.max()
    by_u = np.arange(n) if one else np.argsort(inv, kind="stable")  # points of a tuple together
    for lo in range(0, n, step):
        pp = by_u[lo:lo + step]
        if one:
            us, loc = np.zeros(1, np.int64), np.zeros(len(pp), np.int64)
        else:
            us, loc = np.unique(inv[pp], return_inverse=True)
        Vc = V[pp]
        Bc = np.stack([Vc[np.r_[0, np.flatnonzero(np.diff(loc)) + 1], j] for j in range(3)], axis=1) if not one \
            else Vc[:1, :3]
        r = _solve_chunk(spec, tabs, Vc, Bc, loc.reshape(-1))
        for k in out:
            out[k][pp] = r[k]
    return out


# ----------------------------------------------------------------------------- plans along rho
# Why a line of points can share its plans. Take the points of one buffer tuple on which every
# least-traffic tiling has the same traffic (w, x) (``_line_traffic``; nearly always: the classes
# that tie read each operand the same number of times). Every candidate then has the same memory
# time m, and its cycles are pipeline_cycles(m, P/mpc + e, S) = pipeline_cycles(rho, P + eta, S) / mpc
# with rho = m * mpc and eta = e * mpc (MAC-equivalents; the formula is homogeneous of degree 1),
# so on a line of fixed eta the plan depends on rho alone. Double-buffered, two candidates
# (c = P + eta, S) with c_i < c_j differ by g_i - g_j = (c_i - c_j) + rho (1/S_i - 1/S_j) for
# rho <= c_i (linear, negative at 0), rho (1 - 1/S_j) + c_i/S_i - c_j on [c_i, c_j] (non-decreasing)
# and a constant beyond: the sign changes at most once, so on the lower envelope each tiling holds
# one interval of rho (without double buffering, or with compute hidden, the cycles do not depend
# on rho at all). Hence if exactly planned samples at rho_a < rho_b agree, every point between them
# has that plan. The only exception is the tie-break's relative tolerance (CYCLES_RTOL) at rho
# where two candidates are within 1e-12 of each other; there the inferred tiling's cycles are the
# exact optimum's to about that tolerance. Samples are real points of the call, planned exactly by
# ``_plan_exact``; where neighbours disagree the gap is split until at most INFER_FILL points remain,
# which are planned one by one; samples on a line are at most RHO_GAP apart in rho. The samples
# persist across calls (a sweep's chunks, a what-if loop's next bandwidth): a single new point
# gets two neighbours at rho * RHO_GAP**(+-1/2) planned with it.
INFER = True
RHO_GAP = 2.0  # neighbouring samples further apart in rho than this do not share a plan
INFER_FILL = 16  # a disagreeing gap with at most this many points: plan them all
RHO_BOUNDS = (1e-9, 1e9)  # rho / (M K N) outside this: planned exactly, no inference
MAX_LINES = 64  # more distinct buffer tuples than this in one call: the exact search for every point
_LINES: dict = {}  # (GemmSpec, buffer tuple, eta) -> [rho samples (sorted), plans (k, 5) int64, neighbours agree]
_LINE_TRAFFIC: dict = {}  # (GemmSpec, buffer tuple) -> (w, x) or None


def _line_traffic(spec: GemmSpec, tabs: dict, b: np.ndarray):
    """(w, x) traffic shared by every least-traffic tiling of buffer tuple ``b``; None if they differ
    (or nothing fits, or compute is hidden: then handled as a constant plan by the caller)."""
    key = (spec, float(b[0]), float(b[1]), float(b[2]))
    if key not in _LINE_TRAFFIC:
        cls = _least_traffic(spec, tabs["m"], tabs["k"], tabs["n"], b[None, 0], b[None, 1], b[None, 2])
        w = np.concatenate([c.w for c in cls]) if cls else np.zeros(0)
        x = np.concatenate([c.x for c in cls]) if cls else np.zeros(0)
        ok = len(w) > 0 and w.min() == w.max() and x.min() == x.max()
        if len(_LINE_TRAFFIC) > 65536:
            _LINE_TRAFFIC.clear()
        _LINE_TRAFFIC[key] = (float(w[0]), float(x[0])) if ok else None
    return _LINE_TRAFFIC[key]


def _plan_along_rho(spec: GemmSpec, tabs: dict, V: "_Cols", B: np.ndarray, inv, by_u, ustart) -> dict:
    """Plans of the points ``V`` (columns as in :func:`_plan_exact`) along lines of rho (section comment)."""
    n = len(V)
    if len(B) > MAX_LINES:  # buffers drawn per point: few points per tuple, the batched exact search is faster
        return _plan_exact(spec, tabs, V.rows(slice(None)), inv)
    out = {k: np.zeros(n, dtype=np.int64) for k in ("tm", "tk", "tn")}
    out["order"], out["fits"] = np.zeros(n, dtype=np.int8), np.zeros(n, dtype=bool)
    trs = [_line_traffic(spec, tabs, B[u]) for u in range(len(B))]
    good = np.array([t is not None for t in trs])
    one = len(B) == 1
    ok = np.full(n, bool(good[0])) if one else good[inv]
    if spec.compute_hidden:  # every candidate costs its memory time m: one plan per tuple
        rho, ek = np.ones(n), np.zeros(n)
    else:
        w0 = np.array([t[0] if t else 0.0 for t in trs])
        x0 = np.array([t[1] if t else 0.0 for t in trs])
        tr_pt = (w0[0], x0[0]) if one else (w0[inv], x0[inv])
        rho = _rho(spec, tr_pt, V.col(5), V.col(6), V.col(3))
        eta = V.col(4) * V.col(3)
        mkn = float(spec.M) * spec.K * spec.N
        with np.errstate(invalid="ignore"):
            ok &= (np.isfinite(rho) & (rho >= RHO_BOUNDS[0] * mkn) & (rho <= RHO_BOUNDS[1] * mkn)
                   & np.isfinite(eta) & (eta >= 0))
        ek = _round_sig(eta) if eta.any() else eta
    ex = np.flatnonzero(~ok)
    if len(ex):
        r = _plan_exact(spec, tabs, V.rows(ex), inv[ex])
        for k in out:
            out[k][ex] = r[k]
    # lines: (buffer tuple, eta) of the points that may infer
    if ek.min() == ek.max():
        e0 = float(ek[0])
        groups = [(u, e0, by_u[ustart[u]:ustart[u + 1]]) for u in range(len(B)) if trs[u] is not None]
    else:
        key = np.stack([inv.astype(float), ek], axis=1)
        uq, li = np.unique(key, axis=0, return_inverse=True)
        li = li.reshape(-1)
        o = np.argsort(li, kind="stable")
        st_ = np.r_[0, np.cumsum(np.bincount(li, minlength=len(uq)))]
        groups = [(int(uq[j, 0]), float(uq[j, 1]), o[st_[j]:st_[j + 1]]) for j in range(len(uq))
                  if trs[int(uq[j, 0])] is not None]
    lines = []
    for u, e, ii in groups:
        if len(ex):
            ii = ii[ok[ii]]
        if len(ii):
            lines.append(((spec, float(B[u, 0]), float(B[u, 1]), float(B[u, 2]), e), ii, rho[ii], trs[u]))
    pending = lines
    while pending:
        asks = []  # (line, sample rows of V (real or synthetic), their rho)
        nxt = []
        for key, ii, rr, tr in pending:
            memo = _LINES.get(key)
            if memo is None:
                if len(_LINES) > 65536:
                    _LINES.clear()
                memo = _LINES[key] = [np.zeros(0), np.zeros((0, 5), np.int64), np.zeros(0, bool)]
            sr, sp_, agree = memo
            pos = np.searchsorted(sr, rr, side="right")
            lo = pos - 1
            hit = np.zeros(len(rr), bool)
            if len(sr):
                lo0 = np.maximum(lo, 0)
                at = (lo >= 0) & (sr[lo0] == rr)
                inside = (lo >= 0) & (pos < len(sr))
                hit = at | (inside & agree[lo0])  # the samples on both sides agree (and are close)
                w = np.flatnonzero(hit)
                if len(w):
                    plan = sp_[lo0[w]]
                    gi = ii[w]
                    out["tm"][gi], out["tk"][gi], out["tn"][gi] = plan[:, 0], plan[:, 1], plan[:, 2]
                    out["order"][gi], out["fits"][gi] = plan[:, 3], plan[:, 4].astype(bool)
            if hit.all():
                continue
            o = np.argsort(rr[~hit], kind="stable")
            ii, rr = ii[~hit][o], rr[~hit][o]
            nxt.append((key, ii, rr, tr))
            asks.append((key, *_samples(spec, tr, V, ii, rr)))
        if not asks:
            break
        rows = np.concatenate([a[1] for a in asks])
        r = _plan_exact(spec, tabs, rows, _inv_of(rows))
        plans = np.stack([r["tm"], r["tk"], r["tn"], r["order"].astype(np.int64), r["fits"].astype(np.int64)], axis=1)
        at = 0
        for key, rows_k, rho_k in asks:
            k = len(rows_k)
            sr, sp_, _ = _LINES[key]
            allr = np.concatenate([sr, rho_k])
            allp = np.concatenate([sp_, plans[at:at + k]])
            o = np.argsort(allr, kind="stable")
            allr, allp = allr[o], allp[o]
            keep = np.r_[True, allr[1:] != allr[:-1]]
            allr, allp = allr[keep], allp[keep]
            # agree[j]: samples j and j + 1 have one plan and are at most RHO_GAP apart (the last: False)
            agree = np.r_[(allp[1:] == allp[:-1]).all(axis=1) & (allr[1:] <= allr[:-1] * RHO_GAP), False]
            _LINES[key] = [allr, allp, agree]
            at += k
        pending = nxt
    return out


def _inv_of(rows: np.ndarray) -> np.ndarray:
    """Buffer-tuple index of each row of V."""
    b = rows[:, :3]
    if len(b) == 0 or (b == b[0]).all():
        return np.zeros(len(b), dtype=np.int64)
    return np.unique(b, axis=0, return_inverse=True)[1].reshape(-1)


def _rho(spec: GemmSpec, tr, w_bpc, a_bpc, mpc) -> np.ndarray:
    """rho = memory cycles of the shared traffic ``tr`` (per point or one pair) x MAC/cycle
    (MAC-equivalents); 1 where compute is hidden (every candidate costs its memory time)."""
    if spec.compute_hidden:
        return np.ones(len(mpc))
    return _mem_cycles(spec, tr[0], tr[1], w_bpc, a_bpc) * mpc


def _round_sig(x: np.ndarray, digits: int = 12) -> np.ndarray:
    """``x`` rounded to ``digits`` significant digits (eta of points that differ by float rounding only)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        e = np.where(x > 0, np.floor(np.log10(np.where(x > 0, x, 1.0))), 0.0) - (digits - 1)
        q = 10.0 ** e
        return np.where(x > 0, np.round(x / q) * q, x)


def _samples(spec: GemmSpec, tr, V: "_Cols", ii: np.ndarray, rr: np.ndarray):
    """Sample rows (of V, plus synthetic neighbours) and their rho for unresolved points ``ii`` (rho
    ``rr``, sorted): all of them if few, each with neighbours at about rho * RHO_GAP**(+-1/2) (its
    bandwidths scaled; their rho recomputed by the same rule), else the first and last point of every
    sqrt(RHO_GAP)-wide bin of rho and nine quantiles."""
    if len(ii) <= INFER_FILL:
        base = V.rows(ii)
        if spec.compute_hidden:
            return base, rr
        f = np.sqrt(RHO_GAP)
        lo_, hi_ = base.copy(), base.copy()
        lo_[:, 5:7] *= f  # more bytes/cycle: less memory time
        hi_[:, 5:7] /= f
        syn = np.concatenate([lo_, hi_])
        return np.concatenate([base, syn]), np.concatenate([rr, _rho(spec, tr, syn[:, 5], syn[:, 6], syn[:, 3])])
    b = np.floor(np.log(rr / rr[0]) / np.log(np.sqrt(RHO_GAP))).astype(np.int64)
    pick = np.r_[True, b[1:] != b[:-1]] | np.r_[b[1:] != b[:-1], True]
    pick[np.linspace(0, len(rr) - 1, 9).astype(np.int64)] = True
    return V.rows(ii[pick]), rr[pick]


def _finish(spec: GemmSpec, tabs: dict, tm, tk, tn, order, fits) -> PlanArrays:
    nm, nk, nn = tabs["m"].n[tm], tabs["k"].n[tk], tabs["n"].n[tn]
    w, x = _traffic_bytes(spec, *_reads(order, nm, nk, nn))
    padded = tabs["m"].P[tm] * tabs["k"].P[tk] * tabs["n"].P[tn]
    return PlanArrays(mode=spec.mode, tm=tm, tk=tk, tn=tn, nm=nm, nk=nk, nn=nn, order=order.astype(np.int8),
                      w_bytes=np.asarray(w, dtype=float), x_bytes=np.broadcast_to(np.asarray(x, dtype=float),
                                                                                  w.shape).copy(),
                      padded_macs=padded, steps=(nm * nk * nn).astype(float), fits=fits)


# ----------------------------------------------------------------------------- one point (GemmProblem)
@lru_cache(maxsize=16384)
def plan_gemm(prob: GemmProblem) -> TilePlan:
    """Best tiling of ``prob`` (see module docstring); cached."""
    return plan_points(prob.spec(), **prob.point()).tile_plan(0)


def evaluate(prob: GemmProblem, tm, tk, tn, order: str):
    """Vectorised cost of tilings: (cycles, bytes, steps, fits). Arrays broadcast together."""
    spec = prob.spec()
    nm, nk, nn = _count(prob.M, tm), _count(prob.K, tk), _count(prob.N, tn)
    fits = _fits(spec, tm, tk, tn, prob.w_buf, prob.a_buf, prob.o_buf)
    w, x = _traffic_bytes(spec, *_reads(ORDERS.index(order), nm, nk, nn))
    padded = _pad(prob.M, tm, prob.pm) * _pad(prob.K, tk, prob.pk) * _pad(prob.N, tn, prob.pn)
    steps = np.asarray(nm * nk * nn, dtype=float)
    cyc = _cycles(spec, w, x, padded, steps, prob.macs_per_cycle, prob.extra_cycles,
                  prob.w_bpc, prob.a_bpc)
    return cyc, _total_bytes(spec, w, x), steps, fits


def tiling_fits(prob: GemmProblem, plan: TilePlan) -> bool:
    return bool(_fits(prob.spec(), plan.tm, plan.tk, plan.tn, prob.w_buf, prob.a_buf, prob.o_buf))


def plan_cost(prob: GemmProblem, plan: TilePlan) -> tuple[float, float, float, float]:
    """(cycles, total bytes, MPE cycles, steps) of a chosen plan."""
    cyc, byt, steps, _ = evaluate(prob, np.array(plan.tm), np.array(plan.tk), np.array(plan.tn), plan.order)
    padded = _pad(prob.M, np.array(plan.tm), prob.pm) * _pad(prob.K, np.array(plan.tk), prob.pk) * _pad(
        prob.N, np.array(plan.tn), prob.pn)
    mpe = float(padded / prob.macs_per_cycle + prob.extra_cycles)
    return float(cyc), float(byt), mpe, float(steps)


def traffic(prob: GemmProblem, plan: TilePlan) -> tuple[float, float]:
    """(weight bytes, x bytes) per call of the chosen plan (excludes output and extras)."""
    w, x = _traffic_bytes(prob.spec(), *_reads(ORDERS.index(plan.order), plan.nm, plan.nk, plan.nn))
    return float(w), float(x)
