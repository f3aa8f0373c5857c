"""benchmarks/bench_cycle.py runs and prints one JSON object with its keys."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_cycle.py"


def test_bench_cycle_json_small():
    out = subprocess.run([sys.executable, str(BENCH), "--json", "--model", "qwen2vl-2b", "--decode-steps", "2"],
                         capture_output=True, text=True, timeout=300, check=True)
    d = json.loads(out.stdout)
    for k in ("wall_s", "events", "events_per_s", "cpu_s", "simulated_cycles", "simulated_ttft_s", "decode_steps"):
        assert k in d, k
    assert d["decode_steps"] == 2 and d["events"] > 1000 and d["simulated_cycles"] > 0
    assert d["simulated_ttft_s"] > 0 and d["simulated_decode_s"] > 0
