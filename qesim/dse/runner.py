"""Run a sweep into one Parquet file, streamed as chunks finish, resumably, on one of three executors.

Layout of ``OUT``::

    OUT/manifest.json               space fingerprint, point count, chunk size (written first);
                                    at the end also ``complete`` and ``row_groups`` (chunk i is
                                    row group i of sweep.parquet)
    OUT/parts/part-000012.parquet   points [12*chunk, 13*chunk): the durable copy of a finished
                                    chunk, written to a temporary name and renamed, so a part
                                    exists only complete
    OUT/sweep.parquet.tmp-PID       sweep.parquet while it is being streamed
    OUT/sweep.parquet               every row in point_id order, one row group per chunk

A chunk is the unit of work and of durability. When chunk i is evaluated its rows (numpy arrays
-> an Arrow table, no DataFrame) are written once as its part and, as soon as chunks 0..i-1 have
been, appended as the next row group of the streamed ``sweep.parquet`` (chunks that finish out of
order wait in memory; the process pool keeps at most 2 x workers chunks in flight). Nothing is
read back, sorted or rewritten. A SIGKILL loses at most the chunks in flight and the unfinished
stream (it has no Parquet footer yet); ``resume=True`` checks the fingerprint (a changed space is
an error, never a silent mix), recomputes only the chunks without a part, and streams the new
``sweep.parquet`` from the kept parts (read in order) and the new chunks, so the result holds
each point once.

The Pareto fronts (per workload) are kept incrementally as row groups are streamed (a dominated
row stays dominated, so the front of the front-so-far plus the new rows is the front of all), so
the CLI never holds more than one chunk plus the fronts in memory.

Executors: ``inprocess`` (default; the vectorised fast path over whole chunks), ``processes``
(``concurrent.futures.ProcessPoolExecutor``, forked where the platform allows, so workers inherit
the space, its hardware columns and every compiled group, which the parent builds once when it
checks one point per group; workers return numpy arrays of the output columns only) and
``dask`` (a ``dask.distributed.Client`` connected to ``scheduler``; workers get the space as a
dict and rebuild it once per process). Only this process writes files, so workers need no shared
filesystem.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Optional

import numpy as np

from qesim.dse.evaluate import OUTPUT_COLUMNS, _dtype, evaluator_for
from qesim.dse.space import WORKLOAD_FIELDS, Space, space_from_spec
from qesim.errors import InputError

MANIFEST = "manifest.json"
RESULT = "sweep.parquet"
_THROTTLE_ENV = "QESIM_SWEEP_THROTTLE_S"  # test aid: sleep after each written part (kill tests)

#: objectives of the fronts the CLI writes to pareto.csv (per workload)
PARETO_OBJECTIVES = {"latency_s": "min", "sram_bytes": "min", "mpe_macs_per_cycle": "min"}

CHUNK_MAX = 65536  # points per chunk at most: a kill loses at most this many per worker
CHUNK_MIN = 2048  # below this the per-call overhead of the vectorised kernel shows
CHUNKS_PER_WORKER = 4  # load balance: no worker idles while another finishes a big chunk

_STR_WORKLOAD = ("model", "setting", "method", "stage", "image_size", "quantize", "parallel")
_WRITE_OPTS = dict(compression="snappy", write_statistics=["point_id"])


def default_chunk(n: int, workers: int = 0) -> int:
    """Points per chunk for ``n`` points on ``workers`` processes (0 = in-process).

    About ``CHUNKS_PER_WORKER`` chunks per worker, at least ``CHUNK_MIN`` points (fewer when
    that would leave a worker without a chunk), at most ``CHUNK_MAX``; then evened out so the
    chunks are of equal size.
    """
    w = max(1, workers)
    per = -(-n // (CHUNKS_PER_WORKER * w))
    chunk = min(CHUNK_MAX, max(per, min(CHUNK_MIN, -(-n // w))))
    chunk = max(1, chunk)
    n_chunks = -(-n // chunk)
    return max(1, -(-n // n_chunks))


def _part_path(out: Path, i: int) -> Path:
    return out / "parts" / f"part-{i:06d}.parquet"


# ----------------------------------------------------------------------------- per-process state
_SPACES: dict = {}


def _space_on_worker(spec: dict) -> Space:
    key = json.dumps(spec, sort_keys=True, default=str)
    sp = _SPACES.get(key)
    if sp is None:
        if len(_SPACES) > 4:
            _SPACES.clear()
        sp = _SPACES[key] = space_from_spec(spec)
    return sp


_HW: dict = {}


def hw_columns(space: Space) -> dict:
    """The space's hardware columns (one array per axis, ``n_hw`` long), cached per process."""
    fp = space.fingerprint()
    cols = _HW.get(fp)
    if cols is None:
        if len(_HW) > 4:
            _HW.clear()
        cols = _HW[fp] = space.hw_columns()
    return cols


