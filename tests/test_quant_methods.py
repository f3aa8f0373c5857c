"""Every method lowers the output error below RTN on a synthetic decoder with planted outlier
channels; GPTQ/LQER/ASER/SmoothQuant/AWQ mechanics checked on small hand-made cases."""

import math

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from qesim.quant.apply import quantize_model  # noqa: E402
from qesim.quant.calib import Calibration  # noqa: E402
from qesim.quant.methods.gptq import gptq_quantize  # noqa: E402
from qesim.quant.model_utils import get_arch, run_block  # noqa: E402
from qesim.quant.primitives import parse_setting, quantize_act  # noqa: E402
from qesim.quant.qlinear import QuantLinear  # noqa: E402

BASELINES = ["smoothquant", "awq", "gptq", "lqer", "aser"]


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
    m = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():  # planted outlier input channels (static) for q/k/v and gate/up
        for layer in m.model.layers:
            w = torch.ones(64)
            w[[3, 17, 50]] = 40.0
            layer.input_layernorm.weight.copy_(w)
            w = torch.ones(64)
            w[[7, 60]] = 25.0
            layer.post_attention_layernorm.weight.copy_(w)
    ids = torch.randint(0, 256, (8, 32), generator=torch.Generator().manual_seed(1))
    cal = Calibration.build(m, [{"input_ids": ids[i:i + 2]} for i in range(0, 6, 2)])
    held = Calibration.build(m, [{"input_ids": ids[6:8]}], keep_linear_inputs=False)
    return m, cal, held


def _block_err(fp, q, held):
    a_fp, a_q = get_arch(fp), get_arch(q)
    tot = 0.0
    for i in range(a_fp.num_blocks):
        ref, _, _ = run_block(a_fp.blocks[i], held.block_inputs[i])
        out, _, _ = run_block(a_q.blocks[i], held.block_inputs[i])
        x = held.block_inputs[i][0].hidden
        tot += float((out[0].hidden - ref[0].hidden).norm() / (ref[0].hidden - x).norm())
    return tot / a_fp.num_blocks


@pytest.mark.parametrize("setting", ["W4A8", "W3A16"])
def test_every_method_beats_rtn_on_outlier_layer(tiny, setting):
    m, cal, held = tiny
    rtn, _ = quantize_model(m, "rtn", setting, cal)
    e_rtn = _block_err(m, rtn, held)
    assert e_rtn > 0.05  # the planted outliers make RTN clearly lossy
    for meth in BASELINES:
        q, rep = quantize_model(m, meth, setting, cal, rank=8)
        e = _block_err(m, q, held)
        assert e < e_rtn, f"{meth} {setting}: {e:.4f} !< rtn {e_rtn:.4f}"
        # only decoder linears replaced; FP model untouched
        assert isinstance(get_arch(q).blocks[0].self_attn.q_proj, QuantLinear)
        assert isinstance(m.model.layers[0].self_attn.q_proj, torch.nn.Linear)
        assert isinstance(q.lm_head, torch.nn.Linear)


def test_quantized_model_matches_rtn_formula(tiny):
    m, cal, held = tiny
    q, _ = quantize_model(m, "rtn", "W4A8", cal)
    ql = q.model.layers[1].mlp.down_proj
    lin = m.model.layers[1].mlp.down_proj
    x = torch.randn(5, lin.in_features)
    st = parse_setting("W4A8")
    want = torch.nn.functional.linear(quantize_act(x, 8), st.wq(lin.weight))
    assert torch.allclose(ql(x), want, atol=1e-5)


def test_smoothquant_folds_without_changing_fp_function(tiny):
    """With 16-bit weights and activations the folded model computes the same function."""
    m, cal, held = tiny
    q, _ = quantize_model(m, "smoothquant", "W16A16", cal)
    assert not torch.allclose(q.model.layers[0].input_layernorm.weight, m.model.layers[0].input_layernorm.weight)
    ids = torch.randint(0, 256, (1, 16))
    with torch.no_grad():
        assert torch.allclose(q(input_ids=ids).logits, m(input_ids=ids).logits, atol=1e-3, rtol=1e-3)


def test_awq_fold_is_exact_at_16_bits(tiny):
    m, cal, _ = tiny
    q, _ = quantize_model(m, "awq", "W16A16", cal)
    ids = torch.randint(0, 256, (1, 16))
    with torch.no_grad():
        assert torch.allclose(q(input_ids=ids).logits, m(input_ids=ids).logits, atol=1e-3, rtol=1e-3)


