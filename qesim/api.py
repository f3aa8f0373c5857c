"""The public Python API: ``qesim.estimate``, ``qesim.load_hw``, ``qesim.build_graph``,
``qesim.sweep``, ``qesim.presets``. The CLI (``qesim estimate``, ``qesim sweep``) is a thin shell
over these functions: ``qesim estimate ... --json`` prints ``qesim.estimate(...).to_dict()``.

    >>> import qesim
    >>> r = qesim.estimate("qwen2vl-7b", "flightllm-u280", setting="W4A8", method="qe", stage="decode")
    >>> r.latency_s, r.tokens_per_s, r.bound, r.speedup_vs_fp16
    >>> r.ops            # a pandas DataFrame, one row per op, units in the column names
    >>> r.to_dict()      # the CLI's --json object

Units: seconds (``*_s``), cycles of the config's clock (``*cycles*``), bytes (``*bytes*``),
multiply-accumulates (``macs*``).

The fp16 baseline (``speedup_vs_fp16``) is :func:`qesim.perf.estimate.fp16_baseline`, the one rule:
the same workload at ``W16A16``, method ``none``, dense (density 1.0), on the same hardware and
engine. A layer-graph JSON carries its own bits and adapters, so it has no baseline. Engines come
from the registry :mod:`qesim.perf.engines`.
"""

from __future__ import annotations

import html
import inspect
import json
from pathlib import Path
from typing import Any, Mapping, Optional, Union

from qesim.errors import InputError

__all__ = ["estimate", "load_hw", "build_graph", "sweep", "presets", "Estimate"]

def _engine_names() -> list:
    from qesim.perf.engines import engine_names

    return engine_names()

#: GraphEstimate.ops columns -> public names with units (per call = one execution of the op;
#: total = times ``repeat``)
_OPS_UNITS = {
    "cycles": "cycles_per_call", "total_cycles": "cycles_total", "mpe_cycles": "mpe_cycles_per_call",
    "mpe_busy_cycles": "mpe_busy_cycles_per_call", "sfu_cycles": "sfu_cycles_per_call",
    "hbm_cycles": "hbm_cycles_per_call", "ddr_cycles": "ddr_cycles_per_call", "hbm_bytes": "hbm_bytes_per_call",
    "ddr_bytes": "ddr_bytes_per_call", "bytes": "bytes_per_call", "macs": "macs_per_call", "steps": "steps_per_call",
}


# ----------------------------------------------------------------------------- inputs
def load_hw(hw: Any):
    """A :class:`~qesim.hw.config.HardwareConfig` from a preset name (``'flightllm-u280'``), a YAML
    path, a mapping of fields, or a HardwareConfig (returned as is)."""
    from qesim.hw.config import HardwareConfig
    from qesim.hw.loader import config_from_dict, load_hw as _load

    if isinstance(hw, HardwareConfig):
        return hw
    if isinstance(hw, Mapping):
        return config_from_dict(dict(hw), "hardware mapping")
    if isinstance(hw, (str, Path)):
        return _load(str(hw))
    raise InputError(f"hw must be a preset name, a YAML path, a mapping or a HardwareConfig (got {type(hw).__name__})")


def _graph_file(model: Any) -> Optional[Path]:
    """The path if ``model`` names a layer-graph JSON file (not a preset, not an HF config)."""
    if not isinstance(model, (str, Path)):
        return None
    p = Path(model)
    if p.suffix == ".json" and not p.exists():
        raise InputError(f"{model}: file not found")
    if not p.is_file():
        return None
    from qesim.safeio import parse_json

    try:
        head = parse_json(p)
    except InputError:
        return p  # LayerGraph.from_json reports the problem with the file and line
    return p if isinstance(head, dict) and "ops" in head and "model_type" not in head else None


def is_graph(model: Any) -> bool:
    """Whether ``model`` is a layer graph (a LayerGraph, or a path to a layer-graph JSON file)."""
    from qesim.graph.ir import LayerGraph

    return isinstance(model, LayerGraph) or _graph_file(model) is not None


