"""Hardware-config input handling: strict types, bounds, units, grouped errors, did-you-mean,
unreadable files, the JSON Schema and the generated field reference (issues 11.6 and 12)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import yaml

from qesim.errors import InputError
from qesim.hw.config import HardwareConfig
from qesim.hw.loader import config_dir, config_from_dict, load_hw, load_yaml, preset_names

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def base() -> dict:
    return yaml.safe_load((config_dir() / "flightllm-u280.yaml").read_text())


def _err(data: dict) -> str:
    with pytest.raises(InputError) as ei:
        config_from_dict(data, "cfg.yaml")
    msg = str(ei.value)
    assert "\n" not in msg
    return msg


def _set(d: dict, path: str, v):
    d = copy.deepcopy(d)
    cur = d
    keys = path.split(".")
    for k in keys[:-1]:
        cur = cur[k]
    cur[keys[-1]] = v
    return d


@pytest.mark.parametrize("path,value,needle", [
    ("hbm.bandwidth_gbps", True, "field hbm.bandwidth_gbps: Input should be a valid number (got True)"),
    ("hbm.bandwidth_gbps", "460", "a quoted number"),
    ("hbm.bandwidth_gbps", 1e-300, "field hbm.bandwidth_gbps: Input should be greater than or equal to 0.001"),
    ("hbm.bandwidth_gbps", float("nan"), "finite"),
    ("sfu.exp_cycles", float("inf"), "field sfu.exp_cycles: Input should be a finite number"),
    ("frequency_mhz", -1, "field frequency_mhz"),
    ("buffers.weight_bytes", 2.5, "field buffers.weight_bytes"),
    ("buffers.weight_bytes", "4 Mb", "unknown unit 'Mb'"),
    ("mpe.sparsity.supported_n", [], "field mpe.sparsity.supported_n"),
    ("mpe.sparsity.supported_n", [-4, 99], "supported_n must lie in 0..m"),
    ("mpe.sparsity.supported_n", [0], "at least one N >= 1"),
    ("mpe.cores", True, "field mpe.cores"),
    ("policy.sfu_fusion", "yes", "field policy.sfu_fusion"),
    ("name", {"a": 1}, "field name"),
])
def test_bad_field_is_named(base, path, value, needle):
    assert needle in _err(_set(base, path, value))


def test_did_you_mean_on_unknown_keys(base):
    d = copy.deepcopy(base)
    d["policy"]["sfu_fusoin"] = True
    assert "field policy.sfu_fusoin: unknown key; did you mean sfu_fusion?" in _err(d)
    d = copy.deepcopy(base)
    d["frequency_ghz"] = 1.4
    assert "frequency_ghz: unknown key; did you mean frequency_mhz?" in _err(d)
    d = copy.deepcopy(base)
    d["mpe"]["mm"][0]["macs_per_cyle"] = 1
    assert "mpe.mm.0.macs_per_cyle: unknown key; did you mean macs_per_cycle?" in _err(d)
    d = copy.deepcopy(base)
    d["mpe"]["mm"][0]["xyz"] = 1  # nothing close: the known keys are listed
    assert "mpe.mm.0.xyz: unknown key; known: w_bits, a_bits, macs_per_cycle" in _err(d)


def test_every_error_shown_grouped(base):
    d = copy.deepcopy(base)
    d["frequency_ghz"] = 1
    d["hbm"]["bandwidth_gbps"] = -1
    d["hbm"]["capacity_gib"] = 0
    d["buffers"]["act_bytes"] = 0
    d["mpe"]["cores"] = 0
    d["sfu"]["lanes"] = 0
    d["policy"]["scale_bits"] = 99
    msg = _err(d)
    assert msg.startswith("cfg.yaml: 7 invalid fields: ")
    for f in ("frequency_ghz", "hbm.bandwidth_gbps", "hbm.capacity_gib", "buffers.act_bytes", "mpe.cores",
              "sfu.lanes", "policy.scale_bits"):
        assert f in msg
    assert "more)" not in msg
    # grouped: both hbm errors sit in one section
    assert "field hbm.bandwidth_gbps: Input should be greater than or equal to 0.001 (got -1); hbm.capacity_gib" in msg


def test_human_units(base):
    d = _set(base, "buffers.weight_bytes", "4 MiB")
    d = _set(d, "buffers.act_bytes", "1.5 MB")
    d = _set(d, "hbm.bandwidth_gbps", "2039 GB/s")
    d = _set(d, "ddr.bandwidth_gbps", "1.2 TB/s")
    d = _set(d, "hbm.capacity_gib", "80 GiB")
    d = _set(d, "ddr.capacity_gib", "16 GB")
    d = _set(d, "frequency_mhz", "1.41 GHz")
    hw = config_from_dict(d, "cfg.yaml")
    assert hw.buffers.weight_bytes == 4 * 2**20 and isinstance(hw.buffers.weight_bytes, int)
    assert hw.buffers.act_bytes == 1_500_000
    assert hw.hbm.bandwidth_gbps == 2039.0 and hw.ddr.bandwidth_gbps == 1200.0
    assert hw.hbm.capacity_gib == 80.0 and hw.ddr.capacity_gib == pytest.approx(16e9 / 2**30)
    assert hw.frequency_mhz == pytest.approx(1410.0)
    # unit of the wrong kind
    assert "unknown unit 'GB/s'" in _err(_set(base, "buffers.weight_bytes", "4 GB/s"))
    assert "not a whole number" in _err(_set(base, "buffers.weight_bytes", "1.5 B"))


def test_yaml_12_floats_and_numpy(tmp_path, base):
    p = tmp_path / "c.yaml"
    p.write_text((config_dir() / "flightllm-u280.yaml").read_text().replace(
        "weight_bytes: 2097152", "weight_bytes: 2.097152e6"))
    assert load_hw(str(p)).buffers.weight_bytes == 2097152
    import numpy as np

    hw = load_hw("flightllm-u280").with_updates({"buffers.weight_bytes": np.int64(1 << 20),
                                                  "hbm.bandwidth_gbps": np.float64(300.0)})
    assert hw.buffers.weight_bytes == 1 << 20 and type(hw.buffers.weight_bytes) is int


@pytest.mark.parametrize("content,needle", [
    (b"name: [unclosed", "malformed YAML at line"),
    (b"- 1\n- 2\n", "expected a mapping"),
])
def test_malformed_yaml(tmp_path, content, needle):
    p = tmp_path / "c.yaml"
    p.write_bytes(content)
    with pytest.raises(InputError) as ei:
        load_hw(str(p))
    assert needle in str(ei.value) and str(p) in str(ei.value)


def test_unreadable_files(tmp_path, unreadable):
    content, needle = unreadable
    p = tmp_path / "c.yaml"
    p.write_bytes(content)
    with pytest.raises(InputError) as ei:
        load_hw(str(p))
    assert needle in str(ei.value) and str(p) in str(ei.value)


def test_utf16_with_bom_is_read(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_bytes((config_dir() / "qe-paper-npu.yaml").read_text().encode("utf-16"))
    assert load_hw(str(p)).name == "qe-paper-npu"
    assert isinstance(load_yaml(p), dict)


def test_tiny_density_keeps_one_weight_per_block():
    hw = load_hw("flightllm-u280")
    assert hw.mpe.sparsity.kept_fraction(1e-300) == 1 / 16
    qe = load_hw("qe-paper-npu")
    assert 0 < qe.mpe.sparsity.kept_fraction(1e-300) <= 1


# ----------------------------------------------------------------------------- schema + docs
def test_schema_covers_every_field_with_description():
    from qesim.hw.schema import hw_json_schema

    s = hw_json_schema()
    assert s["$schema"].startswith("http://json-schema.org/draft-07")
    assert "$defs" not in json.dumps(s)
    nodes = [s] + list(s["definitions"].values())
    n = 0
    for node in nodes:
        for name, f in node.get("properties", {}).items():
            n += 1
            assert f.get("description"), name
            is_num = f.get("type") in ("number", "integer") or any(
                a.get("type") in ("number", "integer") for a in f.get("anyOf", []))
            if is_num and name not in ("cores",):
                assert f.get("unit"), name
    assert n > 50
    bw = s["definitions"]["MemoryChannel"]["properties"]["bandwidth_gbps"]
    import re

    pat = next(a["pattern"] for a in bw["anyOf"] if a.get("type") == "string")
    assert re.match(pat, "2039 GB/s") and not re.match(pat, "2039")


def test_schema_command_and_docs_in_step(tmp_path):
    from qesim.cli import main
    from qesim.hw.schema import render_markdown, schema_text

    out = tmp_path / "s.json"
    assert main(["hw", "schema", "--out", str(out)]) == 0
    assert json.loads(out.read_text()) == json.loads(schema_text())
    doc = ROOT / "docs" / "hardware-config.md"
    assert doc.read_text() == render_markdown(), (
        "docs/hardware-config.md is stale: run `qesim hw schema --markdown --out docs/hardware-config.md`")
    for cls in ("MPE", "SFU", "MemoryChannel", "Buffers", "Policy", "StagePolicy", "Sparsity", "MacRate"):
        assert f"## {cls}" in doc.read_text()


def test_presets_still_valid_and_strict():
    for n in preset_names():
        hw = load_hw(n)
        again = HardwareConfig.model_validate(hw.model_dump())
        assert again == hw
        assert HardwareConfig.model_validate(json.loads(json.dumps(hw.model_dump(mode="json")))) == hw


def test_optional_field_bounds_are_json_schema_keywords():
    """pydantic writes an Optional number's bounds as gt/le inside its anyOf; the schema (editors)
    and docs/hardware-config.md must carry them as JSON Schema bounds (found by the fuzzer's
    bound lookup: the Markdown showed no range for 27 optional fields)."""
    from qesim.hw.schema import hw_json_schema, render_markdown

    text = json.dumps(hw_json_schema())
    assert not any(f'"{k}":' in text for k in ("gt", "ge", "lt", "le"))
    node = hw_json_schema()["definitions"]["Area"]["properties"]["sfu_lane_um2"]
    num = next(a for a in node["anyOf"] if a.get("type") == "number")
    assert num["exclusiveMinimum"] == 0 and num["maximum"] == 1e9
    assert "| `sfu_lane_um2` | number or null | um^2 | `null` | > 0, <= 1000000000 |" in render_markdown()


@pytest.mark.parametrize("value", [-1, 0, 1.5])
def test_sram_array_efficiency_in_unit_interval(tmp_path, capsys, value):
    """Found by the fuzzer: a negative SRAM array efficiency gave a negative buffer area, NaN die
    cost and numpy warnings on stderr; now the field is refused by name."""
    from qesim.cli import main

    d = yaml.safe_load((config_dir() / "qe-paper-npu.yaml").read_text())
    d["area"]["sram_array_efficiency"][2] = value
    p = tmp_path / "hw.yaml"
    p.write_text(yaml.safe_dump(d))
    assert main(["estimate", "--model", "smollm2-135m", "--hw", str(p), "--json"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "area.sram_array_efficiency.2" in err[0] and str(p) in err[0], err


def test_empty_hw_name_is_named(capsys):
    """Found by the fuzzer: `--hw ''` was read as the current directory ("…: is a directory")."""
    from qesim.cli import main

    assert main(["estimate", "--model", "smollm2-135m", "--hw", ""]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "empty hardware name" in err[0]


def test_config_errors_name_the_path_as_given(tmp_path, monkeypatch, capsys):
    from qesim.cli import main

    monkeypatch.chdir(tmp_path)
    Path("bad.yaml").write_text("name: x\nfrequency_mhz: true\n")
    assert main(["validate", "bad.yaml"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("qesim: error: bad.yaml:") and str(tmp_path) not in err, err