def test_gptq_beats_rtn_on_its_objective_and_falls_back():
    torch.manual_seed(0)
    W = torch.randn(32, 64)
    X = torch.randn(512, 64) @ torch.randn(64, 64)  # correlated inputs
    for name in ["W3A8", "W3A16"]:
        st = parse_setting(name, group_size=32 if name.endswith("16") else None)
        Q, status = gptq_quantize(W, X, st)
        assert status == "ok"
        e_g = (X @ (W - Q).T).norm()
        from qesim.quant.methods.gptq import rtn_on_grid

        e_r = min((X @ (W - st.wq(W)).T).norm(), (X @ (W - rtn_on_grid(W, st)).T).norm())
        assert e_g < 0.9 * e_r
        # every output is on the setting's grid: re-quantizing a GPTQ row/group changes little
    bad = torch.full((16, 64), float("nan"))
    Q, status = gptq_quantize(W, bad, parse_setting("W4A8"))
    assert status.startswith("rtn-fallback")
    from qesim.quant.methods.gptq import rtn_on_grid

    assert torch.allclose(Q, rtn_on_grid(W, parse_setting("W4A8")))  # RTN on GPTQ's own grid


def test_gptq_outputs_lie_on_its_reference_grid_per_channel():
    """GPTQ's quant.py grid: sym scale = 2 max|w| / (2^b - 1), levels [-2^(b-1), 2^(b-1)-1] * scale."""
    torch.manual_seed(1)
    W = torch.randn(8, 32)
    X = torch.randn(256, 32)
    st = parse_setting("W4A8")
    Q, _ = gptq_quantize(W, X, st)
    scale = 2 * W.abs().amax(1, keepdim=True) / 15
    codes = Q / scale
    assert torch.allclose(codes, codes.round(), atol=1e-4)
    assert codes.min() >= -8 and codes.max() <= 7
    Qm, _ = gptq_quantize(W, X, st, grid="mbq")  # the MBQ grid of the other methods
    cm = Qm / (W.abs().amax(1, keepdim=True) / 7)
    assert torch.allclose(cm, cm.round(), atol=1e-4) and cm.abs().max() <= 7 + 1e-4


def test_gptq_reference_grid_matches_quant_py_formula():
    """rtn_on_grid reproduces IST-DASLab/gptq quant.py (asym: zero = round(-xmin/scale), range incl. 0)."""
    from qesim.quant.methods.gptq import rtn_on_grid

    torch.manual_seed(2)
    W = torch.randn(4, 16) + 0.5
    st = parse_setting("W3A16", group_size=8)
    Q = rtn_on_grid(W, st)
    for g in range(2):
        w = W[:, 8 * g:8 * g + 8]
        xmin = torch.minimum(w.min(1).values, torch.zeros(4))
        xmax = torch.maximum(w.max(1).values, torch.zeros(4))
        scale = ((xmax - xmin) / 7)[:, None]
        zero = torch.round(-xmin[:, None] / scale)
        ref = scale * (torch.clamp(torch.round(w / scale) + zero, 0, 7) - zero)
        assert torch.allclose(Q[:, 8 * g:8 * g + 8], ref)


def test_awq_clip_search_shrinks_an_outlier_row():
    from qesim.quant.methods.awq import apply_clip, clip_search

    torch.manual_seed(3)
    W = torch.randn(4, 64)
    W[0, 5] = 6.0  # one large weight: clipping it lowers the output error of the other 63
    X = torch.randn(512, 64)
    st = parse_setting("W3A8")
    mv = clip_search(W, X, st)
    assert mv.shape == (4, 1) and float(mv[0, 0]) < 6.0
    Wc = apply_clip(W, mv, st.group_size)
    err = lambda w: float((X @ (st.wq(w) - W).T).pow(2).mean())  # noqa: E731
    assert err(Wc) <= err(W)


def test_lowrank_methods_use_rank_and_improve_with_rank(tiny):
    m, cal, held = tiny
    errs = {}
    for r in (4, 16):
        q, _ = quantize_model(m, "lqer", "W3A16", cal, rank=r)
        assert q.model.layers[0].mlp.up_proj.A.shape[1] == r
        errs[r] = _block_err(m, q, held)
    assert errs[16] < errs[4]
    q, _ = quantize_model(m, "aser", "W3A16", cal, rank=16)
    assert _block_err(m, q, held) < errs[16] * 1.05 or math.isclose(errs[16], 0)


def test_sequential_mode_runs(tiny):
    m, cal, held = tiny
    q, rep = quantize_model(m, "gptq", "W4A8", cal)
    assert rep["sequential"]  # GPTQ's reference default
    _, rep2 = quantize_model(m, "lqer", "W4A8", cal)
    assert not rep2["sequential"]
    rtn, _ = quantize_model(m, "rtn", "W4A8", cal)
    assert _block_err(m, q, held) < _block_err(m, rtn, held)


def test_unknown_method_rejected(tiny):
    m, cal, _ = tiny
    with pytest.raises(ValueError):
        quantize_model(m, "nope", "W4A8", cal)