_VLM_KWARGS = ("images", "image_size", "quantize")


def _build_kwargs() -> set:
    from qesim.graph.builders import build_graph as bg

    return {k for k in inspect.signature(bg).parameters if k not in ("model",)}


def build_graph(model: Any, *, stage: str = "prefill", seq_len: int = 128, context_len: Optional[int] = None,
                batch: int = 1, setting: str = "W16A16", method: str = "none", **workload):
    """The :class:`~qesim.graph.ir.LayerGraph` of ``model`` at one stage.

    ``model``: a preset name, an HF ``config.json`` or a directory holding one, an HF config
    mapping, a :class:`~qesim.graph.presets.ModelSpec`, a layer-graph JSON path or a LayerGraph
    (the last two returned as they are). ``context_len`` None = 0 for prefill, 512 for decode (the
    CLI's default). ``workload``: any other :func:`qesim.graph.builders.build_graph` argument
    (``density``, ``group_size``, ``kv_bits``, ``adapter_defaults``, ``linear_overrides``, ...).
    """
    from qesim.graph.builders import build_graph as bg
    from qesim.graph.ir import LayerGraph

    if isinstance(model, LayerGraph):
        return model
    gf = _graph_file(model)
    if gf is not None:
        return LayerGraph.from_json(gf)
    # a whole vision-language request (qesim.graph.vision): images, image_size (WxH or (w, h)), quantize (L,V,M)
    vlm = {k: workload.pop(k) for k in _VLM_KWARGS if k in workload}
    unknown = sorted(set(workload) - _build_kwargs())
    if unknown:
        raise InputError(f"unknown workload argument(s) {', '.join(unknown)}; known: "
                         f"{', '.join(sorted(_build_kwargs()))}")
    if isinstance(model, Mapping):
        from qesim.graph.presets import get_spec

        model = get_spec(model)
    if isinstance(model, Path):
        model = str(model)
    if setting is None or method is None:
        raise InputError("setting and method must be given (W{w}A{a}, e.g. W16A16; a method name, e.g. none)")
    ctx = context_len if context_len is not None else (512 if stage == "decode" else 0)
    if vlm.get("images") is not None or vlm.get("quantize") is not None:
        from qesim.graph.vision import build_vlm_graph, parse_image_size

        size = vlm.get("image_size") or (448, 448)
        return build_vlm_graph(model, stage=stage, images=vlm.get("images") or 0,
                               image_size=parse_image_size(size) if isinstance(size, str) else tuple(size),
                               text_tokens=seq_len, context_len=ctx, batch=batch, setting=setting, method=method,
                               quantize=vlm.get("quantize"), **workload)
    return bg(model, stage=stage, seq_len=seq_len, context_len=ctx, batch=batch, setting=setting, method=method,
              **workload)


def _run_engine(graph, hw, engine: str):
    from qesim.perf.engines import run_engine  # the engine registry

    return run_engine(engine, graph, hw)


