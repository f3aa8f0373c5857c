"""No silent fallbacks: a precision pair without a MAC-rate entry is an error naming the pair and the
entries (or runs at the slowest entry when the config says mpe.fallback: slowest); empty or
malformed settings / methods are errors."""
from __future__ import annotations

import pytest
import yaml

import qesim
from qesim.cli import main
from qesim.errors import InputError


def _no_fp16(tmp_path, fallback=None):
    d = qesim.load_hw("flightllm-u280").model_dump(mode="json")
    for mode in ("mm", "mv"):
        d["mpe"][mode] = [r for r in d["mpe"][mode] if r["w_bits"] < 16]
    if fallback:
        d["mpe"]["fallback"] = fallback
    d["name"] = "u280-int-only"
    p = tmp_path / ("int-only-fallback.yaml" if fallback else "int-only.yaml")
    p.write_text(yaml.safe_dump(d))
    return p


def test_missing_16_bit_entry_is_an_error_naming_pair_and_entries(tmp_path, capsys):
    p = _no_fp16(tmp_path)
    with pytest.raises(InputError) as e:
        qesim.estimate("qwen2vl-2b", str(p), stage="decode")
    msg = str(e.value)
    assert "W16A16" in msg and "W8A8" in msg and "W4A4" in msg and "fallback" in msg
    # a quantized setting needs the 16-bit rate too (attention at policy.attention_bits, the fp16 lm_head)
    assert main(["estimate", "--model", "qwen2vl-2b", "--hw", str(p), "--setting", "W4A8"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no MAC-rate entry covering" in err[0]
    # the config by name; not its path: the file is valid (an error naming the file means validate refuses it)
    assert "hardware 'u280-int-only': mpe." in err[0] and str(p) not in err[0]
    derived = qesim.load_hw(str(p)).with_updates({"hbm.bandwidth_gbps": 100.0})  # a what-if copy too
    with pytest.raises(InputError, match="hardware 'u280-int-only': mpe"):
        qesim.estimate("qwen2vl-2b", derived, stage="decode")
    hw = qesim.load_hw(str(p))
    assert hw.mpe.rate("mm", 8, 8) == 16384  # covered pairs are unaffected


def test_explicit_fallback_runs_at_the_slowest_entry(tmp_path):
    hw = qesim.load_hw(str(_no_fp16(tmp_path, "slowest")))
    assert hw.mpe.fallback == "slowest"
    assert hw.mpe.rate("mm", 16, 16) == min(r.macs_per_cycle for r in hw.mpe.mm) == 16384
    r = qesim.estimate("qwen2vl-2b", hw, stage="decode")
    assert r.latency_s > 0
    full = qesim.estimate("qwen2vl-2b", "flightllm-u280", stage="decode")
    assert r.latency_s <= full.latency_s  # INT8 is faster than the real 16-bit entry: the assumption shows


def test_sweep_over_such_a_config_is_an_input_error(tmp_path):
    p = _no_fp16(tmp_path)
    with pytest.raises(InputError, match="no MAC-rate entry"):
        qesim.sweep({"base": str(p), "workload": {"model": "qwen2vl-2b", "stage": "decode"}})


@pytest.mark.parametrize("argv", [["--setting", ""], ["--setting", "W4"], ["--method", ""], ["--method", "qe,awq"],
                                  ["--setting", "W4A8", "--method", " "]])
def test_empty_or_malformed_setting_and_method(argv, capsys):
    assert main(["estimate", "--model", "qwen2vl-2b", *argv]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_sweep_space_rejects_empty_setting_and_method():
    for wl in ({"setting": ""}, {"method": ""}, {"setting": []}):
        with pytest.raises(InputError):
            qesim.sweep({"base": "flightllm-u280", "workload": {"model": "qwen2vl-2b", **wl}})


def test_accuracy_lists_refuse_empty_entries():
    from qesim.commands.accuracy import _split

    assert _split("rtn, qe", "methods") == ["rtn", "qe"]
    for bad in ("", "rtn,,qe", "rtn,", ","):
        with pytest.raises(InputError, match="empty entry"):
            _split(bad, "methods")