def _blocks(space: Space, lo: int, hi: int):
    """(workload index, first point, end) of the workload blocks in points [lo, hi)."""
    n_hw = space.n_hw_points()
    a = lo
    while a < hi:
        wi = a // n_hw
        b = min(hi, (wi + 1) * n_hw)
        yield wi, a, b
        a = b


def _inputs(space: Space, a: int, b: int) -> dict:
    """``point_id`` and the hardware axes of points [a, b) (one workload block)."""
    n_hw = space.n_hw_points()
    h0 = a % n_hw
    cols = {"point_id": np.arange(a, b, dtype=np.int64)}
    for p, v in hw_columns(space).items():
        cols[p] = v[h0:h0 + (b - a)]
    return cols


def _encode(values: np.ndarray) -> tuple:
    """An object array of str as (int32 codes, labels in order of first appearance).

    One vectorised comparison per distinct value (they are few: ``bound`` has four, ``hw`` one);
    sorting Python strings (``np.unique``) cost ~0.1 s per 57k-row chunk."""
    codes = np.full(len(values), -1, dtype=np.int32)
    labels: list = []
    todo = np.flatnonzero(codes < 0)
    while len(todo):
        if len(labels) >= 64:  # many distinct values: sort once instead
            u, inv = np.unique(values[todo].astype(str), return_inverse=True)
            codes[todo] = len(labels) + inv.reshape(-1)
            labels += [str(x) for x in u]
            break
        lab = values[todo[0]]
        codes[todo[values[todo] == lab]] = len(labels)
        labels.append(str(lab))
        todo = todo[codes[todo] < 0]
    return codes, labels


def eval_chunk_arrays(space: Space, lo: int, hi: int, exact: bool = False, seeds=()) -> dict:
    """Output columns of points [lo, hi): float64 arrays, and (codes, labels) for ``hw`` and ``bound``.

    ``seeds``: (baseline workload index, first point, cycles, latency_s) of fp16-baseline rows that
    were costed elsewhere (the pool's parent passes them on; see :meth:`Evaluator.seed_baseline`)."""
    ev = evaluator_for(space)
    for bwi, a, cyc, lat in seeds:
        ev.seed_baseline(space.workloads[bwi], _inputs(space, a, a + len(cyc)), cyc, lat)
    parts = []
    for wi, a, b in _blocks(space, lo, hi):
        w = space.workloads[wi]
        cols = _inputs(space, a, b)
        if exact:
            rows = [ev.exact_row(dict(w, **{c: v[i] for c, v in cols.items()})) for i in range(b - a)]
            res = {c: np.array([r[c] for r in rows], dtype=_dtype(c)) for c in OUTPUT_COLUMNS}
        else:
            res = ev.evaluate_block(w, cols)
        parts.append(res)
    out = {}
    for c in OUTPUT_COLUMNS:
        v = parts[0][c] if len(parts) == 1 else np.concatenate([p[c] for p in parts])
        out[c] = _encode(v) if v.dtype == object else np.asarray(v, dtype=_dtype(c))
    return out


def eval_chunk_spec(spec: dict, lo: int, hi: int, exact: bool = False, seeds=()) -> dict:
    """Worker entry point (process pool / Dask): the space travels as a dict."""
    return eval_chunk_arrays(_space_on_worker(spec), lo, hi, exact, seeds)


def eval_chunk_part(spec: dict, lo: int, hi: int, exact: bool, seeds, out: str, i: int, objectives):
    """Process-pool worker: chunk ``i`` evaluated, its part written (the durable copy, atomically),
    and its rows on the per-workload Pareto fronts of the chunk marked, so the parent only streams
    the rows (read back from the part: cheaper than pickling the table through the pipe, measured
    1M rows 5.7 -> 3.9 s with one worker, 3.8 -> 3.1 s with two) and merges small fronts.
    Returns (cycles and latency for the baselines, the chunk-front mask or None)."""
    space = _space_on_worker(spec)
    res = eval_chunk_arrays(space, lo, hi, exact, seeds)
    table = chunk_table(space, lo, hi, res)
    _write_part(Path(out), i, table)
    front = _chunk_front_mask(space, table, objectives) if objectives else None
    return {"cycles": res["cycles"], "latency_s": res["latency_s"]}, front


