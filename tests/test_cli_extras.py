"""Missing optional dependencies: one line naming the extra, exit 2, before any output; --help
marks the commands that need an extra."""
from __future__ import annotations

import importlib.util

import pytest

from qesim import cli


@pytest.fixture
def no_torch_no_dse(monkeypatch):
    real = importlib.util.find_spec
    gone = {"torch", "transformers", "scipy", "pyarrow", "tqdm", "moocore"}
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a, **k: None if name.split(".")[0] in gone else real(name, *a, **k))


@pytest.mark.parametrize("argv,extra", [
    (["accuracy", "--model", "smollm2-135m", "--methods", "rtn", "--settings", "W4A8", "--out", "{out}"], "quant"),
    (["quantize", "--model", "smollm2-135m", "--method", "rtn", "--setting", "W4A8", "--export", "{out}/g.json"], "quant"),
    (["moe", "veq", "--out", "{out}"], "quant"),
    (["sweep", "flightllm-dse", "--out", "{out}"], "dse"),
])
def test_missing_extra_is_one_line_and_writes_nothing(no_torch_no_dse, capsys, tmp_path, argv, extra):
    out = tmp_path / "out"
    assert cli.main([a.replace("{out}", str(out)) for a in argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"the '{extra}' extra" in err[0] and f".[{extra}]" in err[0]
    assert not out.exists()


def test_commands_without_extras_still_run(no_torch_no_dse, capsys):
    assert cli.main(["estimate", "--model", "qwen2vl-2b", "--json"]) == 0
    assert cli.main(["moe", "touched", "--trials", "20"]) == 0


def test_help_marks_every_command_that_needs_an_extra(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    lines = {ln.split()[0]: ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("    ") and ln.split()}
    for (cmd, sub), (extra, _) in cli.NEEDS.items():
        assert (f"needs the '{extra}' extra" if sub is None else f"{sub}: needs the '{extra}' extra") in lines[cmd]
    assert "needs" not in lines["estimate"]
