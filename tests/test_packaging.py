"""The wheel works on its own: build it, install it (no extras) into a fresh venv, run the main
commands from a directory outside the source tree. Slow (a venv and its dependencies from the
local index, ~1-2 min); scripts/test.sh runs it after the default suite, so CI runs it."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _run(cmd, cwd, timeout=900, check=True, env=None):
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                       env={k: v for k, v in (env or os.environ).items() if k != "PYTHONPATH"})
    if check and r.returncode != 0:
        raise AssertionError(f"{cmd} -> {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return r


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"  # build from a copy: the build must not depend on (or litter) the checkout
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".venv", ".git", "build", "dist", "*.egg-info",
                                                             "__pycache__", "reports", ".pytest_cache"))
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp / "dist"), str(src)], cwd=tmp)
    wheel = next((tmp / "dist").glob("qesim-*.whl"))
    env_dir = tmp / "venv"
    _run([sys.executable, "-m", "venv", str(env_dir)], cwd=tmp)
    _run([str(env_dir / "bin" / "pip"), "install", "-q", str(wheel)], cwd=tmp)
    work = tmp / "elsewhere"
    work.mkdir()
    (work / "llama3-8b").mkdir()
    shutil.copy(ROOT / "tests" / "data" / "hf_configs" / "llama3-8b" / "config.json", work / "llama3-8b")
    return env_dir, work


def test_no_extras_installed(venv):
    env_dir, work = venv
    r = _run([str(env_dir / "bin" / "python"), "-c",
              "import importlib.util as u; print([m for m in ('torch','pyarrow','tqdm','scipy','moocore') if u.find_spec(m)])"],
             cwd=work)
    assert r.stdout.strip() == "[]"


def test_main_commands_from_another_directory(venv):
    env_dir, work = venv
    q = str(env_dir / "bin" / "qesim")
    hw = _run([q, "hw", "list"], cwd=work).stdout
    for name in ("flightllm-u280", "qe-paper-npu", "nvidia-a100"):
        assert name in hw
    _run([q, "reproduce", "table8", "--out", "t8"], cwd=work)
    head = (work / "t8" / "table8.csv").read_text().splitlines()[0]
    assert head.startswith("in_features,out_features,setting,stage,seq_len,paper_speedup,qesim_speedup,error_pct")
    d = json.loads(_run([q, "estimate", "--model", "llama3-8b", "--hw", "flightllm-u280", "--stage", "decode",
                         "--json"], cwd=work).stdout)
    assert d["model"] == "meta-llama/Meta-Llama-3-8B" and d["latency_s"] > 0
    big = json.loads(_run([q, "estimate", "--model", "qwen2vl-72b", "--hw", "flightllm-u280", "--stage", "decode",
                           "--json"], cwd=work).stdout)
    assert big["fits"] is False and big["footprint_bytes"]["hbm"] > 8 * 2**30
    py = _run([str(env_dir / "bin" / "python"), "-c",
               "import qesim, json; r = qesim.estimate('qwen2vl-2b', 'flightllm-u280', setting='W4A8'); "
               "print(json.dumps([r.latency_s, qesim.presets()['sweeps']]))"], cwd=work).stdout
    lat, sweeps = json.loads(py)
    assert lat > 0 and "flightllm-dse" in sweeps


def test_missing_extras_are_one_line_before_any_output(venv):
    env_dir, work = venv
    q = str(env_dir / "bin" / "qesim")
    for argv, extra, out in ((["accuracy", "--model", "smollm2-135m", "--methods", "rtn", "--settings", "W4A8",
                               "--out", "acc"], "quant", "acc"),
                             (["moe", "veq", "--out", "veq"], "quant", "veq"),
                             (["sweep", "flightllm-dse", "--out", "sw"], "dse", "sw")):
        r = _run([q, *argv], cwd=work, check=False)
        assert r.returncode == 2, (argv, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and f"pip install 'qesim[{extra}]'" in lines[0], (argv, r.stderr)
        assert not (work / out).exists(), argv
    helptext = _run([q, "--help"], cwd=work, env={**os.environ, "COLUMNS": "250"}).stdout
    lines = {ln.split()[0]: ln for ln in helptext.splitlines() if ln.startswith("    ") and ln.split()}
    for cmd in ("accuracy", "quantize", "moqe", "sweep", "calibrate", "fidelity"):
        assert "needs the" in lines[cmd], (cmd, helptext)
    assert "veq: needs the 'quant' extra" in lines["moe"]
    assert "needs" not in lines["estimate"] and "needs" not in lines["hw"]