def _write_part(out: Path, i: int, table) -> None:
    """Chunk ``i``'s part file, written to a temporary name and renamed (never a torn part)."""
    import pyarrow.parquet as pq

    final = _part_path(out, i)
    tmp = final.with_name(final.name + f".tmp-{os.getpid()}")
    pq.write_table(table, tmp, **_WRITE_OPTS, use_dictionary=_dict_cols(table))
    os.replace(tmp, final)


def _dict_cols(table) -> list:
    import pyarrow as pa

    return [f.name for f in table.schema if pa.types.is_string(f.type)]


def _objective_values(block, objectives) -> np.ndarray:
    return np.column_stack([_np(block.column(c)) * (1.0 if d == "min" else -1.0) for c, d in objectives.items()])


def _chunk_front_mask(space: Space, table, objectives) -> np.ndarray:
    """Rows of ``table`` (one chunk) on the front of their workload block within the chunk, among
    the rows that fit (a row on a workload's global front is on its chunk's front)."""
    from qesim.dse.pareto import pareto_mask

    mask = np.zeros(table.num_rows, dtype=bool)
    lo = int(table.column("point_id")[0].as_py())
    fits = _np_bool(table.column("fits")) if "fits" in table.column_names else np.ones(table.num_rows, bool)
    for _, a, b in _blocks(space, lo, lo + table.num_rows):
        rows = np.flatnonzero(fits[a - lo:b - lo]) + (a - lo)
        if len(rows):
            vals = _objective_values(table.take(_arr(rows.astype(np.int64))), objectives)
            mask[rows[pareto_mask(vals)]] = True
    return mask


def _baseline_index(space: Space) -> list:
    """For each workload, the index of its fp16 baseline among the space's workloads (None when
    the baseline is not swept itself, or is the workload)."""
    from qesim.dse.evaluate import _baseline

    pos = {tuple(w[k] for k in WORKLOAD_FIELDS): i for i, w in enumerate(space.workloads)}
    out = []
    for i, w in enumerate(space.workloads):
        j = pos.get(tuple(_baseline(w)[k] for k in WORKLOAD_FIELDS))
        out.append(None if j == i else j)
    return out


class _Baselines:
    """The parent's copy of the fp16-baseline rows (cycles, latency) that workers have returned,
    so that a worker costing a quantized chunk does not recompute a chunk another worker did."""

    def __init__(self, space: Space):
        self.space, self.n_hw = space, space.n_hw_points()
        self.index = _baseline_index(space)
        self.arrays = {j: (np.full(self.n_hw, np.nan), np.full(self.n_hw, np.nan))
                       for j in set(self.index) if j is not None}

    def record(self, lo: int, hi: int, res: dict) -> None:
        for wi, a, b in _blocks(self.space, lo, hi):
            if wi in self.arrays:
                h0 = a % self.n_hw
                self.arrays[wi][0][h0:h0 + b - a] = res["cycles"][a - lo:b - lo]
                self.arrays[wi][1][h0:h0 + b - a] = res["latency_s"][a - lo:b - lo]

    def needs(self, lo: int, hi: int) -> list:
        """(baseline workload, point range) pairs chunk [lo, hi) needs."""
        out = []
        for wi, a, b in _blocks(self.space, lo, hi):
            j = self.index[wi]
            if j is not None:
                h0 = a % self.n_hw
                out.append((j, j * self.n_hw + h0, j * self.n_hw + h0 + b - a))
        return out

    def seeds(self, lo: int, hi: int) -> list:
        out = []
        for j, a, b in self.needs(lo, hi):
            h0 = a % self.n_hw
            cyc = self.arrays[j][0][h0:h0 + b - a]
            if not np.isnan(cyc).any():
                out.append((j, a, cyc.copy(), self.arrays[j][1][h0:h0 + b - a].copy()))
        return out


def eval_chunk(space: Space, lo: int, hi: int, exact: bool = False):
    """Rows [lo, hi) of the space, evaluated, as a DataFrame (library / test helper)."""
    return chunk_table(space, lo, hi, eval_chunk_arrays(space, lo, hi, exact)).to_pandas()


# ----------------------------------------------------------------------------- tables
_PA_TYPES = {"f8": "float64", "i8": "int64", "i4": "int32", "u1": "uint8"}


def _arr(x: np.ndarray):
    """A numpy array as an Arrow array, zero-copy for numbers.

    Built from buffers because ``pa.array`` imports pandas (its array-like check), which would
    cost the sweep command ~0.4 s of imports it does not otherwise need."""
    import pyarrow as pa

    x = np.asarray(x)
    if x.dtype == bool:
        bits = np.packbits(x, bitorder="little")
        return pa.Array.from_buffers(pa.bool_(), len(x), [None, pa.py_buffer(bits)])
    if x.dtype.kind in "OU":
        return _str_array(*_encode(x.astype(object)))
    key = f"{x.dtype.kind}{x.dtype.itemsize}"
    if key not in _PA_TYPES:
        x, key = x.astype(np.float64 if x.dtype.kind == "f" else np.int64), ("f8" if x.dtype.kind == "f" else "i8")
    x = np.ascontiguousarray(x)
    return pa.Array.from_buffers(getattr(pa, _PA_TYPES[key])(), len(x), [None, pa.py_buffer(x)])