# ----------------------------------------------------------------------------- the result
class Estimate:
    """One pass of one model on one hardware config: totals, per-op table, fp16 speedup.

    Attributes: ``graph`` (LayerGraph), ``hw`` (HardwareConfig), ``engine``, ``raw`` (the
    engine's GraphEstimate), ``baseline`` (the fp16 baseline's GraphEstimate, or None).
    """

    def __init__(self, graph, hw, engine: str, raw, baseline=None, from_graph: bool = False):
        self.graph, self.hw, self.engine, self.raw, self.baseline = graph, hw, engine, raw, baseline
        self.from_graph = from_graph
        self._footprint = None
        self._dict: Optional[dict] = None

    # --- totals -------------------------------------------------------------------------
    @property
    def latency_s(self) -> float:
        """Seconds for the pass."""
        return float(self.raw.latency_s)

    @property
    def cycles(self) -> float:
        """Cycles of the config's clock for the pass."""
        return float(self.raw.cycles)

    @property
    def tokens_per_s(self) -> float:
        """Tokens processed per second (prefill: batch x seq_len; decode: batch)."""
        return float(self.raw.tokens_per_s)

    @property
    def bound(self) -> str:
        """The resource with the most busy cycles over the pass (compute, sfu, hbm, ddr)."""
        return self.raw.bound

    @property
    def bytes_by_memory(self) -> dict:
        """Off-chip bytes moved per memory over the pass."""
        return dict(self.raw.bytes_by_memory)

    @property
    def utilization(self) -> dict:
        """Busy cycles / pass cycles per resource."""
        return self.raw.utilization()

    @property
    def warnings(self) -> list:
        """The engine's warnings, plus 'does not fit in memory ...' when the footprint exceeds a capacity."""
        w = self.footprint.warning()
        return list(self.raw.warnings) + ([w] if w else [])

    @property
    def footprint(self):
        """Resident bytes per memory (weights, embeddings, adapters, KV cache, activations) against
        the capacities: a :class:`qesim.perf.footprint.Footprint` (``.bytes``, ``.fits``, ...)."""
        if self._footprint is None:
            from qesim.perf.footprint import footprint

            self._footprint = footprint(self.graph, self.hw)
        return self._footprint

    @property
    def fits(self) -> bool:
        """Whether the footprint fits every memory's capacity."""
        return self.footprint.fits

    @property
    def fp16_latency_s(self) -> Optional[float]:
        """Seconds of the fp16 baseline pass (see the module docstring); None for a layer graph."""
        if self.from_graph:
            return None
        if self.baseline is None:  # this pass is W16A16 already
            return self.latency_s
        return float(self.baseline.latency_s)

    @property
    def speedup_vs_fp16(self) -> Optional[float]:
        """fp16 baseline latency / this latency on the same hardware and engine (1.0 at W16A16;
        None for a layer graph, whose baseline is unknown)."""
        base = self.fp16_latency_s
        return None if base is None else base / self.latency_s

    # --- tables -------------------------------------------------------------------------
    @property
    def ops(self):
        """Per-op table (pandas DataFrame), one row per op in execution order; units in the column
        names (``*_per_call`` = one execution, ``*_total`` = times ``repeat``; ``time_s_total`` =
        seconds of the op over the pass)."""
        df = self.raw.ops.rename(columns=_OPS_UNITS).copy()
        df["time_s_total"] = df["cycles_total"] / self.hw.frequency_hz
        return df

    def to_dict(self) -> dict:
        """The ``qesim estimate --json`` object (JSON-serialisable)."""
        if self._dict is not None:
            return json.loads(json.dumps(self._dict))
        from qesim.perf.fusion import fusion_plan

        g = self.graph
        d = self.raw.to_dict()
        d.update(model=g.model, setting=g.setting, method=g.method, engine=self.engine, batch=g.batch,
                 seq_len=g.seq_len, context_len=g.context_len)
        # SFU ops fused into the MPE op that feeds them (policy.sfu_fusion): they have no row of their own
        d["fused_into"] = {g.ops[i].name: g.ops[f.into].name for i, f in fusion_plan(g, self.hw).items()}
        from qesim.graph.vision import annotate_components

        annotate_components(d, g, self.hw.frequency_hz)  # component per op; VLM request: image/text tokens, parts
        d.update(self.footprint.to_dict())  # footprint_bytes per memory, capacity_bytes, fits
        d["warnings"] = self.warnings
        if not self.from_graph:  # W16A16 is its own baseline: speedup 1.0
            d["fp16_latency_s"] = self.fp16_latency_s
            d["speedup_vs_fp16"] = self.speedup_vs_fp16
        if "energy" not in d:  # another engine (cycle model): the cost model's energy, re-timed with its op times
            from qesim.perf.terms.costing import cost_graph

            d["energy"] = cost_graph(g, self.hw, op_cycles=[o["cycles"] for o in d["ops"]]).to_dict()
            for k in ("energy_per_token_j", "avg_power_w", "area_mm2", "cost_usd"):
                d[k] = d["energy"][k]
        self._dict = d
        return json.loads(json.dumps(d))

    # --- display ------------------------------------------------------------------------
    def _summary(self) -> list[tuple[str, str]]:
        g = self.graph
        rows = [("model", g.model), ("hardware", self.hw.name), ("engine", self.engine),
                ("workload", f"{g.stage}, batch {g.batch}, seq {g.seq_len}, context {g.context_len}"),
                ("setting / method", f"{g.setting} / {g.method}"),
                ("latency", f"{self.latency_s * 1e3:.4g} ms"), ("tokens/s", f"{self.tokens_per_s:.4g}"),
                ("bound", self.bound)]
        sp = self.speedup_vs_fp16
        if sp is not None and g.setting != "W16A16":
            rows.append(("speedup vs fp16", f"{sp:.3f}x"))
        rows.append(("memory", ("fits: " if self.fits else "DOES NOT FIT: ") + self.footprint.describe()))
        return rows

    def __repr__(self) -> str:
        g = self.graph
        sp = self.speedup_vs_fp16
        tail = f", speedup_vs_fp16={sp:.3f}" if sp is not None and g.setting != "W16A16" else ""
        return (f"<qesim.Estimate {g.model} {g.stage} {g.setting}/{g.method} on {self.hw.name} [{self.engine}]: "
                f"latency_s={self.latency_s:.4g}, tokens_per_s={self.tokens_per_s:.4g}, bound={self.bound}{tail}, "
                f"fits={self.fits}>")

    def _repr_html_(self) -> str:
        esc = html.escape
        head = "".join(f"<tr><th style='text-align:left'>{esc(k)}</th><td>{esc(v)}</td></tr>"
                       for k, v in self._summary())
        ops = self.raw.to_dict()["ops"]
        total = self.cycles or 1.0
        top = sorted(ops, key=lambda o: -o["total_cycles"])[:8]
        body = "".join(f"<tr><td>{esc(o['name'])}</td><td>{esc(o['kind'])}</td><td>{o['repeat']}</td>"
                       f"<td>{o['total_cycles'] / total * 100:.1f}%</td><td>{esc(o['bound'])}</td></tr>" for o in top)
        return (f"<div><b>qesim estimate</b><table>{head}</table>"
                f"<table><tr><th>op</th><th>kind</th><th>x</th><th>share of cycles</th><th>bound</th></tr>"
                f"{body}</table><small>{len(ops)} ops; <code>.ops</code> has the full table</small></div>")


