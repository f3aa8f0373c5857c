"""Vision encoders, mergers and image -> token rules (qesim.graph.vision); hand-computed values."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from qesim.errors import InputError
from qesim.graph.builders import build_graph
from qesim.graph.ir import LayerGraph
from qesim.graph.vision import (build_vlm_graph, component_summary, image_layout, internvl_tiles, kimivl_grid,
                                parse_image_size, parse_quantize, qwen2vl_smart_resize, vision_spec)
from qesim.hw.loader import load_hw
from qesim.perf.model import estimate_graph


# --- Qwen2-VL smart resize: factor 28, min 56*56, max 16384*28*28 ----------------------------------
@pytest.mark.parametrize("w,h,resized,tokens", [
    (448, 448, (448, 448), 256),        # 32x32 patches -> 1024 -> 256 (the example)
    (896, 672, (672, 896), 768),        # 24x32 factors -> 48x64 patches = 3072 -> 768
    (1000, 500, (504, 1008), 648),      # round(500/28)=18, round(1000/28)=36 -> 36x72 = 2592 patches
    (50, 40, (56, 84), 6),              # 28x56 < min_pixels: beta = sqrt(3136/2000); ceil -> 2x3 factors
    (4000, 3000, (2996, 4004), 15301),  # 107x143 factors, 11,995,984 px < max -> 214x286 patches
    (5000, 4000, (3192, 4004), 16302),  # > max: beta = sqrt(2e7/12845056) = 1.2478; floor -> 114x143 factors
])
def test_qwen2vl_tokens(w, h, resized, tokens):
    assert qwen2vl_smart_resize(h, w) == resized
    lay = image_layout(vision_spec("qwen2vl-7b"), w, h)
    assert lay.tokens == tokens and lay.patches == 4 * tokens


def test_qwen2vl_rejects_tiny_and_extreme():
    with pytest.raises(InputError):
        image_layout(vision_spec("qwen2vl-2b"), 20, 448)
    with pytest.raises(InputError):
        image_layout(vision_spec("qwen2vl-2b"), 28 * 201, 28)


def test_qwen3vl_factor_32():
    lay = image_layout(vision_spec("qwen3-vl-30b-a3b"), 448, 448)   # 448/16 = 28 -> 784 patches
    assert (lay.patches, lay.tokens) == (784, 196)


# --- InternVL2 dynamic tiling: 448-px tiles, max 12, thumbnail, 256 tokens per tile ---------------
@pytest.mark.parametrize("w,h,grid,tiles", [
    (448, 448, (1, 1), 1),      # aspect 1 -> (1,1); (2,2) ties but the image covers < half of it; no thumbnail
    (800, 600, (4, 3), 13),     # aspect 4/3 exactly -> 12 tiles + thumbnail
    (896, 448, (2, 1), 3),      # aspect 2 -> (2,1); (4,2) ties but 896*448 < 0.5*448^2*8
    (1920, 1080, (4, 2), 9),    # 1.78: (2,1) and (4,2) tie at 0.222; 1920*1080 > 0.5*448^2*8 -> (4,2)
    (300, 1000, (1, 3), 4),     # 0.3 -> (1,3) (diff 0.033); (2,6) ties, image too small for it
])
def test_internvl_tiles(w, h, grid, tiles):
    cols, rows, n = internvl_tiles(w, h)
    assert (cols, rows) == grid and n == tiles
    lay = image_layout(vision_spec("internvl2-8b"), w, h)
    assert lay.crops == tiles and lay.tokens == 256 * tiles and lay.patches_per_crop == 1024


@pytest.mark.parametrize("w,h,grid", [
    (448, 448, (32, 32)),       # 1024 patches <= 4096, already a multiple of 28
    (1000, 700, (50, 72)),      # 71x50 = 3550 patches; pad 700 -> 700, 1000 -> 1008
    (2000, 2000, (66, 66)),     # 142^2 > 4096: scale sqrt(4096/20164) -> 901 px, pad to 924
])
def test_kimivl_grid(w, h, grid):
    assert kimivl_grid(w, h) == grid
    assert image_layout(vision_spec("kimi-vl-a3b"), w, h).tokens == grid[0] * grid[1] // 4


def test_parsers():
    assert parse_image_size("896x672") == (896, 672)
    assert parse_quantize(None) == frozenset("L")
    assert parse_quantize("l, v,M") == frozenset("LVM")
    for bad in ("896", "ax3", "0x10"):
        with pytest.raises(InputError):
            parse_image_size(bad)
    with pytest.raises(InputError):
        parse_quantize("L,X")
    with pytest.raises(InputError):
        vision_spec("llama2-7b")


# --- graphs and MACs ------------------------------------------------------------------------------
def _vlm(model="qwen2vl-7b", **kw):
    kw = {**dict(stage="prefill", images=1, image_size=(448, 448), text_tokens=64), **kw}
    return build_vlm_graph(model, **kw)


def _macs(graph, hw, comp):
    d = estimate_graph(graph, hw).to_dict()
    names = {op.name for op in graph.ops if op.component == comp}
    return sum(o["macs"] * o["repeat"] for o in d["ops"] if o["name"] in names)


def test_qwen2vl_vit_macs_by_hand():
    g = _vlm()
    hw = load_hw("qe-paper-npu")
    P, h, I = 1024, 1280, 5120
    patch = P * (3 * 2 * 14 * 14) * h                       # Conv3d(3,1280,(2,14,14)) as a GEMM, K = 1176
    block = P * (h * 3 * h + h * h + h * I + I * h)         # qkv, proj, fc1, fc2
    attn = 2 * 16 * P * P * 80                               # QK^T + PV, non-causal, head_dim 80
    assert _macs(g, hw, "vision") == patch + 32 * (block + attn) == 731_685_847_040
    merger = (P // 4) * (4 * h * 4 * h + 4 * h * 3584)      # 2x2 merge -> 5120 -> 5120 -> 3584
    assert _macs(g, hw, "merger") == merger == 11_408_506_880


def test_internvit_macs_by_hand():
    g = _vlm("internvl2-2b", image_size=(448, 448))        # one tile, no thumbnail
    hw = load_hw("qe-paper-npu")
    P, T, h, I = 1024, 1025, 1024, 4096                      # 1024 patches + class token
    vit = P * 588 * h + 24 * (T * (h * 3 * h + h * h + 2 * h * I) + 2 * 16 * T * T * 64)
    assert _macs(g, hw, "vision") == vit
    assert _macs(g, hw, "merger") == 256 * (4096 * 2048 + 2048 * 2048)


def test_request_graph_structure():
    g = _vlm()
    comps = [op.component for op in g.ops]
    assert comps.index("merger") > comps.index("vision") and comps.index("language") > comps.index("merger")
    assert g.meta["image_tokens"] == 256 and g.meta["text_tokens"] == 64 and g.seq_len == 320
    att = next(op for op in g.ops if op.name == "vision.block.attention")
    assert not att.causal and att.q_len == att.kv_len == 1024 and att.repeat == 32
    emb = next(op for op in g.ops if op.name == "embedding")
    assert emb.tokens == 64                                   # only text tokens are gathered
    lm_att = next(op for op in g.ops if op.name == "layer.attention")
    assert lm_att.q_len == 320
    LayerGraph.model_validate_json(g.to_json())               # round-trips with the component field
    # two images, batch 2: vision rows and image tokens scale, attention stays per image
    g2 = _vlm(images=2, batch=2)
    assert g2.meta["image_tokens"] == 512 and g2.seq_len == 576
    assert next(op for op in g2.ops if op.name == "vision.block.attention").batch == 4


def test_quantize_parts_select_bits():
    g = _vlm(setting="W4A6", method="qe", quantize="V")
    by = {op.name: op for op in g.ops}
    assert by["vision.block.fc1"].weight_bits == 4 and by["vision.block.fc1"].adapters is not None
    assert by["vision.patch_embed"].weight_bits == 16                      # conv stays fp16
    assert by["merger.fc1"].weight_bits == 16 and by["layer.q_proj"].weight_bits == 16
    assert "vision.block.qkv_quant" in by and "merger.fc1_quant" not in by
    g = _vlm(setting="W4A6", method="qe")                                   # default: L only
    by = {op.name: op for op in g.ops}
    assert by["layer.q_proj"].weight_bits == 4 and by["vision.block.fc1"].weight_bits == 16


def test_decode_puts_image_tokens_in_context():
    g = _vlm(stage="decode", context_len=100)
    assert g.context_len == 356 and all(op.component == "language" for op in g.ops)


@pytest.mark.parametrize("hw_name", ["qe-paper-npu", "flightllm-u280"])
@pytest.mark.parametrize("model", ["qwen2vl-7b", "internvl2-2b", "kimi-vl-a3b", "qwen3-vl-30b-a3b"])
def test_image_makes_ttft_longer(model, hw_name):
    hw = load_hw(hw_name)
    text = estimate_graph(build_graph(model, stage="prefill", seq_len=64), hw).latency_s
    g = _vlm(model)
    d = estimate_graph(g, hw).to_dict()
    assert d["latency_s"] > text
    comp = component_summary(g, d, hw.frequency_hz)
    assert set(comp) == {"vision", "merger", "language"}
    assert sum(c["cycles"] for c in comp.values()) == pytest.approx(d["cycles"])


@pytest.mark.parametrize("hw_name,scaling", [("flightllm-u280", None), ("flightllm-u280", False),
                                             ("qe-paper-npu", False)])
def test_quantizing_more_parts_never_slower(hw_name, scaling):
    # qe-paper-npu is SFU-bound on this request: with QE's omega op per quantized linear (scaling None = on)
    # quantizing more parts costs more SFU time there (reports/table12.md says so); without it, and on the
    # compute-bound FlightLLM U280 either way, every extra quantized part makes the request faster
    hw = load_hw(hw_name)
    lat = [estimate_graph(_vlm("qwen2vl-2b", setting=s, method=m, quantize=q, input_scaling=scaling), hw).latency_s
           for s, m, q in (("W16A16", "none", "L"), ("W4A6", "qe", "L"), ("W4A6", "qe", "L,V"),
                           ("W4A6", "qe", "L,V,M"))]
    assert lat[0] > lat[1] > lat[2] > lat[3]


def test_omega_op_before_each_quantized_vision_linear():
    g = _vlm(setting="W4A6", method="qe", quantize="V")
    names = [op.name for op in g.ops]
    for lin in ("qkv", "proj", "fc1", "fc2"):
        i = names.index(f"vision.block.{lin}")
        assert names[i - 2:i] == [f"vision.block.{lin}_omega", f"vision.block.{lin}_quant"]
        om = g.ops[i - 2]  # its omega vector: one constant per input channel of the linear
        assert om.const_elems == om.width == g.ops[i].in_features
    assert "merger.fc1_omega" not in names
    assert "vision.block.qkv_omega" not in [o.name for o in _vlm(setting="W4A6", method="rtn", quantize="V").ops]


def _cli(*a):
    return subprocess.run([sys.executable, "-m", "qesim.cli", *a], capture_output=True, text=True)


def test_cli_estimate_json_components():
    r = _cli("estimate", "--model", "qwen2vl-7b", "--images", "1", "--image-size", "448x448", "--seq-len", "64",
             "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["image_tokens"] == 256 and d["text_tokens"] == 64
    assert set(d["components"]) == {"vision", "merger", "language"}
    assert {o["component"] for o in d["ops"]} == {"vision", "merger", "language"}
    for c in d["components"].values():
        assert c["latency_s"] > 0 and c["bytes"] > 0 and c["bound"]
    t = _cli("estimate", "--model", "qwen2vl-7b", "--seq-len", "64", "--json")
    assert json.loads(t.stdout)["latency_s"] < d["latency_s"]


def test_cli_bad_image_input_is_one_line():
    for args in (["--images", "1", "--image-size", "big"], ["--images", "1", "--quantize", "Q"],
                 ["--images", "-1"]):
        r = _cli("estimate", "--model", "qwen2vl-7b", *args)
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    r = _cli("estimate", "--model", "llama2-7b", "--images", "1")
    assert r.returncode == 2 and "vision tower" in r.stderr


def test_table12_rows_and_paper_columns(tmp_path):
    from qesim.report.table12 import paper_accuracy, write_report

    hws = [load_hw("qe-paper-npu"), load_hw("flightllm-u280")]
    text = write_report(hws, tmp_path, "test")
    import pandas as pd

    df = pd.read_csv(tmp_path / "table12.csv")
    assert list(df.row.unique()) == ["FP16", "L", "L+V", "L+V+M"]
    for name, f in df.groupby("hw"):
        sp = list(f.speedup_vs_fp16)
        fo = list(f.speedup_omega_folded)
        assert sp[0] == 1.0 and all(b > a for a, b in zip(fo, fo[1:])), name
        if name == "flightllm-u280":
            assert all(b > a for a, b in zip(sp, sp[1:]))
        elif not all(b > a for a, b in zip(sp, sp[1:])):
            assert "do **not** increase" in text
    acc = paper_accuracy()
    assert list(df[df.hw == "qe-paper-npu"].paper_avg) == list(acc.avg)
    assert "the paper's" in text


def test_api_estimate_takes_images_and_keeps_them_in_the_baseline():
    import qesim

    est = qesim.estimate("qwen2vl-2b", "flightllm-u280", setting="W4A6", method="qe", seq_len=64, images=1,
                         image_size="448x448", quantize="L,V,M")
    d = est.to_dict()
    assert d["image_tokens"] == 256 and set(d["components"]) == {"vision", "merger", "language"}
    fp16 = qesim.estimate("qwen2vl-2b", "flightllm-u280", seq_len=64, images=1).latency_s
    assert d["fp16_latency_s"] == pytest.approx(fp16)      # the baseline is the same request at fp16
    with pytest.raises(InputError):
        qesim.estimate("qwen2vl-2b", images=1, image_size="huge")


def test_sweep_axes_images_image_size_quantize():
    import numpy as np

    from qesim.dse.evaluate import evaluate_space
    from qesim.dse.space import space_from_dict

    sp = space_from_dict({"space": {
        "base": "flightllm-u280", "sampling": "grid",
        "hw": {"hbm.bandwidth_gbps": [230, 460]},
        "workload": {"model": "qwen2vl-2b", "setting": "W4A6", "method": "qe", "seq_len": 32,
                     "images": [0, 1], "image_size": ["448x448", "896x448"], "quantize": ["L", "L,V,M"]},
    }}, "test")
    df = evaluate_space(sp)
    assert len(df) == 2 * 2 * 2 * 2 and np.isfinite(df.latency_s).all()
    exact = evaluate_space(sp, exact=True)
    assert np.allclose(df.sort_values("point_id").latency_s, exact.sort_values("point_id").latency_s, rtol=1e-9)
    one = df[(df["hbm.bandwidth_gbps"] == 460) & (df.quantize == "L")]
    t0 = one[one.images == 0].latency_s.iloc[0]
    big = one[(one.images == 1) & (one.image_size == "896x448")].latency_s.iloc[0]
    small = one[(one.images == 1) & (one.image_size == "448x448")].latency_s.iloc[0]
    assert t0 < small < big
    # the same point through qesim.estimate
    import qesim

    ref = qesim.estimate("qwen2vl-2b", "flightllm-u280", setting="W4A6", method="qe", seq_len=32, images=1,
                         image_size="448x448")
    assert small == pytest.approx(ref.latency_s, rel=1e-9)
    assert set(df[df.images == 1].quantize) == {"L", "L,V,M"}