def _np(col) -> np.ndarray:
    """A numeric Arrow column without nulls as a numpy array (from its buffers: ``to_numpy``
    imports pandas)."""
    chunks = col.chunks if hasattr(col, "chunks") else [col]
    parts = []
    for ch in chunks:
        dt = np.dtype({"double": np.float64, "int64": np.int64, "int32": np.int32}[str(ch.type)])
        parts.append(np.frombuffer(ch.buffers()[1], dtype=dt)[ch.offset:ch.offset + len(ch)])
    if not parts:
        return np.zeros(0)
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _np_bool(col) -> np.ndarray:
    """A boolean Arrow column without nulls as a numpy bool array (its bit buffer unpacked)."""
    chunks = col.chunks if hasattr(col, "chunks") else [col]
    parts = [np.unpackbits(np.frombuffer(ch.buffers()[1], dtype=np.uint8), bitorder="little")
             [ch.offset:ch.offset + len(ch)].astype(bool) for ch in chunks]
    if not parts:
        return np.zeros(0, dtype=bool)
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _str_array(codes: np.ndarray, labels: list):
    """Strings from (int32 codes, labels), without ``pa.array``."""
    import pyarrow as pa

    data = [str(x).encode() for x in labels]
    offsets = np.zeros(len(data) + 1, dtype=np.int32)
    offsets[1:] = np.cumsum([len(b) for b in data])
    dictionary = pa.Array.from_buffers(pa.string(), len(data), [None, pa.py_buffer(offsets),
                                                                  pa.py_buffer(b"".join(data))])
    return pa.DictionaryArray.from_arrays(_arr(np.asarray(codes, dtype=np.int32)), dictionary).cast(pa.string())


def _workload_columns(space: Space) -> dict:
    """Workload field -> its value in each workload (in sweep order)."""
    return {k: [w[k] for w in space.workloads] for k in WORKLOAD_FIELDS}