# ----------------------------------------------------------------------------- estimate
def estimate(model: Any, hw: Any = "qe-paper-npu", *, setting: str = "W16A16", method: str = "none",
             stage: str = "prefill", seq_len: int = 128, context_len: Optional[int] = None, batch: int = 1,
             engine: str = "analytical", strict: bool = False, **workload) -> Estimate:
    """Latency, cycles, bytes, bound and fp16 speedup of one pass of ``model`` on ``hw``.

    Args:
        model: a preset name (``qesim.presets()['models']``), an HF ``config.json`` or a directory
            holding one, an HF config mapping, a ModelSpec, or a layer graph (LayerGraph or a JSON
            path; its bits and adapters come from the graph, so ``setting``/``method`` must stay at
            their defaults).
        hw: a hardware preset name (``qesim.presets()['hardware']``), a YAML path, a mapping or a
            HardwareConfig.
        setting: ``W{w}A{a}`` (W16A16 = the fp16 baseline).
        method: adapter structure: ``none``, ``rtn``, ``smoothquant``, ``awq``, ``gptq``, ``lqer``,
            ``aser``, ``qe`` (or a plug-in quantizer's name).
        stage: ``prefill`` or ``decode``; ``seq_len`` prefill tokens per sequence; ``context_len``
            tokens already cached (None: 0 for prefill, 512 for decode); ``batch`` sequences.
        engine: a name from :func:`qesim.perf.engines.engine_names` (``analytical``, ``cycle``).
        strict: raise :class:`InputError` when the footprint does not fit the memories (default:
            the result carries ``fits=False`` and a warning).
        workload: any other graph-builder argument: ``density`` (number or ``NAME=D,...``),
            ``group_size``, ``kv_bits``, ``adapter_defaults``, ``linear_overrides``.

    Raises:
        InputError: bad input (one line naming the field).
    """
    if stage not in ("prefill", "decode"):
        raise InputError(f"stage {stage!r} must be 'prefill' or 'decode'")
    from qesim.perf.engines import get_engine
    from qesim.perf.estimate import fp16_baseline

    get_engine(engine)  # an unknown engine is an InputError before any work
    cfg = load_hw(hw)
    from_graph = is_graph(model)
    if from_graph and (setting != "W16A16" or method != "none" or workload):
        raise InputError(f"setting/method/workload arguments cannot be combined with a layer graph ({model if not hasattr(model, 'name') else model.name}): "
                         "its bits and adapters come from the graph")
    if "density" in workload:
        from qesim.graph.settings import parse_density

        try:
            parse_density(workload["density"])
        except InputError as e:
            raise InputError(f"density: {e}") from None
    kw = dict(stage=stage, seq_len=seq_len, context_len=context_len, batch=batch, setting=setting, method=method)
    graph = build_graph(model, **kw, **workload)
    raw = _run_engine(graph, cfg, engine)
    base = None
    if not from_graph and graph.setting != "W16A16":
        base = _run_engine(build_graph(model, **fp16_baseline({**kw, **workload})), cfg, engine)
    est = Estimate(graph, cfg, engine, raw, base, from_graph=from_graph)
    if strict and not est.fits:
        raise InputError(f"{graph.model} on {cfg.name}: {est.footprint.warning()}")
    return est


