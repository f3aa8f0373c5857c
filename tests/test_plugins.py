"""Plug-in quantizers through the ``qesim.quantizers`` entry-point group: a tiny package (a module
plus its dist-info on sys.path, as pip would install it) runs through estimate, sweeps, accuracy
and quantize --export with no change to qesim."""
from __future__ import annotations

import csv
import importlib
import json
import os
import sys
import textwrap

import pytest

import qesim
from qesim.cli import main
from qesim.quant import plugins

PLUGIN = '''
"""tinyq: RTN weights plus a rank-4 SVD correction of the quantization error (a tiny LQER)."""
from qesim.quant.plugins import Quantizer


def quantize_block(ctx):
    import torch

    from qesim.quant.methods import make_qlinear

    out = {}
    for name, lin in ctx.linears.items():
        W = lin.weight.detach().float()
        Wq = ctx.setting.wq(W)
        U, S, Vh = torch.linalg.svd((W - Wq).T, full_matrices=False)
        A, B = U[:, :4].contiguous(), (S[:4, None] * Vh[:4]).contiguous()
        out[name] = make_qlinear(ctx, name, W=Wq, A=A, B=B, info={"method": "tinyq", "rank": 4})
    return out


TINYQ = Quantizer(name="tinyq", quantize_block=quantize_block, adapters={"shared_rank": 4, "router": False})
BROKEN = None
'''


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("site")
    (d / "tinyq").mkdir()
    (d / "tinyq" / "__init__.py").write_text(textwrap.dedent(PLUGIN))
    info = d / "tinyq_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tinyq-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[qesim.quantizers]\ntinyq = tinyq:TINYQ\nbroken = tinyq:NOPE\n")
    (info / "RECORD").write_text("")
    return d


@pytest.fixture
def installed(plugin_dir, monkeypatch):
    monkeypatch.syspath_prepend(str(plugin_dir))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(plugin_dir)] + sys.path))
    importlib.invalidate_caches()
    plugins.clear_cache()
    yield plugin_dir
    plugins.clear_cache()


def test_registry_finds_the_entry_point(installed):
    assert {"tinyq", "tinyq-plugin:tinyq"} <= set(plugins.names())
    q = plugins.get("tinyq-plugin:tinyq")
    assert q is plugins.get("tinyq") and q.graph_adapters().shared_rank == 4
    with pytest.raises(qesim.InputError, match="installed plug-ins: .*tinyq"):
        plugins.get("nope")
    with pytest.raises(qesim.InputError, match="failed to load"):
        plugins.get("broken")


def test_estimate_and_sweep_cost_the_declared_adapters(installed, capsys):
    r = qesim.estimate("qwen2vl-2b", "flightllm-u280", setting="W4A8", method="tinyq", stage="decode")
    lin = next(o for o in r.graph.ops if o.name == "layer.q_proj")
    assert lin.adapters is not None and lin.adapters.shared_rank == 4 and r.graph.method == "tinyq"
    plain = qesim.estimate("qwen2vl-2b", "flightllm-u280", setting="W4A8", method="rtn", stage="decode")
    assert r.latency_s > plain.latency_s and r.speedup_vs_fp16 < plain.speedup_vs_fp16
    assert main(["estimate", "--model", "qwen2vl-2b", "--setting", "W4A8", "--method", "tinyq-plugin:tinyq",
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["method"] == "tinyq-plugin:tinyq"
    df = qesim.sweep({"base": "flightllm-u280", "workload": {"model": "qwen2vl-2b", "setting": "W4A8",
                                                           "method": ["rtn", "tinyq"]}})
    assert list(df["method"]) == ["rtn", "tinyq"] and df["latency_s"].iloc[1] > df["latency_s"].iloc[0]


def test_accuracy_and_quantize_export_run_the_plugin(installed, tmp_path, capsys):
    pytest.importorskip("torch")
    out = tmp_path / "acc"
    assert main(["accuracy", "--model", "minilm-l6", "--methods", "rtn,tinyq", "--settings", "W4A8", "--quick",
                 "--calib", "4", "--eval", "8", "--quiet", "--out", str(out)]) == 0
    rows = list(csv.DictReader(open(out / "accuracy.csv")))
    vals = {r["method"]: float(r["value"]) for r in rows if r["setting"] == "W4A8"}
    assert {"rtn", "tinyq"} <= set(vals)
    g = tmp_path / "g.json"
    assert main(["quantize", "--model", "minilm-l6", "--method", "tinyq", "--setting", "W4A8", "--quick",
                 "--export", str(g)]) == 0
    graph = json.loads(g.read_text())
    assert graph["method"] == "tinyq"
    q = next(o for o in graph["ops"] if o["name"] == "layer.q_proj")
    assert q["adapters"]["shared_rank"] == 4  # measured from the quantized modules
    capsys.readouterr()
    assert main(["estimate", "--model", str(g), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["method"] == "tinyq"


def test_export_from_a_plain_module_with_a_shape_map():
    torch = pytest.importorskip("torch")
    import torch.nn as nn

    from qesim.graph.presets import ModelSpec
    from qesim.quant.export import export_graph
    from qesim.quant.qlinear import QuantLinear

    class Block(nn.Module):
        def __init__(self, d, f, rank):
            super().__init__()
            self.wq, self.wk, self.wv, self.wo = (nn.Linear(d, d, bias=False) for _ in range(4))
            self.w1, self.w3 = nn.Linear(d, f, bias=False), nn.Linear(d, f, bias=False)
            self.w2 = QuantLinear(torch.zeros(d, f), None, 8, A=torch.zeros(f, rank), B=torch.zeros(rank, d))

    class Net(nn.Module):  # no .config, names qesim does not know
        def __init__(self):
            super().__init__()
            self.blocks = nn.ModuleList(Block(64, 128, 6) for _ in range(2))

    spec = ModelSpec(name="toy", hidden=64, intermediate=128, layers=2, heads=4, kv_heads=4, head_dim=16, vocab=100)
    shape_map = {"blocks.*.wq": "layer.q_proj", "blocks.*.wk": "layer.k_proj", "blocks.*.wv": "layer.v_proj",
                 "blocks.*.wo": "layer.o_proj", "blocks.*.w1": "layer.gate_proj", "blocks.*.w3": "layer.up_proj",
                 "blocks.*.w2": "layer.down_proj"}
    with pytest.raises(qesim.InputError, match="spec="):
        export_graph(Net(), method="rtn", setting="W4A8", name="toy")
    g = export_graph(Net(), method="lqer", setting="W4A8", name="toy", spec=spec, linear_map=shape_map)
    ops = {o.name: o for o in g.ops}
    assert ops["layer.down_proj"].adapters.shared_rank == 6 and ops["layer.q_proj"].adapters is None
    assert ops["layer.q_proj"].in_features == 64 and ops["layer.down_proj"].repeat == 2
    assert qesim.estimate(g, "flightllm-u280").latency_s > 0
    with pytest.raises(qesim.InputError, match="matches no module"):
        export_graph(Net(), method="rtn", setting="W4A8", name="toy", spec=spec, linear_map={"nope.*": "layer.q_proj"})
