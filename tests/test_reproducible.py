"""Reports are reproducible (issue 12): two runs of a report command write byte-identical files;
provenance records the command actually run; wall times live in *_timing files only."""

from __future__ import annotations

from pathlib import Path

from qesim.cli import main


def _files(d):
    return {p.relative_to(d): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def test_table8_twice_byte_identical(tmp_path, capsys):
    for run in ("a", "b"):
        assert main(["reproduce", "table8", "--out", str(tmp_path / run), "--quiet"]) == 0
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert a.keys() == b.keys() and len(a) == 4
    for k in a:
        assert a[k] == b[k].replace(b"/b", b"/a"), k  # only the --out argument itself differs
    assert f"qesim reproduce table8 --out {tmp_path / 'a'} --quiet".encode() in a[Path("table8.md")]


def test_engines_report_twice_byte_identical(tmp_path, capsys):
    for run in ("a", "b"):
        assert main(["compare-engines", "--all", "--models", "smollm2-135m", "--out", str(tmp_path / run),
                     "--quiet"]) == 0
    out = capsys.readouterr()
    assert "engines_timing.csv" in out.out + out.err
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    for k in a:
        if k.name == "engines_timing.csv":
            assert b"wall_s" in a[k]
            continue
        assert a[k] == b[k].replace(b"/b", b"/a"), k
        assert b"wall_s" not in a[k]
    assert b"qesim compare-engines --all --models smollm2-135m" in a[next(k for k in a if k.name == "engines.md")]