def chunk_table(space: Space, lo: int, hi: int, res: Mapping):
    """The Arrow table of points [lo, hi): point_id, workload fields, hardware axes, outputs."""
    import pyarrow as pa

    n_hw = space.n_hw_points()
    pid = np.arange(lo, hi, dtype=np.int64)
    wl = (pid // n_hw).astype(np.int32)
    names, arrays = ["point_id"], [_arr(pid)]
    for k, vals in _workload_columns(space).items():
        names.append(k)
        if k in _STR_WORKLOAD or (k == "density" and any(isinstance(v, str) for v in vals)):
            # a per-linear density ("q_proj=0.7,k_proj=0.7") makes the column strings (numbers as %g)
            arrays.append(_str_array(wl, [v if isinstance(v, str) else f"{v:g}" for v in vals]))
        else:
            arrays.append(_arr(np.asarray(vals, dtype=float if k == "density" else np.int64)[wl]))
    hw = hw_columns(space)
    for p, v in hw.items():
        names.append(p)
        if (hi - lo) and lo // n_hw == (hi - 1) // n_hw:
            col = v[lo % n_hw:lo % n_hw + (hi - lo)]
        else:
            col = v[pid % n_hw]
        arrays.append(_arr(col))
    for c in OUTPUT_COLUMNS:
        names.append(c)
        r = res[c]
        arrays.append(_str_array(*r) if isinstance(r, tuple) else _arr(r))
    return pa.Table.from_arrays(arrays, names=names)


def _write_csv(table, path: Path) -> None:
    """``table`` as CSV, formatted as pandas' ``to_csv(index=False)`` would (without pandas)."""
    import csv
    import math

    cols = [table.column(i).to_pylist() for i in range(table.num_columns)]
    for col in cols:
        for i, v in enumerate(col):
            if v is None or (isinstance(v, float) and math.isnan(v)):
                col[i] = ""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(table.column_names)
        w.writerows(zip(*cols))
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- check
_CHECK_MAX = 4096  # at most this many hardware points per workload in the check


def _check_points(space: Space, ev, hw: dict) -> np.ndarray:
    """Hardware-point indices of the check: the first point of every combination of the values
    of structural axes and of list-valued buffer-size axes (e.g. the 4 x 4 weight / activation
    buffer sizes: they choose the tilings, which the cost model memoises per size); if there are
    more than ``_CHECK_MAX`` combinations, of every structural combination only."""
    n_hw = space.n_hw_points()
    listed = [a.path for a in space.axes if a.values is not None
              and (a.path.startswith("buffers.") or a.path == "scale.buffers")]
    paths = list(dict.fromkeys(ev.struct_paths + listed))
    if not paths:
        return np.zeros(1, dtype=np.int64)
    key = np.zeros(n_hw, dtype=np.int64)
    n_combos = 1
    for p in paths:
        u, inv = np.unique(np.asarray(hw[p]), return_inverse=True)
        key, n_combos = key * len(u) + inv.reshape(-1), n_combos * len(u)
        if n_combos > 1 << 40:
            break
    _, first = np.unique(key, return_index=True)
    if len(first) <= _CHECK_MAX:
        return np.sort(first).astype(np.int64)
    return np.array([int(sel[0]) for _, sel in ev._struct_groups(dict(hw, point_id=np.arange(n_hw)), n_hw)],
                    dtype=np.int64)


def check_space(space: Space, exact: bool = False) -> int:
    """Evaluate a few points of every workload exactly as the sweep does: one per combination of
    the structural and listed buffer-size values the space holds (see :func:`_check_points`).

    What ``qesim validate`` runs and what the sweep runs before it writes anything: every workload
    graph is built and costed on every such combination, which also fills the per-process caches
    (lowering, tilings per buffer size) that forked pool workers then inherit instead of each
    building them again. Returns the number of points costed; an :class:`InputError` naming the
    workload otherwise.
    """
    ev = evaluator_for(space)
    n_hw = space.n_hw_points()
    hw = hw_columns(space)
    pick = _check_points(space, ev, hw)
    for wi, w in enumerate(space.workloads):
        cols = {"point_id": wi * n_hw + pick, **{p: v[pick] for p, v in hw.items()}}
        try:
            if exact:  # a cold estimate per point: one is enough to know the workload costs
                ev.exact_row(dict(w, **{c: v[0] for c, v in cols.items()}))
            else:
                ev.evaluate_block(w, cols)
        except InputError:
            raise
        except Exception as e:  # what the sweep would crash with: one line naming the workload
            desc = ", ".join(f"{k}={w[k]}" for k in WORKLOAD_FIELDS)
            raise InputError(f"{space.source}: space.workload: the sweep cannot cost {desc} "
                             f"({type(e).__name__}: {e})") from None
    return len(pick) * len(space.workloads)


# ----------------------------------------------------------------------------- result
@dataclass
class SweepResult:
    out: Path
    n_points: int
    n_chunks: int
    chunk_size: int
    executor: str  # "in-process" | "N worker processes" | "dask"
    fronts: Optional[object] = None  # pa.Table: the Pareto rows per workload (point_id order)
    table: Optional[object] = None  # pa.Table: every row (only with keep=True)
    resumed_chunks: int = 0
    timings: dict = field(default_factory=dict)

    def to_pandas(self):
        return self.table.to_pandas()


class _Stream:
    """Writes parts as chunks finish and streams row groups into sweep.parquet in chunk order."""

    def __init__(self, out: Path, space: Space, n_chunks: int, bounds: dict, keep: bool,
                 objectives: Optional[Mapping[str, str]]):
        self.out, self.space, self.n_chunks, self.bounds = out, space, n_chunks, bounds
        self.keep, self.objectives = keep, objectives
        self.ready: dict = {}
        self.next = 0
        self.writer = None
        self.tmp = out / f"{RESULT}.tmp-{os.getpid()}"
        self.tables: list = []
        self.fronts: dict = {}  # workload index -> pa.Table
        self.delay = float(os.environ.get(_THROTTLE_ENV, "0") or 0)
        self.t_write = self.t_pareto = 0.0
        self._io = None
        self._pending: list = []

    def add(self, i: int, table, written: bool = False, front=None) -> None:
        """Chunk ``i`` was just evaluated: make it durable, then stream what is in order.
        ``written``: its part is already on disk (a pool worker wrote it); ``front``: the mask of
        its rows on its own chunk-level fronts (a pool worker computed it).

        The writes run on one background thread (pyarrow and moocore release the GIL), so the
        next chunk is evaluated meanwhile; at most two chunks wait for it."""
        if self._io is None:
            from concurrent.futures import ThreadPoolExecutor

            self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="qesim-sweep-io")
        while len(self._pending) >= 2:
            self._pending.pop(0).result()
        self._pending.append(self._io.submit(self._add, i, table, written, front))

    def drain(self) -> None:
        """Wait for the background writes (and raise what they raised)."""
        while self._pending:
            self._pending.pop(0).result()

    def shutdown(self) -> None:
        if self._io is not None:
            for f in self._pending:
                f.cancel()
            self._io.shutdown(wait=True)
            self._io = None

    def _add(self, i: int, table, written: bool = False, front=None) -> None:
        t = time.perf_counter()
        if not written:
            _write_part(self.out, i, table)
        self.t_write += time.perf_counter() - t
        if self.delay > 0:
            time.sleep(self.delay)
        self.ready[i] = (table, front)
        self.flush()

    def flush(self) -> None:
        import pyarrow.parquet as pq

        while self.next < self.n_chunks:
            i = self.next
            if i in self.ready:
                table, front = self.ready.pop(i)
            elif i not in self.bounds:  # finished before a kill: its part is on disk
                table, front = pq.read_table(_part_path(self.out, i)), None
            else:
                return
            t = time.perf_counter()
            if self.writer is None:
                self.writer = pq.ParquetWriter(self.tmp, table.schema, **_WRITE_OPTS,
                                               use_dictionary=_dict_cols(table))
            self.writer.write_table(table, row_group_size=max(1, table.num_rows))
            self.t_write += time.perf_counter() - t
            if self.keep:
                self.tables.append(table)
            if self.objectives:
                t = time.perf_counter()
                self._pareto(table, front)
                self.t_pareto += time.perf_counter() - t
            self.next += 1

    def _pareto(self, table, front=None) -> None:
        """Fold ``table`` into the per-workload fronts: the chunk's own front first (one sort-
        based pass over the chunk, or the mask a pool worker computed), then that merged with the
        front so far (both small)."""
        import pyarrow as pa

        from qesim.dse.pareto import pareto_mask

        if front is None:
            front = _chunk_front_mask(self.space, table, self.objectives)
        lo = int(table.column("point_id")[0].as_py())
        for wi, a, b in _blocks(self.space, lo, lo + table.num_rows):
            keep = np.flatnonzero(front[a - lo:b - lo]) + (a - lo)
            if not len(keep):
                continue
            tab = table.take(_arr(keep.astype(np.int64)))
            vals = _objective_values(tab, self.objectives)
            if wi in self.fronts:
                tab0, vals0 = self.fronts[wi]
                tab, vals = pa.concat_tables([tab0, tab]), np.concatenate([vals0, vals])
                m = pareto_mask(vals)
                tab, vals = tab.filter(_arr(m)), vals[m]
            self.fronts[wi] = (tab, vals)

    def close(self):
        import pyarrow as pa

        self.drain()
        if self.next != self.n_chunks:
            missing = [i for i in range(self.n_chunks) if i >= self.next]
            raise InputError(f"{self.out}: {len(missing)} chunk(s) missing (first {missing[0]}); "
                             "run again with --resume")
        t = time.perf_counter()
        self.writer.close()
        os.replace(self.tmp, self.out / RESULT)
        self.t_write += time.perf_counter() - t
        fronts = None
        if self.objectives:
            fronts = pa.concat_tables([self.fronts[k][0] for k in sorted(self.fronts)])
        table = pa.concat_tables(self.tables) if self.keep else None
        return fronts, table


