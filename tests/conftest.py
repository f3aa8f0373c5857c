import pytest

from qesim.hw.config import HardwareConfig

TOY = {
    "name": "toy",
    "frequency_mhz": 1000,
    "mpe": {
        "mm": [{"w_bits": 8, "a_bits": 8, "macs_per_cycle": 64}, {"w_bits": 16, "a_bits": 16, "macs_per_cycle": 32}],
        "mv": [{"w_bits": 8, "a_bits": 8, "macs_per_cycle": 16}, {"w_bits": 16, "a_bits": 16, "macs_per_cycle": 8}],
        "mm_array": {"m": 4, "k": 4, "n": 4},
        "mv_array": {"m": 1, "k": 4, "n": 4},
        "mv_max_rows": 1,
    },
    "sfu": {"lanes": 4},
    "hbm": {"bandwidth_gbps": 16, "efficiency": 1.0, "capacity_gib": 1},
    "buffers": {"weight_bytes": 1 << 20, "act_bytes": 1 << 20, "out_bytes": 1 << 20},
    "policy": {
        "prefill": {"activations_offchip": True, "compute_hidden": False},
        "decode": {"activations_offchip": True, "compute_hidden": False},
        "count_channel_scales": False,
        "count_group_metadata": False,
    },
}


@pytest.fixture
def toy_hw() -> HardwareConfig:
    """1 GHz, 16 B/cycle HBM, 64 INT8 MAC/cycle on a 4x4x4 array, huge buffers."""
    return HardwareConfig.model_validate(TOY)


def make_tiny_llama(*, vocab: int = 256, intermediate: int = 128, max_positions: int = 256, outliers: bool = True):
    """A random 2-layer Llama (hidden 64, 4 heads, 2 KV heads) after ``torch.manual_seed(0)``; with
    ``outliers`` every layer's input norm scales channels 3, 17, 50 by 40 (planted outlier input
    channels for q/k/v and gate/up, what the quantizers' smoothing and low-rank terms address)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=64, intermediate_size=intermediate, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=max_positions)
    m = LlamaForCausalLM(cfg).eval()
    if outliers:
        with torch.no_grad():
            for layer in m.model.layers:
                w = torch.ones(64)
                w[[3, 17, 50]] = 40.0
                layer.input_layernorm.weight.copy_(w)
    return m


@pytest.fixture(scope="session")
def tiny_llama():
    """:func:`make_tiny_llama` (a factory, so module-scoped fixtures can build their own size)."""
    return make_tiny_llama


#: file contents no input reader may accept, whatever the format (YAML hardware configs, JSON graphs,
#: sweep spaces), with the words the one-line error must contain (qesim.safeio)
UNREADABLE = [
    (bytes(range(256)) * 4, "not a text file"),
    (b"\x00\x01name: x", "not a text file"),
    (b"\x00\x00", "not a text file"),
    (b"[" * 100000 + b"]" * 100000, "nested deeper than 64"),
]


@pytest.fixture(params=UNREADABLE, ids=["binary", "nul-prefixed", "nul-only", "deep-nesting"])
def unreadable(request) -> tuple[bytes, str]:
    """(file content, expected words of the error) of an unreadable input file."""
    return request.param
