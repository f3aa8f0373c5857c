"""Fake-quant primitives against hand-computed tensors (quantizer-facts.md §1)."""

import pytest

torch = pytest.importorskip("torch")

from qesim.quant.primitives import parse_setting, quantize_act, quantize_weight  # noqa: E402


def test_symmetric_per_channel_hand_computed():
    W = torch.tensor([[1.0, -2.0, 0.5, 3.0], [0.0, 0.0, 0.0, 0.0]])
    # row 0: scale = 3/7; W/scale = [2.333, -4.667, 1.1667, 7] -> [2, -5, 1, 7]
    s = 3.0 / 7
    want0 = torch.tensor([2.0, -5.0, 1.0, 7.0]) * s
    q = quantize_weight(W, 4)
    assert torch.allclose(q[0], want0, atol=1e-6)
    assert torch.equal(q[1], torch.zeros(4))  # all-zero row: scale clamps to 1e-5, stays zero
    assert q.shape == W.shape and q.dtype == W.dtype


def test_symmetric_never_uses_most_negative_code():
    W = torch.tensor([[-1.0, 0.3, 0.2, 0.1]])
    q = quantize_weight(W, 3)  # qmax = 3, scale = 1/3
    assert q.min().item() == pytest.approx(-1.0)
    codes = torch.round(q / (1 / 3))
    assert codes.min() >= -3


def test_asymmetric_hand_computed():
    W = torch.tensor([[1.0, -2.0, 0.0, 3.0]])
    # 2 bits: max_int 3, scale = 5/3, zero = clamp(-round(-1.2), 0, 3) = 1
    # W/scale = [0.6, -1.2, 0, 1.8] -> round [1, -1, 0, 2] + 1 = [2, 0, 1, 3] -> -1 -> [1, -1, 0, 2]
    q = quantize_weight(W, 2, symmetric=False)
    assert torch.allclose(q, torch.tensor([[1.0, -1.0, 0.0, 2.0]]) * (5 / 3), atol=1e-6)


def test_asymmetric_groups_are_independent():
    torch.manual_seed(0)
    a = torch.randn(3, 8)
    b = torch.randn(3, 8) * 100
    W = torch.cat([a, b], dim=1)
    q = quantize_weight(W, 4, group_size=8, symmetric=False)
    assert torch.allclose(q[:, :8], quantize_weight(a, 4, symmetric=False))
    assert torch.allclose(q[:, 8:], quantize_weight(b, 4, symmetric=False))
    # the small group keeps its own fine grid: error far below the big group's step
    assert (q[:, :8] - a).abs().max() < 0.5


def test_ragged_last_group():
    torch.manual_seed(1)
    W = torch.randn(2, 12)
    q = quantize_weight(W, 3, group_size=8, symmetric=False)
    assert torch.allclose(q[:, :8], quantize_weight(W[:, :8], 3, symmetric=False))
    assert torch.allclose(q[:, 8:], quantize_weight(W[:, 8:], 3, symmetric=False))


def test_levels_count():
    torch.manual_seed(0)
    W = torch.randn(1, 4096)
    assert torch.unique(quantize_weight(W, 3)).numel() <= 7  # symmetric: 2*3+1 levels
    assert torch.unique(quantize_weight(W, 3, symmetric=False)).numel() <= 8


def test_act_per_token_hand_computed():
    x = torch.tensor([[[0.1, -1.27, 0.5], [2.0, 1.0, -0.26]]])
    q = quantize_act(x, 8)
    # token 0: scale 0.01 -> exact; token 1: scale 2/127
    assert torch.allclose(q[0, 0], x[0, 0], atol=1e-6)
    s = 2 / 127
    assert torch.allclose(q[0, 1], torch.round(x[0, 1] / s) * s, atol=1e-6)
    assert q.shape == x.shape


def test_act_identity_at_16_bits():
    x = torch.randn(4, 5)
    assert quantize_act(x, 16) is x
    assert quantize_weight(x, 16) is x


def test_act_low_bits_error_grows():
    torch.manual_seed(0)
    x = torch.randn(64, 256)
    e4 = (quantize_act(x, 4) - x).pow(2).mean()
    e6 = (quantize_act(x, 6) - x).pow(2).mean()
    e8 = (quantize_act(x, 8) - x).pow(2).mean()
    assert e8 < e6 < e4


def test_parse_setting():
    s = parse_setting("W3A16")
    assert (s.w_bits, s.a_bits, s.group_size, s.symmetric) == (3, 16, 128, False)
    s = parse_setting("w4a6")
    assert (s.w_bits, s.a_bits, s.group_size, s.symmetric) == (4, 6, -1, True)
    with pytest.raises(ValueError):
        parse_setting("W4")
