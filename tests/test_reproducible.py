"""Reports are reproducible (issue 12): two runs of every report command write byte-identical files;
provenance records the command actually run, with relative paths as given (no absolute path of the
machine leaks into a report); wall times live in ``*_timing`` files only.

Each test runs one command twice in process from a temporary working directory with a relative
``--out``: the first result is moved aside, the command runs again into the same path, and every
file of the two runs is compared byte for byte. Small configurations keep the default run short
(``--models smollm2-135m``, a few requests, a 12-point sweep); ``moe veq`` and ``moqe run`` take
minutes and are ``@pytest.mark.slow`` (``bash scripts/test.sh --slow tests/test_reproducible.py``).
``accuracy`` reports belong to the quantization tests.
"""

from __future__ import annotations

import shlex
import shutil
from pathlib import Path

import pytest

from qesim.cli import main

REPO = Path(__file__).resolve().parents[1]


def _timing(name: str) -> bool:
    """Files that hold wall times by design (``*_timing.csv``: reported, never compared)."""
    return name.endswith("_timing.csv")


def _files(d: Path) -> dict:
    return {p.relative_to(d).as_posix(): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def twice(argv: list, tmp_path: Path, monkeypatch, capsys, out: str = "out", first: str = "first") -> dict:
    """Run ``qesim ARGV`` twice from ``tmp_path`` (the first ``out`` moved to ``first`` in between);
    assert both runs wrote the same files with the same bytes, and that no file names the absolute
    ``tmp_path``. Returns {relative path: bytes} of the second run."""
    monkeypatch.chdir(tmp_path)
    outs = []
    for _ in range(2):
        assert main([str(a) for a in argv]) == 0, capsys.readouterr().err
        outs.append(capsys.readouterr())
        if not Path(first).exists():
            shutil.move(out, first)
    a, b = _files(tmp_path / first), _files(tmp_path / out)
    assert a, f"{argv} wrote nothing under {out}"
    assert sorted(a) == sorted(b)
    for k in a:
        if _timing(Path(k).name):
            continue
        assert a[k] == b[k], f"{k} differs between two runs of qesim {shlex.join(map(str, argv))}"
        assert str(tmp_path).encode() not in a[k], f"{k} records an absolute path"
    # the paths written are printed, also under --quiet
    said = outs[1].out + outs[1].err
    assert out in said, said
    return b


def _provenance(files: dict, name: str, argv: list) -> None:
    """``name`` records the command as run (``qesim`` + the arguments as given)."""
    cmd = "qesim " + shlex.join(map(str, argv))
    assert cmd.encode() in files[name], (name, cmd, files[name][:400])


def test_table8_twice(tmp_path, monkeypatch, capsys):
    argv = ["reproduce", "table8", "--out", "out", "--quiet"]
    f = twice(argv, tmp_path, monkeypatch, capsys)
    assert sorted(f) == ["table8.csv", "table8.md", "table8_decode.csv", "table8_sensitivity.csv"]
    _provenance(f, "table8.md", argv)


def test_table12_twice(tmp_path, monkeypatch, capsys):
    argv = ["reproduce", "table12", "--hw", "flightllm-u280", "--out", "out", "--quiet"]
    f = twice(argv, tmp_path, monkeypatch, capsys)
    assert sorted(f) == ["table12.csv", "table12.md"]
    _provenance(f, "table12.md", argv)


def test_engines_report_twice(tmp_path, monkeypatch, capsys):
    argv = ["compare-engines", "--all", "--models", "smollm2-135m", "--out", "out", "--quiet"]
    f = twice(argv, tmp_path, monkeypatch, capsys)
    assert {"engines.md", "engines.csv", "engines_outliers.csv", "engines_timing.csv"} <= set(f)
    assert b"wall_s" in f["engines_timing.csv"]
    assert not any(b"wall_s" in v for k, v in f.items() if not _timing(k))
    _provenance(f, "engines.md", argv)


def test_engines_trace_twice(tmp_path, monkeypatch, capsys):
    argv = ["compare-engines", "--model", "smollm2-135m", "--stage", "decode", "--context", "64", "--trace", "out"]
    f = twice(argv, tmp_path, monkeypatch, capsys)
    assert sorted(Path(k).suffix for k in f) == [".json", ".png"]
    png = next(v for k, v in f.items() if k.endswith(".png"))
    assert b"Matplotlib" not in png  # no version text chunk: fixed metadata


def test_inference_report_twice(tmp_path, monkeypatch, capsys):
    argv = ["inference", "--report", "--models", "smollm2-135m", "--request", "16,8", "--out", "out", "--quiet"]
    f = twice(argv, tmp_path, monkeypatch, capsys)
    assert sorted(f) == ["inference.csv", "inference.md"]
    assert f["inference.csv"].count(b"\n") == 1 + 3 * 4  # 3 configs x 4 settings x 1 request
    _provenance(f, "inference.md", argv)


def test_energy_report_twice(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    space = (REPO / "hw_configs/sweeps/npu-energy-dse.yaml").read_text()
    space = space.replace("[230, 460, 819.2]", "[460]").replace("[0.5, 1, 2, 4]", "[1, 2]") \
        .replace("[524288, 2097152, 8388608]", "[2097152]").replace("[2097152, 16777216]", "[16777216]")
    Path("space.yaml").write_text(space)
    assert main(["sweep", "space.yaml", "--out", "esweep", "--quiet"]) == 0
    argv = ["energy", "--report", "--sample-every", "100000", "--sweep", "esweep", "--out", "out"]
    f = twice(argv, tmp_path, monkeypatch, capsys)
    assert {"energy.md", "energy_presets.csv", "energy_flightllm.csv", "energy_breakdown.png",
            "energy_pareto.png"} <= set(f)
    assert b"Sweep `esweep/sweep.parquet`" in f["energy.md"]
    _provenance(f, "energy.md", argv)


def test_fidelity_twice(tmp_path, monkeypatch, capsys):
    argv = ["fidelity", "--folds", "2", "--transfer", "none", "--no-e2e", "--out", "out"]
    f = twice(argv, tmp_path, monkeypatch, capsys)
    assert {"fidelity.md", "fidelity.csv", "fidelity.png"} <= set(f)
    _provenance(f, "fidelity.md", argv)


def test_moe_speedup_twice(tmp_path, monkeypatch, capsys):
    argv = ["moe", "speedup", "--hw", "qe-paper-npu", "--out", "out"]
    f = twice(argv, tmp_path, monkeypatch, capsys)
    assert sorted(f) == ["moe_speedup.csv", "moe_speedup.md"]
    _provenance(f, "moe_speedup.md", argv)


def test_moe_touched_twice(capsys):
    """``moe touched`` writes no file; its seeded simulation prints the same table twice."""
    outs = []
    for _ in range(2):
        assert main(["moe", "touched", "--experts", "16", "--top-k", "2", "--tokens", "1", "8", "--trials", "50"]) == 0
        outs.append(capsys.readouterr().out)
    assert outs[0] == outs[1] and outs[0].count("\n") == 3


def _tiny_space() -> str:
    return (REPO / "hw_configs/sweeps/flightllm-dse.yaml").read_text()


def test_sweep_twice(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    Path("space.yaml").write_text(_tiny_space())
    argv = ["sweep", "space.yaml", "--out", "out", "--chunk-size", "200", "--quiet"]
    f = twice(argv, tmp_path, monkeypatch, capsys)
    assert {"sweep.parquet", "pareto.csv", "manifest.json"} <= set(f)
    assert sum(k.startswith("parts/") for k in f) == 3  # 540 points in chunks of 200
    assert b'"source": "space.yaml"' in f["manifest.json"]
    # a local process pool writes the same bytes as the in-process run
    assert main(argv[:3] + ["pool"] + argv[4:] + ["--workers", "2"]) == 0
    assert _files(tmp_path / "pool") == f


def test_html_report_twice(tmp_path, monkeypatch, capsys):
    """``qesim report`` over a directory holding other reports: index.html and every PNG in
    index_files/ byte-identical; the page links the reports it found."""
    monkeypatch.chdir(tmp_path)
    Path("space.yaml").write_text(_tiny_space())
    assert main(["sweep", "space.yaml", "--out", "rep/sweep", "--quiet"]) == 0
    assert main(["moe", "speedup", "--hw", "qe-paper-npu", "--out", "rep"]) == 0
    assert main(["reproduce", "table12", "--out", "rep", "--quiet"]) == 0
    capsys.readouterr()
    argv = ["report", "--out", "rep", "--model", "smollm2-135m", "--quiet"]
    monkeypatch.chdir(tmp_path)
    a = twice_in_place(argv, tmp_path, monkeypatch, capsys)
    assert "index.html" in a and sum(k.startswith("index_files/") and k.endswith(".png") for k in a) >= 5
    page = a["index.html"]
    _provenance(a, "index.html", argv)
    for md in (b'href="moe_speedup.md"', b'href="table12.md"'):
        assert md in page, md


def twice_in_place(argv: list, tmp_path: Path, monkeypatch, capsys, out: str = "rep") -> dict:
    """Like :func:`twice` for a command that reads its own output directory (``qesim report``):
    the second run goes over the same directory; compares what the first run wrote."""
    monkeypatch.chdir(tmp_path)
    assert main([str(a) for a in argv]) == 0
    capsys.readouterr()
    a = _files(tmp_path / out)
    assert main([str(a) for a in argv]) == 0
    said = capsys.readouterr()
    assert out in said.out + said.err
    b = _files(tmp_path / out)
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k] == b[k], f"{k} differs between two runs of qesim {shlex.join(map(str, argv))}"
        assert str(tmp_path).encode() not in a[k], f"{k} records an absolute path"
    return b


@pytest.mark.slow
def test_veq_twice(tmp_path, monkeypatch, capsys):
    argv = ["moe", "veq", "--out", "out"]
    f = twice(argv, tmp_path, monkeypatch, capsys)
    assert sorted(f) == ["veq.csv", "veq.md"]
    _provenance(f, "veq.md", argv)


@pytest.mark.slow
def test_moqe_twice(tmp_path, monkeypatch, capsys):
    argv = ["moqe", "run", "--variants", "rtn:W4A8", "rtn:W3A16", "--n-calib", "8", "--n-eval", "4",
            "--quant-calib", "4", "--out", "out"]
    f = twice(argv, tmp_path, monkeypatch, capsys)
    assert {"moqe.md", "moqe.csv", "moqe_timing.csv"} <= set(f)
    assert b" s; per variant" not in f["moqe.md"]  # wall times only in moqe_timing.csv
    assert b"qesim moqe run --variants rtn:W4A8 rtn:W3A16" in f["moqe.md"]