# ----------------------------------------------------------------------------- running
def _prepare(space: Space, out: Path, resume: bool, chunk: int) -> tuple[dict, list[int]]:
    """Create or check OUT; return (manifest, pending chunk indices). Never deletes results."""
    n = len(space)
    man_path = out / MANIFEST
    manifest = dict(name=space.name, source=space.source, base=space.base.name, fingerprint=space.fingerprint(),
                    n_points=n, chunk_size=chunk, n_chunks=-(-n // chunk), hw_axes=space.hw_paths,
                    sampling=space.sampling, seed=space.seed)
    if man_path.exists():
        try:
            old = json.loads(man_path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise InputError(f"{man_path}: unreadable sweep manifest ({e}); choose another --out") from None
        if not resume:
            raise InputError(f"--out {out} already holds a sweep ({old.get('name')}, {old.get('n_points')} points); "
                             "pass --resume to continue it, or choose another --out")
        if old.get("fingerprint") != manifest["fingerprint"] or old.get("n_points") != n:
            raise InputError(f"--out {out} holds a sweep of a different space (fingerprint {old.get('fingerprint')} "
                             f"vs {manifest['fingerprint']}); choose another --out")
        manifest = old
    else:
        if out.exists() and any(out.iterdir()) and not resume:
            raise InputError(f"--out {out} exists and is not empty (and holds no sweep); choose another --out")
        try:
            (out / "parts").mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise InputError(f"--out {out}: cannot create directory ({e.strerror})") from None
        _write_manifest(out, manifest)
    (out / "parts").mkdir(parents=True, exist_ok=True)
    for stale in list((out / "parts").glob("*.tmp-*")) + list(out.glob(f"{RESULT}.tmp-*")):
        stale.unlink()  # writes that a kill interrupted
    pending = [i for i in range(manifest["n_chunks"]) if not _part_path(out, i).exists()]
    return manifest, pending


def _write_manifest(out: Path, manifest: dict) -> None:
    tmp = out / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=1))
    os.replace(tmp, out / MANIFEST)


