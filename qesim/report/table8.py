"""Reproduction of QE Table 8 (NPU speedup of QE linears over fp16, prefill, s = 128).

Every cell comes from the general analytical model applied to two single-linear graphs, the fp16
baseline (W16A16, no adapters) and the quantized linear with QE adapters (32 shared + 8 routed
experts of rank 32, top-1, router), on one hardware config. Nothing here knows the paper's
values except the comparison columns.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from importlib import resources
from typing import Callable, Optional

import pandas as pd

from qesim.graph.builders import single_linear_graph
from qesim.graph.ir import LayerGraph, LinearOp
from qesim.hw.config import HardwareConfig
from qesim.perf.model import estimate_graph, graph_cycles

CSV_COLUMNS = ["in_features", "out_features", "setting", "stage", "seq_len", "paper_speedup", "qesim_speedup",
               "error_pct"]


def paper_table8() -> pd.DataFrame:
    """The published Table 8 (copied from shared/reference)."""
    text = resources.files("qesim.report").joinpath("data/qe_table8_npu_speedup.csv").read_text()
    return pd.read_csv(io.StringIO(text))


GraphTransform = Callable[[LayerGraph], LayerGraph]


def _out_at_act_bits(g: LayerGraph) -> LayerGraph:
    """Flip: the quantized linear writes its output at the activation precision (not fp16)."""
    g = g.model_copy(deep=True)
    for op in g.ops:
        if isinstance(op, LinearOp) and op.act_bits < 16:
            op.out_bits = op.act_bits
    return g


@dataclass(frozen=True)
class Assumption:
    """One modelling assumption of a config, and how to flip it."""

    key: str
    label: str
    hw_path: Optional[str] = None  # boolean field of the config to toggle
    graph_transform: Optional[GraphTransform] = None
    flipped_label: str = ""


ASSUMPTIONS = [
    Assumption("compute_hidden", "prefill compute hidden behind memory", hw_path="policy.prefill.compute_hidden"),
    Assumption("activations_offchip", "activations streamed off-chip (x in, y out)",
               hw_path="policy.prefill.activations_offchip"),
    Assumption("adapters_resident", "QE adapters + router resident on chip", hw_path="policy.adapters_resident"),
    Assumption("group_metadata", "group-wise scales/zeros charged (W3A16 g128)", hw_path="policy.count_group_metadata"),
    Assumption("channel_scales", "per-channel / per-token scales charged", hw_path="policy.count_channel_scales"),
    Assumption("output_fp16", "output written in fp16", graph_transform=_out_at_act_bits,
               flipped_label="output written at the activation bits (A6/A8 cells)"),
]


def _get(hw: HardwareConfig, path: str):
    cur = hw
    for k in path.split("."):
        cur = getattr(cur, k)
    return cur


def _cell(hw: HardwareConfig, in_f: int, out_f: int, setting: str, stage: str, tokens: int,
          method: str = "qe", transform: Optional[GraphTransform] = None) -> tuple[float, str]:
    """(speedup, bound of the quantized op) of one cell: fp16 single linear over the quantized one."""
    base = single_linear_graph(in_f, out_f, tokens=tokens, stage=stage)
    quant = single_linear_graph(in_f, out_f, tokens=tokens, setting=setting, method=method, stage=stage)
    if transform is not None:
        base, quant = transform(base), transform(quant)
    q = estimate_graph(quant, hw)
    return graph_cycles(base, hw) / q.cycles, q.ops["bound"].iloc[0]


def cell_speedup(hw: HardwareConfig, in_f: int, out_f: int, setting: str, stage: str, tokens: int,
                 method: str = "qe", transform: Optional[GraphTransform] = None) -> float:
    """Speedup of one cell: fp16 single linear over the quantized one, same config."""
    return _cell(hw, in_f, out_f, setting, stage, tokens, method, transform)[0]


def reproduce(hw: HardwareConfig, stage: str = "prefill", tokens: Optional[int] = None,
              transform: Optional[GraphTransform] = None) -> pd.DataFrame:
    """One row per paper cell: the contract columns (+ bound of the quantized op)."""
    ref = paper_table8()
    rows = []
    for r in ref.itertuples():
        s = tokens if tokens is not None else int(r.seq_len)
        q, bound = _cell(hw, int(r.in_features), int(r.out_features), r.setting, stage, s, transform=transform)
        paper = float(r.paper_speedup) if stage == r.stage and s == int(r.seq_len) else float("nan")
        rows.append(dict(in_features=int(r.in_features), out_features=int(r.out_features), setting=r.setting,
                         stage=stage, seq_len=s, paper_speedup=paper, qesim_speedup=round(q, 4),
                         error_pct=round((q - paper) / paper * 100, 3) if paper == paper else float("nan"),
                         bound=bound))
    return pd.DataFrame(rows)


def sensitivity(hw: HardwareConfig) -> pd.DataFrame:
    """The 9 prefill cells with each assumption of ``hw`` flipped in turn (one row per flip)."""
    ref = paper_table8()
    cells = [f"{r.in_features}x{r.out_features} {r.setting}" for r in ref.itertuples()]
    out = []
    base = reproduce(hw)
    out.append(dict(assumption="(none: config as is)", value="", **dict(zip(cells, base.qesim_speedup)),
                    max_abs_error_pct=float(base.error_pct.abs().max())))
    for a in ASSUMPTIONS:
        if a.hw_path is not None:
            cur = bool(_get(hw, a.hw_path))
            flipped = hw.with_updates({a.hw_path: not cur})
            df = reproduce(flipped)
            value = f"{a.hw_path}: {cur} -> {not cur}"
        else:
            df = reproduce(hw, transform=a.graph_transform)
            value = a.flipped_label
        out.append(dict(assumption=a.label, value=value, **dict(zip(cells, df.qesim_speedup)),
                        max_abs_error_pct=float(df.error_pct.abs().max())))
    return pd.DataFrame(out)


def orderings(df: pd.DataFrame) -> list[tuple[str, bool]]:
    """The paper's orderings: per shape W3A16 > W4A6 >= W4A8; for W4A*, 18944x3584 >= 3584x18944."""
    res = []
    for (i, o), g in df.groupby(["in_features", "out_features"]):
        v = dict(zip(g.setting, g.qesim_speedup))
        res.append((f"{i}x{o}: W3A16 > W4A6 >= W4A8", bool(v["W3A16"] > v["W4A6"] >= v["W4A8"])))
    for st in ("W4A6", "W4A8"):
        g = df[df.setting == st]
        a = float(g[(g.in_features == 18944) & (g.out_features == 3584)].qesim_speedup.iloc[0])
        b = float(g[(g.in_features == 3584) & (g.out_features == 18944)].qesim_speedup.iloc[0])
        res.append((f"{st}: 18944x3584 >= 3584x18944", bool(a >= b)))
    return res


def linear_breakdown(hw: HardwareConfig, in_f: int, out_f: int, setting: str, tokens: int = 128) -> dict:
    """Cycles split of one prefill cell (for the explanatory paragraph)."""
    out = {}
    for name, g in (("fp16", single_linear_graph(in_f, out_f, tokens=tokens)),
                    (setting, single_linear_graph(in_f, out_f, tokens=tokens, setting=setting, method="qe"))):
        r = estimate_graph(g, hw).ops.iloc[0]
        out[name] = dict(cycles=float(r.cycles), mpe=float(r.mpe_cycles), hbm=float(r.hbm_cycles), bound=r.bound,
                         bytes=float(r.bytes))
    return out