# ----------------------------------------------------------------------------- sweeps, presets
def sweep(space: Any, *, out: Optional[Union[str, Path]] = None, exact: bool = False, workers: int = 0,
          scheduler: Optional[str] = None, resume: bool = False, quiet: bool = True):
    """Every point of a design space as a pandas DataFrame (one row per point; the columns of
    :data:`qesim.dse.evaluate.OUTPUT_COLUMNS` after the point's workload and hardware axes).

    ``space``: a space YAML path, the parsed mapping (``{'space': {...}}`` or the inner mapping),
    or a :class:`qesim.dse.space.Space`. Without ``out`` the points are evaluated in memory; with
    ``out`` the sweep is written there as Parquet parts (needs the ``[dse]`` extra) and can use
    ``workers`` (local processes), a Dask ``scheduler`` and ``resume``.
    """
    from qesim.dse.space import Space, load_space, space_from_dict

    if isinstance(space, Space):
        sp = space
    elif isinstance(space, Mapping):
        data = dict(space) if ("space" in space or "sweep" in space) else {"space": dict(space)}
        sp = space_from_dict(data, "space mapping")
    elif isinstance(space, (str, Path)):
        sp = load_space(space)
    else:
        raise InputError(f"space must be a YAML path, a mapping or a Space (got {type(space).__name__})")
    if out is None:
        if workers or scheduler or resume:
            raise InputError("workers / scheduler / resume need out= (a directory for the Parquet parts)")
        from qesim.dse.evaluate import evaluate_space

        return evaluate_space(sp, exact=exact)
    from qesim.dse.runner import run_sweep

    return run_sweep(sp, out, workers=workers, scheduler=scheduler, resume=resume, quiet=quiet, exact=exact)


def presets() -> dict:
    """Known names: ``{'models': [...], 'hardware': [...], 'sweeps': [...]}`` (model shape presets,
    hardware config presets, example sweep spaces shipped with qesim, usable by name in
    :func:`sweep` and ``qesim sweep NAME``)."""
    from qesim.graph.presets import preset_names
    from qesim.dse.space import example_spaces
    from qesim.hw.loader import preset_names as hw_names

    return {"models": preset_names(), "hardware": hw_names(), "sweeps": list(example_spaces())}
