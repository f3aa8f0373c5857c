"""Run a sweep into a directory of Parquet parts, resumably, on one of three executors.

Layout of ``OUT``::

    OUT/manifest.json          space fingerprint, point count, chunk size (written first)
    OUT/parts/part-000012.parquet   points [12*chunk, 13*chunk): written to a temporary name and
                               renamed, so a part exists only complete
    OUT/sweep.parquet          every row, sorted by point_id (written last, also atomically)

A chunk is the unit of work and of durability: a SIGKILL loses at most the chunks in flight;
``resume=True`` skips the parts that exist (after checking the fingerprint: a changed space is
an error, never a silent mix) and recomputes the rest, so the final file has each point once.

Executors: ``inprocess`` (default; the vectorised fast path over whole chunks), ``processes``
(``concurrent.futures.ProcessPoolExecutor`` with N workers) and ``dask`` (a
``dask.distributed.Client`` connected to ``scheduler``). Workers receive the space as a plain
dict, rebuild it once per process and return DataFrames; only this process writes files, so
workers need no shared filesystem.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Optional

import pandas as pd

from qesim.dse.evaluate import evaluator_for
from qesim.dse.space import Space, space_from_spec
from qesim.errors import InputError

MANIFEST = "manifest.json"
RESULT = "sweep.parquet"
_THROTTLE_ENV = "QESIM_SWEEP_THROTTLE_S"  # test aid: sleep after each written part (kill tests)


def default_chunk(n: int) -> int:
    """Big enough to vectorise well, small enough that a kill loses little."""
    return max(1000, min(10000, -(-n // 8)))


def _part_path(out: Path, i: int) -> Path:
    return out / "parts" / f"part-{i:06d}.parquet"


_SPACES: dict = {}


def _space_on_worker(spec: dict) -> Space:
    key = json.dumps(spec, sort_keys=True, default=str)
    sp = _SPACES.get(key)
    if sp is None:
        if len(_SPACES) > 4:
            _SPACES.clear()
        sp = _SPACES[key] = space_from_spec(spec)
    return sp


_POINTS: dict = {}


def _points(space: Space) -> pd.DataFrame:
    fp = space.fingerprint()
    pts = _POINTS.get(fp)
    if pts is None:
        if len(_POINTS) > 4:
            _POINTS.clear()
        pts = _POINTS[fp] = space.points()
    return pts


def eval_chunk(space: Space, lo: int, hi: int, exact: bool = False) -> pd.DataFrame:
    """Rows [lo, hi) of the space, evaluated."""
    return evaluator_for(space).evaluate(_points(space).iloc[lo:hi], exact=exact)


def eval_chunk_spec(spec: dict, lo: int, hi: int, exact: bool = False) -> pd.DataFrame:
    """Worker entry point (process pool / Dask): the space travels as a dict."""
    return eval_chunk(_space_on_worker(spec), lo, hi, exact)


def _write_part(out: Path, i: int, df: pd.DataFrame) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    final = _part_path(out, i)
    tmp = final.with_name(final.name + f".tmp-{os.getpid()}")
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), tmp)
    os.replace(tmp, final)
    delay = float(os.environ.get(_THROTTLE_ENV, "0") or 0)
    if delay > 0:
        time.sleep(delay)


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
        chunk = int(old["chunk_size"])
    else:
        if out.exists() and any(out.iterdir()) and not resume:
            raise InputError(f"--out {out} exists and is not empty (and holds no sweep); choose another --out")
        try:
            (out / "parts").mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise InputError(f"--out {out}: cannot create directory ({e.strerror})") from None
        tmp = man_path.with_name(MANIFEST + ".tmp")
        tmp.write_text(json.dumps(manifest, indent=1))
        os.replace(tmp, man_path)
    (out / "parts").mkdir(parents=True, exist_ok=True)
    for stale in (out / "parts").glob("*.tmp-*"):  # a write that a kill interrupted
        stale.unlink()
    pending = [i for i in range(manifest["n_chunks"]) if not _part_path(out, i).exists()]
    return manifest, pending


def run_sweep(space: Space, out: str | Path, *, workers: int = 0, scheduler: Optional[str] = None,
              resume: bool = False, quiet: bool = False, chunk_size: Optional[int] = None,
              exact: bool = False, client=None, connect_timeout_s: float = 10.0) -> pd.DataFrame:
    """Evaluate every point of ``space`` into ``out`` (see the module docstring); return the rows.

    ``workers`` > 0: a local process pool; ``scheduler`` ('tcp://host:port') or ``client`` (a
    ``dask.distributed.Client``): Dask. ``exact``: use ``estimate_graph`` per point (slow; the
    reference the fast path is tested against).
    """
    out = Path(out)
    n = len(space)
    chunk = chunk_size or space.chunk_size or default_chunk(n)
    own_client = None
    if scheduler and client is None:  # connect before touching --out
        from dask.distributed import Client

        try:
            client = own_client = Client(scheduler, timeout=f"{connect_timeout_s}s")
        except (OSError, TimeoutError) as e:
            raise InputError(f"--scheduler {scheduler}: cannot connect to a Dask scheduler ({e})") from None
    try:
        return _run(space, out, n, chunk, workers, client, resume, quiet, exact)
    finally:
        if own_client is not None:
            own_client.close()


def _run(space, out, n, chunk, workers, client, resume, quiet, exact) -> pd.DataFrame:
    manifest, pending = _prepare(space, out, resume, chunk)
    chunk = int(manifest["chunk_size"])
    bounds = {i: (i * chunk, min(n, (i + 1) * chunk)) for i in pending}
    from tqdm import tqdm

    done_pts = n - sum(hi - lo for lo, hi in bounds.values())
    bar = tqdm(total=n, initial=done_pts, unit="pt", desc=f"sweep {space.name}", disable=quiet, smoothing=0.1)
    try:
        if client is not None:
            _run_dask(space, out, bounds, bar, exact, client)
        elif workers and workers > 0:
            _run_pool(space, out, bounds, bar, exact, workers)
        else:
            for i, (lo, hi) in bounds.items():
                _write_part(out, i, eval_chunk(space, lo, hi, exact))
                bar.update(hi - lo)
    finally:
        bar.close()
    return finalize(out)


def _run_pool(space, out, bounds, bar, exact, workers):
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    spec = space.to_dict()
    ctx = None
    if "fork" in mp.get_all_start_methods():
        # forked workers inherit the space, its points and the compiled groups: compile (and
        # check) every group once here instead of once per worker
        ctx = mp.get_context("fork")
        _SPACES[json.dumps(spec, sort_keys=True, default=str)] = space
        if not exact:
            from qesim.dse.space import WORKLOAD_FIELDS

            ev = evaluator_for(space)
            pts = _points(space)
            ev.evaluate(pts.groupby(list(WORKLOAD_FIELDS) + ev.struct_paths, sort=False).head(1))
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as ex:
        todo = list(bounds.items())
        running = {}
        while todo or running:
            while todo and len(running) < 2 * workers:  # bounded queue: memory stays flat
                i, (lo, hi) = todo.pop(0)
                running[ex.submit(eval_chunk_spec, spec, lo, hi, exact)] = (i, lo, hi)
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for f in done:
                i, lo, hi = running.pop(f)
                _write_part(out, i, f.result())
                bar.update(hi - lo)


def _run_dask(space, out, bounds, bar, exact, client):
    from dask.distributed import as_completed

    spec = space.to_dict()
    futs = {}
    for i, (lo, hi) in bounds.items():
        futs[client.submit(eval_chunk_spec, spec, lo, hi, exact, pure=False)] = (i, lo, hi)
    for f in as_completed(futs):
        i, lo, hi = futs[f]
        _write_part(out, i, f.result())
        bar.update(hi - lo)


def finalize(out: Path) -> pd.DataFrame:
    """Check that every part is there and write ``sweep.parquet`` (sorted by point_id)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    manifest = json.loads((out / MANIFEST).read_text())
    missing = [i for i in range(manifest["n_chunks"]) if not _part_path(out, i).exists()]
    if missing:
        raise InputError(f"{out}: {len(missing)} part(s) missing (first {missing[0]}); run again with --resume")
    tables = [pq.read_table(_part_path(out, i)) for i in range(manifest["n_chunks"])]
    df = pa.concat_tables(tables, promote_options="default").to_pandas()
    df = df.sort_values("point_id", kind="stable").reset_index(drop=True)
    if len(df) != manifest["n_points"] or df["point_id"].duplicated().any():
        raise RuntimeError(f"{out}: parts hold {len(df)} rows for {manifest['n_points']} points")
    tmp = out / (RESULT + ".tmp")
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), tmp)
    os.replace(tmp, out / RESULT)
    return df


def read_sweep(out: str | Path) -> pd.DataFrame:
    p = Path(out)
    if p.is_dir():
        p = p / RESULT
    if not p.exists():
        raise InputError(f"{p}: no sweep result (run `qesim sweep SPACE.yaml --out DIR` first)")
    return pd.read_parquet(p)
