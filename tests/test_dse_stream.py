"""The streamed sweep: chunking, one Parquet file in point order, incremental Pareto fronts,
the sort-based Pareto filter, and `qesim validate` running the sweep's own check."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("pyarrow")
pytest.importorskip("moocore")

import pyarrow.parquet as pq  # noqa: E402

from qesim.cli import main  # noqa: E402
from qesim.dse import runner  # noqa: E402
from qesim.dse.pareto import pareto_front, pareto_mask  # noqa: E402
from qesim.dse.space import WORKLOAD_FIELDS, space_from_dict  # noqa: E402

SPEC = {"space": {
    "name": "stream-test", "base": "flightllm-u280", "sampling": "random", "samples": 30, "seed": 2,
    "hw": {"hbm.bandwidth_gbps": {"min": 100, "max": 1500, "scale": "log"},
           "buffers.act_bytes": [262144, 4194304],
           "scale.macs": {"min": 0.5, "max": 2.0}},
    "workload": {"model": "qwen2vl-2b", "setting": ["W16A16", "W4A8"], "method": "qe"},
    "scenarios": [{"stage": "prefill", "seq_len": 32}, {"stage": "decode", "context_len": 64}],
}}


@pytest.fixture(scope="module")
def space():
    return space_from_dict(SPEC, "stream-test")


def _brute(v: np.ndarray) -> np.ndarray:
    return np.array([not any(np.all(v[j] <= v[i]) and np.any(v[j] < v[i]) for j in range(len(v)))
                     for i in range(len(v))])


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_pareto_mask_equals_brute_force_with_ties(k):
    rng = np.random.default_rng(k)
    v = rng.integers(0, 5, size=(400, k)).astype(float)  # many exact ties and duplicates
    assert (pareto_mask(v) == _brute(v)).all()
    c = rng.random((300, k))
    assert (pareto_mask(c) == _brute(c)).all()


def test_pareto_mask_nan_rows_are_kept_and_dominate_nothing():
    v = np.array([[1.0, 1.0], [np.nan, 0.0], [2.0, 2.0], [0.5, np.nan]])
    assert list(pareto_mask(v)) == [True, True, False, True]


def test_default_chunk_gives_every_worker_work():
    for n in (1, 3, 48, 1000, 10_000, 400_000, 1_000_000):
        for w in (0, 1, 2, 3, 8):
            c = runner.default_chunk(n, w)
            chunks = -(-n // c)
            assert 1 <= c <= runner.CHUNK_MAX
            assert chunks >= min(n, max(1, w)), (n, w, c)
            sizes = [min(n, (i + 1) * c) - i * c for i in range(chunks)]
            assert max(sizes) - min(sizes) <= max(1, c // 2) or chunks == 1
    assert runner.default_chunk(400_000, 0) <= runner.CHUNK_MAX
    assert -(-1_000_000 // runner.default_chunk(1_000_000, 2)) >= 2 * runner.CHUNKS_PER_WORKER


def test_stream_is_one_file_in_point_order_with_a_row_group_per_chunk(space, tmp_path):
    res = runner.sweep(space, tmp_path / "o", chunk_size=7, quiet=True, keep=True)
    f = pq.ParquetFile(tmp_path / "o" / runner.RESULT)
    assert f.metadata.num_row_groups == res.n_chunks == -(-len(space) // 7)
    got = pd.read_parquet(tmp_path / "o" / runner.RESULT)
    assert list(got.point_id) == list(range(len(space)))
    pd.testing.assert_frame_equal(got, res.to_pandas())
    # the same rows as the DataFrame path (Evaluator.evaluate over Space.points())
    from qesim.dse.evaluate import evaluate_space

    ref = evaluate_space(space)
    for c in ref.columns:
        if ref[c].dtype.kind == "f":
            np.testing.assert_allclose(got[c].to_numpy(float), ref[c].to_numpy(float), rtol=1e-12, atol=0,
                                       err_msg=c)  # chunking changes numpy's summation blocks (1 ulp)
        else:
            assert list(got[c]) == list(ref[c]), c
    man = json.loads((tmp_path / "o" / runner.MANIFEST).read_text())
    assert man["complete"] is True and man["chunk_size"] == 7
    assert not list((tmp_path / "o").glob("*.tmp-*")) and not list((tmp_path / "o" / "parts").glob("*.tmp-*"))
    # the incremental fronts equal the fronts of the whole table
    full = pareto_front(got, runner.PARETO_OBJECTIVES, by=list(WORKLOAD_FIELDS))
    pd.testing.assert_frame_equal(res.fronts.to_pandas(), full.reset_index(drop=True))


def test_out_of_order_chunks_are_buffered(space, tmp_path):
    """Chunks that finish out of order wait in memory; the file is still in point order."""
    out = tmp_path / "o"
    chunk = 11
    man, pending = runner._prepare(space, out, False, chunk)
    bounds = {i: (i * chunk, min(len(space), (i + 1) * chunk)) for i in pending}
    stream = runner._Stream(out, space, man["n_chunks"], bounds, keep=True, objectives=runner.PARETO_OBJECTIVES)
    order = list(bounds)[::-1]
    try:
        for i in order:
            lo, hi = bounds[i]
            stream.add(i, runner.chunk_table(space, lo, hi, runner.eval_chunk_arrays(space, lo, hi)))
            stream.drain()
            if i != 0:
                assert stream.next == 0 and not (out / runner.RESULT).exists()
        fronts, table = stream.close()
    finally:
        stream.shutdown()
    got = pd.read_parquet(out / runner.RESULT)
    assert list(got.point_id) == list(range(len(space)))
    ref = runner.sweep(space, tmp_path / "ref", chunk_size=chunk, quiet=True, keep=True)
    pd.testing.assert_frame_equal(got, ref.to_pandas())
    pd.testing.assert_frame_equal(fronts.to_pandas(), ref.fronts.to_pandas())


def test_cli_says_how_it_split_and_times_the_whole_command(space, tmp_path, capsys):
    p = tmp_path / "s.yaml"
    import yaml

    p.write_text(yaml.safe_dump(SPEC))
    assert main(["sweep", str(p), "--out", str(tmp_path / "o"), "--workers", "2"]) == 0
    err = capsys.readouterr().err
    n = len(space)
    c = runner.default_chunk(n, 2)
    assert f"{n} points" in err and f"in {-(-n // c)} chunks of {c} on 2 worker processes" in err
    assert "whole command" in err
    assert len(list((tmp_path / "o" / "parts").glob("*.parquet"))) == -(-n // c) >= 2


def _bad_space_file(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text(textwrap.dedent("""\
        space:
          base: flightllm-u280
          hw:
            hbm.bandwidth_gbps: [230, 460]
          workload:
            model: qwen2vl-2b
            setting: [W16A16, W4A8]
            method: qe
        """))
    return p


def test_validate_runs_the_sweeps_check(tmp_path, capsys, monkeypatch):
    """A space the sweep cannot cost fails `qesim validate` with one line, and `qesim sweep`
    fails the same way before writing anything (both run runner.check_space)."""
    from qesim.dse.evaluate import Evaluator

    p = _bad_space_file(tmp_path)
    assert main(["validate", str(p)]) == 0
    assert "2 points costed" in capsys.readouterr().out  # no structural or buffer axis: 1 point x 2 workloads
    real = Evaluator.evaluate_block

    def broken(self, w, cols):
        if w["setting"] == "W4A8":
            raise TypeError("no cost model for op kind 'frobnicate'")
        return real(self, w, cols)

    monkeypatch.setattr(Evaluator, "evaluate_block", broken)
    assert main(["validate", str(p)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "setting=W4A8" in err[0] and "frobnicate" in err[0] and str(p) in err[0]
    out = tmp_path / "o"
    assert main(["sweep", str(p), "--out", str(out), "--quiet"]) == 2
    err2 = capsys.readouterr().err.strip().splitlines()
    assert err2 == err and not out.exists()


_NO_IMPORT = r"""
import sys
banned = set(sys.argv[1].split(","))
class Ban:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in banned:
            raise ImportError(f"imported {name}")
sys.meta_path.insert(0, Ban())
from qesim.cli import main
sys.exit(main(sys.argv[2:]))
"""


def _run_banning(banned: str, *argv: str):
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    return subprocess.run([sys.executable, "-c", _NO_IMPORT, banned, *argv], capture_output=True, text=True,
                          env=env, timeout=300)


def test_lazy_imports(tmp_path):
    """`qesim estimate` imports neither pandas nor pyarrow nor dask; the sweep path imports pyarrow
    but not pandas (nor dask without --scheduler)."""
    r = _run_banning("pandas,pyarrow,dask,distributed,moocore", "estimate", "--model", "qwen2vl-2b", "--hw",
                     "flightllm-u280", "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    p = tmp_path / "s.yaml"
    import yaml

    p.write_text(yaml.safe_dump(SPEC))
    r = _run_banning("pandas,dask,distributed", "sweep", str(p), "--out", str(tmp_path / "o"), "--quiet")
    assert r.returncode == 0, r.stderr[-2000:]
    assert (tmp_path / "o" / "sweep.parquet").exists() and (tmp_path / "o" / "pareto.csv").exists()
    r = _run_banning("pandas,pyarrow,dask,distributed", "validate", str(p))
    assert r.returncode == 0, r.stderr[-2000:]