def run_sweep(space: Space, out: str | Path, *, workers: int = 0, scheduler: Optional[str] = None,
              resume: bool = False, quiet: bool = False, chunk_size: Optional[int] = None,
              exact: bool = False, client=None, connect_timeout_s: float = 10.0):
    """Evaluate every point of ``space`` into ``out`` (see the module docstring); return the rows
    as a DataFrame. :func:`sweep` is the same without building the DataFrame."""
    return sweep(space, out, workers=workers, scheduler=scheduler, resume=resume, quiet=quiet,
                 chunk_size=chunk_size, exact=exact, client=client, connect_timeout_s=connect_timeout_s,
                 keep=True, objectives=None).to_pandas()


def sweep(space: Space, out: str | Path, *, workers: int = 0, scheduler: Optional[str] = None,
          resume: bool = False, quiet: bool = False, chunk_size: Optional[int] = None, exact: bool = False,
          client=None, connect_timeout_s: float = 10.0, keep: bool = False,
          objectives: Optional[Mapping[str, str]] = PARETO_OBJECTIVES, log=None) -> SweepResult:
    """Run the sweep; return a :class:`SweepResult` (its Pareto fronts per workload over
    ``objectives``, and every row as an Arrow table with ``keep=True``).

    ``workers`` > 0: a local process pool; ``scheduler`` ('tcp://host:port') or ``client`` (a
    ``dask.distributed.Client``): Dask. ``exact``: use ``estimate_graph`` per point (slow; the
    reference the fast path is tested against). ``log``: called with one line saying how the
    points were split.
    """
    out = Path(out)
    n = len(space)
    own_client = None
    if scheduler and client is None:  # connect before touching --out
        from dask.distributed import Client

        try:
            client = own_client = Client(scheduler, timeout=f"{connect_timeout_s}s")
        except (OSError, TimeoutError) as e:
            raise InputError(f"--scheduler {scheduler}: cannot connect to a Dask scheduler ({e})") from None
    try:
        if client is not None:
            n_exec = max(1, sum(client.nthreads().values()))
            executor = f"dask ({n_exec} worker threads)"
        elif workers and workers > 0:
            n_exec, executor = workers, f"{workers} worker process{'' if workers == 1 else 'es'}"
        else:
            n_exec, executor = 0, "1 process (in-process)"
        chunk = chunk_size or space.chunk_size or default_chunk(n, n_exec)
        t = time.perf_counter()
        check_space(space, exact)  # what `qesim validate` runs; compiles every group (forked workers inherit it)
        t_check = time.perf_counter() - t
        return _run(space, out, n, chunk, workers, client, resume, quiet, exact, keep, objectives, executor, log,
                    t_check)
    finally:
        if own_client is not None:
            own_client.close()


def _run(space, out, n, chunk, workers, client, resume, quiet, exact, keep, objectives, executor, log, t_check):
    manifest, pending = _prepare(space, out, resume, chunk)
    chunk = int(manifest["chunk_size"])
    n_chunks = int(manifest["n_chunks"])
    bounds = {i: (i * chunk, min(n, (i + 1) * chunk)) for i in pending}
    if log is not None:
        n_hw = space.n_hw_points()
        msg = (f"sweep {space.name}: {n} points ({len(space.workloads)} workloads x {n_hw} hardware points) "
               f"in {n_chunks} chunks of {chunk} on {executor}")
        if len(pending) < n_chunks:
            msg += f"; resuming: {n_chunks - len(pending)} chunks kept, {len(pending)} to run"
        log(msg)
    stream = _Stream(out, space, n_chunks, bounds, keep, objectives)
    done_pts = n - sum(hi - lo for lo, hi in bounds.values())
    bar = None
    if not quiet:
        from tqdm import tqdm

        bar = tqdm(total=n, initial=done_pts, unit="pt", desc=f"sweep {space.name}", smoothing=0.1)
    t = time.perf_counter()
    try:
        stream.flush()  # kept parts before the first pending chunk
        if client is not None:
            _run_dask(space, bounds, stream, bar, exact, client)
        elif workers and workers > 0:
            _run_pool(space, bounds, stream, bar, exact, workers)
        else:
            for i, (lo, hi) in bounds.items():
                stream.add(i, chunk_table(space, lo, hi, eval_chunk_arrays(space, lo, hi, exact)))
                if bar is not None:
                    bar.update(hi - lo)
        fronts, table = stream.close()
    finally:
        stream.shutdown()
        if bar is not None:
            bar.close()
        if stream.writer is not None and stream.tmp.exists():
            try:
                stream.writer.close()
            except Exception:  # noqa: BLE001 - already failing; the tmp file is removed on resume
                pass
    total = time.perf_counter() - t
    manifest.update(complete=True, row_groups="chunk i = row group i of " + RESULT)
    _write_manifest(out, manifest)
    return SweepResult(out, n, n_chunks, chunk, executor, fronts, table, n_chunks - len(pending),
                       dict(check_s=t_check, run_s=total, write_s=stream.t_write, pareto_s=stream.t_pareto))


