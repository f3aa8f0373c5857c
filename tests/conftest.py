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
