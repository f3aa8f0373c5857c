"""Sweep execution: SIGKILL + --resume, process pool and Dask LocalCluster equal the in-process run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("pyarrow")

from qesim.cli import main  # noqa: E402
from qesim.dse.runner import read_sweep, run_sweep  # noqa: E402
from qesim.dse.space import load_space  # noqa: E402

SPACE = """\
space:
  name: resume-test
  base: flightllm-u280
  sampling: random
  samples: 12
  seed: 5
  hw:
    hbm.bandwidth_gbps: {min: 100, max: 1500, scale: log}
    buffers.weight_bytes: [262144, 2097152]
    scale.macs: [0.5, 1.0, 2.0]
  workload:
    model: qwen2vl-2b
    setting: [W16A16, W4A8]
    method: qe
  scenarios:
    - {stage: prefill, seq_len: 64}
    - {stage: decode, context_len: 256}
"""


@pytest.fixture(scope="module")
def space_file(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("space") / "space.yaml"
    p.write_text(textwrap.dedent(SPACE))
    return p


@pytest.fixture(scope="module")
def reference(space_file, tmp_path_factory) -> pd.DataFrame:
    out = tmp_path_factory.mktemp("ref") / "out"
    assert main(["sweep", str(space_file), "--out", str(out), "--quiet", "--chunk-size", "4"]) == 0
    return read_sweep(out)


def test_sigkill_then_resume_gives_the_same_rows(space_file, reference, tmp_path):
    out = tmp_path / "killed"
    env = dict(os.environ, QESIM_SWEEP_THROTTLE_S="0.25")
    proc = subprocess.Popen([sys.executable, "-m", "qesim.cli", "sweep", str(space_file), "--out", str(out),
                             "--quiet", "--chunk-size", "4"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    n_parts = len(reference) // 4  # 48 points / 4 = 12 parts
    deadline = time.time() + 60
    try:
        while time.time() < deadline:
            done = len(list((out / "parts").glob("*.parquet"))) if (out / "parts").exists() else 0
            if done >= n_parts // 2:
                break
            if proc.poll() is not None:
                pytest.fail(f"sweep ended before it could be killed: {proc.stderr.read().decode()}")
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    written = sorted((out / "parts").glob("*.parquet"))
    assert n_parts // 2 <= len(written) < n_parts
    assert not (out / "sweep.parquet").exists()
    # a plain rerun refuses (it would clobber the partial sweep); --resume finishes it
    assert main(["sweep", str(space_file), "--out", str(out), "--quiet"]) == 2
    assert main(["sweep", str(space_file), "--out", str(out), "--quiet", "--resume"]) == 0
    got = read_sweep(out)
    assert got.point_id.is_unique and len(got) == len(reference)
    pd.testing.assert_frame_equal(got, reference)
    # the parts written before the kill were kept, not recomputed
    assert all(p.exists() for p in written)


def test_resume_refuses_a_changed_space(space_file, tmp_path):
    out = tmp_path / "o"
    assert main(["sweep", str(space_file), "--out", str(out), "--quiet"]) == 0
    changed = tmp_path / "changed.yaml"
    changed.write_text(space_file.read_text().replace("seed: 5", "seed: 6"))
    assert main(["sweep", str(changed), "--out", str(out), "--quiet", "--resume"]) == 2


def test_process_pool_equals_in_process(space_file, reference, tmp_path):
    got = run_sweep(load_space(space_file), tmp_path / "pool", workers=2, quiet=True, chunk_size=4)
    pd.testing.assert_frame_equal(got, reference)


def test_process_pool_fronts_and_parts_equal_in_process(space_file, tmp_path):
    """Pool workers write their own parts and prefilter their chunk's fronts: the same parts and
    fronts as the in-process run."""
    from qesim.dse import runner

    sp = load_space(space_file)
    a = runner.sweep(sp, tmp_path / "one", quiet=True, chunk_size=4, keep=True)
    b = runner.sweep(sp, tmp_path / "pool", workers=2, quiet=True, chunk_size=4, keep=True)
    pd.testing.assert_frame_equal(a.fronts.to_pandas(), b.fronts.to_pandas())
    parts = sorted(p.name for p in (tmp_path / "one" / "parts").glob("*.parquet"))
    assert parts == sorted(p.name for p in (tmp_path / "pool" / "parts").glob("*.parquet")) and len(parts) >= 2
    for name in parts:
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "one" / "parts" / name),
                                      pd.read_parquet(tmp_path / "pool" / "parts" / name))


def test_dask_local_cluster_equals_in_process(space_file, reference, tmp_path):
    distributed = pytest.importorskip("dask.distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False, protocol="tcp", host="127.0.0.1",
                                  dashboard_address=None) as cluster:
        # through the CLI's --scheduler path (a real Client connecting over TCP on loopback)
        addr = cluster.scheduler_address
        assert addr.startswith("tcp://127.0.0.1:")
        out = tmp_path / "dask"
        assert main(["sweep", str(space_file), "--out", str(out), "--quiet", "--scheduler", addr,
                     "--chunk-size", "4"]) == 0
    pd.testing.assert_frame_equal(read_sweep(out), reference)


def test_unreachable_scheduler_is_an_input_error(space_file, tmp_path):
    pytest.importorskip("dask.distributed")
    from qesim.errors import InputError

    with pytest.raises(InputError, match="cannot connect"):
        run_sweep(load_space(space_file), tmp_path / "x", scheduler="tcp://127.0.0.1:9", quiet=True,
                  connect_timeout_s=1)
    assert not (tmp_path / "x").exists()  # nothing written before the connection