def _run_pool(space, bounds, stream, bar, exact, workers):
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    import pyarrow.parquet as pq

    spec = space.to_dict()
    ctx = None
    if "fork" in mp.get_all_start_methods():
        # forked workers inherit the space, its hardware columns and the compiled groups
        # (check_space compiled every group before this)
        ctx = mp.get_context("fork")
        _SPACES[json.dumps(spec, sort_keys=True, default=str)] = space
        hw_columns(space)
    base = _Baselines(space)
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as ex:
        todo = list(bounds.items())
        running = {}

        def blocked(lo, hi) -> bool:
            # a chunk whose fp16 baseline rows are being costed right now waits for them (they
            # were submitted earlier, so they come first anyway), then gets them as seeds
            for _, a, b in base.needs(lo, hi):
                if any(rlo < b and a < rhi for _, rlo, rhi in running.values()):
                    return True
            return False

        while todo or running:
            while todo and len(running) < 2 * workers:  # bounded queue: memory stays flat
                i, (lo, hi) = todo[0]
                if running and blocked(lo, hi):
                    break
                todo.pop(0)
                running[ex.submit(eval_chunk_part, spec, lo, hi, exact, base.seeds(lo, hi), str(stream.out), i,
                                  stream.objectives)] = (i, lo, hi)
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for f in sorted(done, key=lambda f: running[f][0]):
                i, lo, hi = running.pop(f)
                res, front = f.result()
                table = pq.read_table(_part_path(stream.out, i))  # the part the worker wrote
                base.record(lo, hi, res)
                stream.add(i, table, written=True, front=front)
                if bar is not None:
                    bar.update(hi - lo)


def _run_dask(space, bounds, stream, bar, exact, client):
    from dask.distributed import as_completed

    spec = space.to_dict()
    futs = {}
    for i, (lo, hi) in bounds.items():
        futs[client.submit(eval_chunk_spec, spec, lo, hi, exact, pure=False)] = (i, lo, hi)
    for f in as_completed(futs):
        i, lo, hi = futs[f]
        stream.add(i, chunk_table(space, lo, hi, f.result()))
        if bar is not None:
            bar.update(hi - lo)


def finalize(out: Path):
    """Rebuild ``sweep.parquet`` from the parts (every part must be there); return the rows.

    Not needed after a run (the run streams the file); for a directory whose sweep.parquet was
    removed or whose run was killed after its last part."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = Path(out)
    manifest = json.loads((out / MANIFEST).read_text())
    missing = [i for i in range(manifest["n_chunks"]) if not _part_path(out, i).exists()]
    if missing:
        raise InputError(f"{out}: {len(missing)} part(s) missing (first {missing[0]}); run again with --resume")
    tmp = out / f"{RESULT}.tmp-{os.getpid()}"
    tables = []
    with pq.ParquetWriter(tmp, pq.read_schema(_part_path(out, 0)), **_WRITE_OPTS) as w:
        for i in range(manifest["n_chunks"]):
            t = pq.read_table(_part_path(out, i))
            w.write_table(t, row_group_size=max(1, t.num_rows))
            tables.append(t)
    os.replace(tmp, out / RESULT)
    return pa.concat_tables(tables).to_pandas()


def read_sweep(out: str | Path):
    import pandas as pd

    p = Path(out)
    if p.is_dir():
        p = p / RESULT
    if not p.exists():
        raise InputError(f"{p}: no sweep result (run `qesim sweep SPACE.yaml --out DIR` first)")
    df = pd.read_parquet(p)
    from qesim.dse.space import WORKLOAD_DEFAULTS, WORKLOAD_FIELDS

    for k in WORKLOAD_FIELDS:  # a sweep written before a workload field existed: the field's default
        if k not in df.columns:
            df[k] = WORKLOAD_DEFAULTS[k]
    return df
