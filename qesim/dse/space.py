"""Design spaces: a YAML file -> a validated :class:`Space` -> a deterministic table of points.

File format (top-level key ``space``, or ``sweep`` as an alias)::

    space:
      name: flightllm-dse          # optional, default: the file stem
      base: flightllm-u280         # hardware preset name or YAML path the axes modify
      sampling: grid               # grid (full Cartesian product) | random
      samples: 1000                # random: number of hardware points drawn
      seed: 0                      # random: numpy seed (same seed -> same points)
      chunk_size: 2048             # optional: points per Parquet part file
      hw:                          # dotted path of any HardwareConfig field -> values
        hbm.bandwidth_gbps: [230, 460, 920]                       # a list
        mpe.mm.0.macs_per_cycle: {min: 4096, max: 32768, num: 4, scale: log}
        buffers.weight_bytes: {min: 1048576, max: 4194304, step: 1048576}
        scale.macs: [0.5, 1, 2]    # pseudo-axis: multiplies every MPE MAC rate (mm and mv)
        scale.buffers: [0.5, 1]    # pseudo-axis: multiplies weight/act/out buffer bytes
      workload:                    # each a value or a list; every combination is swept
        model: qwen2vl-7b          # a preset, or an HF config.json / a directory holding one
        setting: [W16A16, W4A8]
        method: [none, qe]
        stage: prefill
        seq_len: 128
        context_len: 0
        batch: 1
        density: 1.0               # every linear; or per linear: "q_proj=0.7,k_proj=0.7" (or a mapping)
        group_size: 0              # weights per quantization group; 0 = the setting's default, -1 = per channel
      scenarios:                   # optional list of workload overrides, crossed with the above
        - {stage: prefill, seq_len: 128}
        - {stage: decode, context_len: 512}

Range specs: ``{min, max, num[, scale: linear|log]}`` (num values, both ends included) or
``{min, max, step}``; integer fields get integer values. With ``sampling: random`` a range is
drawn continuously (log-uniform with ``scale: log``) and a list uniformly; only hardware axes
are sampled, and every sample is run on every workload.

Points are ordered workload-major (all hardware points of the first workload, then the next),
and numbered ``point_id`` 0..N-1; that order is fixed by the file (and the seed), which is what
lets an interrupted sweep resume without lost or duplicated rows.

Every error is an :class:`qesim.errors.InputError` naming the file and the field.
"""

from __future__ import annotations

import difflib
import hashlib
import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
from pydantic import ValidationError

from qesim.errors import InputError, format_validation_error
from qesim.hw.config import HardwareConfig
from qesim.perf.points import is_point_field

WORKLOAD_FIELDS = ("model", "setting", "method", "stage", "seq_len", "context_len", "batch", "density", "group_size",
                   "images", "image_size", "quantize", "devices", "parallel")
#: images / image_size / quantize: a whole VLM request (qesim.graph.vision; images per sequence, WxH px,
#: quantized parts L,V,M); images 0 + quantize L = the text-only graph
#: devices / parallel: a multi-device system (qesim.perf.multidevice; ``--devices N --parallel P`` of
#: ``qesim estimate``: tp | pp | ep | tp*pp | tp2*pp4 ...); devices 1 = one device (parallel ignored)
WORKLOAD_DEFAULTS = dict(model="qwen2vl-7b", setting="W16A16", method="none", stage="prefill", seq_len=128,
                         context_len=0, batch=1, density=1.0, group_size=0, images=0, image_size="448x448",
                         quantize="L", devices=1, parallel="tp")
PSEUDO_AXES = ("scale.macs", "scale.buffers")
#: values of one hardware axis, and points of a whole space, at most (a grid beyond them is refused
#: before anything is enumerated; the robust helper's bound, issue 12)
MAX_AXIS_VALUES = 10_000
MAX_POINTS = 10**8
_SPACE_KEYS = ("name", "base", "sampling", "samples", "seed", "chunk_size", "hw", "workload", "scenarios",
               "description")

def density_value(v) -> "float | str":
    """A workload's density as the sweep records it: a number (every linear) stays a float; a
    per-linear density (``"q_proj=0.7,k_proj=0.7"`` or a mapping) becomes that canonical string,
    which :func:`qesim.graph.settings.parse_density` reads back (the graph builders accept both)."""
    from qesim.graph.settings import density_label, parse_density

    return density_label(parse_density(v))


def is_vector_field(path: str) -> bool:
    """True for the hardware fields that are per-point numbers of the cost model (no re-lowering:
    :data:`qesim.perf.points.POINT_FIELDS_RE`, incl. buffer sizes) and the pseudo-axes."""
    return path in PSEUDO_AXES or is_point_field(path)


@dataclass
class Axis:
    """One hardware axis: explicit ``values`` (grid) or a continuous range (random sampling)."""

    path: str
    values: Optional[list] = None  # explicit values (lists, and ranges on a grid)
    lo: Optional[float] = None  # random sampling of a range
    hi: Optional[float] = None
    log: bool = False
    integer: bool = False


@dataclass
class Space:
    name: str
    source: str
    base_name: str
    base: HardwareConfig
    sampling: str
    samples: int
    seed: int
    chunk_size: int
    axes: list[Axis]
    workloads: list[dict]  # distinct workload dicts, in sweep order
    raw: dict = field(default_factory=dict)
    #: models that are not presets (HF configs), as given in the file -> ModelSpec dict; they
    #: travel with the space to the workers, which need neither the files nor their paths
    models: dict = field(default_factory=dict)

    @property
    def hw_paths(self) -> list[str]:
        return [a.path for a in self.axes]

    def n_hw_points(self) -> int:
        if self.sampling == "random":
            return self.samples
        n = 1
        for a in self.axes:
            n *= len(a.values)
        return n

    def __len__(self) -> int:
        return self.n_hw_points() * len(self.workloads)

    def fingerprint(self) -> str:
        """Hash of everything that determines the points and their results."""
        blob = json.dumps(dict(raw=self.raw, base=self.base.model_dump(mode="json"), models=self.models),
                          sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def to_dict(self) -> dict:
        """Picklable description (sent to process-pool and Dask workers)."""
        return dict(raw=self.raw, source=self.source, base=self.base.model_dump(mode="json"), models=self.models)

    # --------------------------------------------------------------- points
    def hw_columns(self) -> dict[str, np.ndarray]:
        """One array per axis (dotted path), one entry per hardware point (no pandas).

        The same values as :meth:`hw_table` (same draws from the seeded generator): lists give
        arrays of their values' type, ranges float64 (int64 for integer fields).
        """
        if not self.axes:
            return {}
        if self.sampling == "grid":
            sizes = [len(a.values) for a in self.axes]
            idx = np.indices(sizes).reshape(len(sizes), -1)  # C order = itertools.product order
            return {a.path: _as_array(a.values)[i] for a, i in zip(self.axes, idx)}
        rng = np.random.default_rng(self.seed)
        cols = {}
        for a in self.axes:
            if a.values is not None:
                cols[a.path] = _as_array(a.values)[rng.integers(0, len(a.values), size=self.samples)]
            else:
                u = rng.random(self.samples)
                if a.log:
                    v = np.exp(np.log(a.lo) + u * (np.log(a.hi) - np.log(a.lo)))
                else:
                    v = a.lo + u * (a.hi - a.lo)
                if a.integer:
                    v = np.clip(np.rint(v), a.lo, a.hi).astype(np.int64)
                cols[a.path] = v
        return cols

    def hw_table(self):
        """One row per hardware point, a column per axis (dotted path): a DataFrame."""
        import pandas as pd

        cols = self.hw_columns()
        if not cols:
            return pd.DataFrame(index=pd.RangeIndex(1))
        return pd.DataFrame({k: (v.tolist() if v.dtype.kind in "OU" else v) for k, v in cols.items()})

    def points(self):
        """Every point: ``point_id``, the workload fields, then the hardware axes (a DataFrame)."""
        import pandas as pd

        hw = self.hw_table()
        n = len(hw)
        parts = []
        for w in self.workloads:
            df = pd.DataFrame({k: [w[k]] * n for k in WORKLOAD_FIELDS})
            for c in hw.columns:
                df[c] = hw[c].to_numpy()
            parts.append(df)
        out = pd.concat(parts, ignore_index=True)
        out.insert(0, "point_id", np.arange(len(out), dtype=np.int64))
        return out


def _as_array(values: list) -> np.ndarray:
    """A list of axis values as a numpy array of their type (object for strings and mixtures)."""
    if all(isinstance(v, bool) for v in values):
        return np.array(values, dtype=bool)
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return np.array(values, dtype=np.int64)
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return np.array(values, dtype=np.float64)
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


# ----------------------------------------------------------------------------- loading
def _fail(src: str, where: str, msg: str) -> InputError:
    return InputError(f"{src}: {where}: {msg}")


def _reject_unknown(src: str, prefix: str, given, known, what: str) -> None:
    """Raise naming the first key of ``given`` not in ``known``, with the closest known key."""
    unknown = set(given) - set(known)
    if unknown:
        k = sorted(unknown)[0]
        near = difflib.get_close_matches(k, known, n=1)
        raise _fail(src, f"{prefix}.{k}", what + (f"; did you mean {near[0]}?" if near else
                                                  f"; known: {', '.join(known)}"))


def _known_paths(data: Any, prefix: str = "") -> list[str]:
    out = []
    if isinstance(data, dict):
        for k, v in data.items():
            out += _known_paths(v, f"{prefix}{k}.")
    elif isinstance(data, list):
        for i, v in enumerate(data):
            out += _known_paths(v, f"{prefix}{i}.")
    else:
        out.append(prefix[:-1])
    return out


def _base_value(base: HardwareConfig, path: str, src: str) -> Any:
    if path in PSEUDO_AXES:
        return 1.0
    cur: Any = base.model_dump()
    for k in path.split("."):
        if isinstance(cur, list) and k.isdigit() and int(k) < len(cur):
            cur = cur[int(k)]
        elif isinstance(cur, dict) and k in cur:
            cur = cur[k]
        else:
            known = _known_paths(base.model_dump()) + list(PSEUDO_AXES)
            near = difflib.get_close_matches(path, known, n=3)
            hint = f"; did you mean {', '.join(near)}?" if near else ""
            raise _fail(src, f"space.hw.{path}", f"unknown hardware field (no such path in config "
                        f"'{base.name}'){hint}")
    if isinstance(cur, (dict, list)):
        raise _fail(src, f"space.hw.{path}", "names a group of fields, not one value; give the full dotted path "
                    f"(e.g. {path}.{next(iter(cur)) if isinstance(cur, dict) else '0'})")
    return cur


def expand_updates(base: HardwareConfig, updates: dict) -> dict:
    """Dotted-path updates with the pseudo-axes (``scale.macs``, ``scale.buffers``) expanded."""
    out = {k: v for k, v in updates.items() if k not in PSEUDO_AXES}
    ms = updates.get("scale.macs")
    if ms is not None:
        for mode in ("mm", "mv"):
            for i, r in enumerate(getattr(base.mpe, mode)):
                key = f"mpe.{mode}.{i}.macs_per_cycle"
                out[key] = float(out.get(key, r.macs_per_cycle)) * float(ms)
    bs = updates.get("scale.buffers")
    if bs is not None:
        for f in ("weight_bytes", "act_bytes", "out_bytes"):
            key = f"buffers.{f}"
            out[key] = max(1, int(round(float(out.get(key, getattr(base.buffers, f))) * float(bs))))
    return out


def apply_updates(base: HardwareConfig, updates: dict, src: str = "space") -> HardwareConfig:
    """``base`` with the (pseudo-)axis updates applied and validated; InputError naming the field."""
    try:
        return base.with_updates(expand_updates(base, updates))
    except ValidationError as e:
        raise InputError(format_validation_error(f"{src}: space.hw", e)) from None
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise InputError(f"{src}: space.hw: cannot apply {updates} ({e})") from None


def _check_value(base: HardwareConfig, path: str, v: Any, src: str) -> Any:
    """Validate one axis value against the schema; return it as the schema stores it."""
    if isinstance(v, (dict, list)) or v is None:
        raise _fail(src, f"space.hw.{path}", f"expected a single value, got {v!r}")
    if path in PSEUDO_AXES:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
            raise _fail(src, f"space.hw.{path}", f"must be a number > 0 (got {v!r})")
        apply_updates(base, {path: v}, src)
        return float(v)
    bv = _base_value(base, path, src)
    if isinstance(bv, (int, float)) and not isinstance(bv, bool) and (isinstance(v, (str, bool))):
        raise _fail(src, f"space.hw.{path}", f"must be a number like the base value {bv!r} (got {v!r})")
    try:
        cfg = base.with_updates({path: v})
    except ValidationError as e:
        raise InputError(format_validation_error(f"{src}: space.hw", e)) from None
    cur: Any = cfg
    for k in path.split("."):
        cur = cur[int(k)] if isinstance(cur, list) else getattr(cur, k)
    return cur


def _range(spec: dict, path: str, base_val: Any, src: str, sampling: str) -> Axis:
    where = f"space.hw.{path}"
    unknown = set(spec) - {"min", "max", "num", "step", "scale", "values"}
    if unknown:
        raise _fail(src, where, f"unknown range key(s) {sorted(unknown)}; use min/max with num or step "
                    "(and scale: linear|log), or values: [...]")
    if "values" in spec:
        return _values(spec["values"], path, src)
    for k in ("min", "max"):
        if k not in spec:
            raise _fail(src, where, f"range needs '{k}'")
        if isinstance(spec[k], bool) or not isinstance(spec[k], (int, float)):
            raise _fail(src, where, f"range {k} must be a number (got {spec[k]!r})")
    lo, hi = float(spec["min"]), float(spec["max"])
    if hi < lo:
        raise _fail(src, where, f"empty range: max {hi:g} < min {lo:g}")
    scale = spec.get("scale", "linear")
    if scale not in ("linear", "log"):
        raise _fail(src, where, f"scale must be 'linear' or 'log' (got {scale!r})")
    if scale == "log" and lo <= 0:
        raise _fail(src, where, f"a log range needs min > 0 (got {lo:g})")
    integer = isinstance(base_val, int) and not isinstance(base_val, bool)
    if sampling == "random" and "num" not in spec and "step" not in spec:
        return Axis(path, lo=lo, hi=hi, log=scale == "log", integer=integer)
    if "num" in spec:
        num = spec["num"]
        if isinstance(num, bool) or not isinstance(num, int) or num < 1:
            raise _fail(src, where, f"num must be an integer >= 1 (got {num!r})")
        if num > MAX_AXIS_VALUES:
            raise _fail(src, where, f"num {num} exceeds the limit of {MAX_AXIS_VALUES} values per axis")
        vals = np.geomspace(lo, hi, num) if scale == "log" else np.linspace(lo, hi, num)
    elif "step" in spec:
        step = spec["step"]
        if isinstance(step, bool) or not isinstance(step, (int, float)) or step <= 0:
            raise _fail(src, where, f"step must be a number > 0 (got {step!r})")
        if (hi - lo) / step + 1 > MAX_AXIS_VALUES:
            raise _fail(src, where, f"{(hi - lo) / step + 1:.3g} values exceed the limit of {MAX_AXIS_VALUES} per axis")
        vals = np.arange(lo, hi + step * 1e-9, step)
    else:
        raise _fail(src, where, "a range on a grid needs 'num' or 'step'")
    if integer:
        vals = list(dict.fromkeys(int(round(v)) for v in vals))
    else:
        vals = [float(f"{v:.12g}") for v in vals]  # 8192 rather than 8191.999999999997
    if not vals:
        raise _fail(src, where, "empty range")
    return Axis(path, values=vals)


def _values(vals: Any, path: str, src: str) -> Axis:
    if not isinstance(vals, list):
        vals = [vals]
    if not vals:
        raise _fail(src, f"space.hw.{path}", "empty list of values")
    return Axis(path, values=list(vals))


def _resolve_model(v: str, src: str):
    """The ModelSpec a workload's ``model`` names: a preset, an HF config path / directory (relative
    to the working directory, else to the space file), or one registered from a worker's task."""
    from qesim.graph.hf import is_hf_source, load_hf_spec
    from qesim.graph.presets import get_spec, register_model

    rel = Path(src).parent / v
    if not Path(v).exists() and Path(src).exists() and is_hf_source(str(rel)) and rel.exists():
        spec = load_hf_spec(rel)
        register_model(v, spec)  # build_graph(v) in this process finds it
        return spec
    return get_spec(v)


def _workloads(raw: dict, src: str) -> list[dict]:
    from qesim.graph.presets import get_spec
    from qesim.graph.settings import METHODS, is_method, parse_density, parse_setting
    from qesim.graph.vision import parse_image_size, parse_quantize, workload_graph

    wl = raw.get("workload") or {}
    if not isinstance(wl, dict):
        raise _fail(src, "space.workload", f"expected a mapping of {', '.join(WORKLOAD_FIELDS)}")
    _reject_unknown(src, "space.workload", wl, WORKLOAD_FIELDS, "unknown workload field")
    axes = {}
    for k in WORKLOAD_FIELDS:
        v = wl.get(k, WORKLOAD_DEFAULTS[k])
        v = v if isinstance(v, list) else [v]
        if not v:
            raise _fail(src, f"space.workload.{k}", "empty list of values")
        axes[k] = v
    scen = raw.get("scenarios") or [{}]
    if not isinstance(scen, list) or not all(isinstance(s, dict) for s in scen):
        raise _fail(src, "space.scenarios", "expected a list of mappings (workload overrides)")
    for i, s in enumerate(scen):
        bad = set(s) - set(WORKLOAD_FIELDS)
        if bad:
            raise _fail(src, f"space.scenarios.{i}.{sorted(bad)[0]}", f"unknown workload field; known: "
                        f"{', '.join(WORKLOAD_FIELDS)}")

    def check(k, v, where):
        if k == "model":
            if not isinstance(v, str):
                raise _fail(src, where, f"model must be a preset name or an HF config path (got {v!r})")
            try:
                _resolve_model(v, src)
            except InputError as e:
                raise _fail(src, where, str(e)) from None
        elif k == "setting":
            try:
                parse_setting(str(v))
            except InputError as e:
                raise _fail(src, where, str(e)) from None
        elif k == "method":
            if not is_method(str(v)):  # built-in or an installed plug-in quantizer
                raise _fail(src, where, f"unknown method {v!r}; known: {', '.join(METHODS)}")
        elif k == "stage":
            if v not in ("prefill", "decode"):
                raise _fail(src, where, f"stage must be 'prefill' or 'decode' (got {v!r})")
        elif k in ("seq_len", "batch"):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise _fail(src, where, f"must be an integer >= 1 (got {v!r})")
        elif k == "context_len":
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise _fail(src, where, f"must be an integer >= 0 (got {v!r})")
        elif k == "density":  # a number (every linear) or per linear: "q_proj=0.7,k_proj=0.7" / a mapping
            if isinstance(v, bool) or not isinstance(v, (int, float, str, dict)):
                raise _fail(src, where, f"must be a number in (0, 1] or NAME=D[,NAME=D...] (got {v!r})")
            try:
                parse_density(v)
            except InputError as e:
                raise _fail(src, where, str(e)) from None
        elif k == "group_size":
            if isinstance(v, bool) or not isinstance(v, int) or v < -1:
                raise _fail(src, where, f"must be an integer >= 1, -1 (per channel) or 0 (the setting's default) "
                            f"(got {v!r})")
        elif k == "images":
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise _fail(src, where, f"must be an integer >= 0 (got {v!r})")
        elif k == "devices":
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise _fail(src, where, f"must be an integer >= 1 (got {v!r})")
        elif k == "parallel":
            if not isinstance(v, str) or not v.strip():
                raise _fail(src, where, f"must be tp, pp, ep, tp*pp or an explicit plan like tp2*pp4 (got {v!r})")
        elif k in ("image_size", "quantize"):
            from qesim.graph.vision import parse_image_size, parse_quantize

            try:
                (parse_image_size if k == "image_size" else parse_quantize)(str(v))
            except InputError as e:
                raise _fail(src, where, str(e)) from None

    for k, vs in axes.items():
        for v in vs:
            check(k, v, f"space.workload.{k}")
    for i, s in enumerate(scen):
        for k, v in s.items():
            check(k, v, f"space.scenarios.{i}.{k}")
    out, seen = [], set()
    for s in scen:
        names = list(WORKLOAD_FIELDS)
        vals = [[s[k]] if k in s else axes[k] for k in names]
        for combo in itertools.product(*vals):
            w = dict(zip(names, combo))
            w["setting"] = parse_setting(str(w["setting"])).name
            w["method"] = str(w["method"]).lower()
            w["density"] = density_value(w["density"])
            w["quantize"] = ",".join(p for p in "LVM" if p in parse_quantize(str(w["quantize"])))
            w["image_size"] = "x".join(map(str, parse_image_size(str(w["image_size"]))))
            if w["setting"] == "W16A16":
                w["method"] = "none"  # nothing is quantized, so no adapter is attached (build_graph)
            if w["stage"] == "decode":
                w["seq_len"] = 1  # one new token per sequence (what the graph records)
            if w["devices"] == 1:
                w["parallel"] = "tp"  # one device: nothing to parallelise (one row, not one per plan)
            else:
                from qesim.graph.parallel import parse_parallel

                try:
                    w["parallel"] = parse_parallel(str(w["parallel"]), w["devices"]).label()
                except InputError as e:
                    raise _fail(src, "space.workload.parallel", str(e)) from None
            key = tuple(w[k] for k in names)
            if key not in seen:
                seen.add(key)
                out.append(w)
    for w in out:  # every combination must build (e.g. decode on an encoder fails here)
        try:
            workload_graph(w)
        except InputError as e:
            raise _fail(src, "space.workload", f"{ {k: w[k] for k in WORKLOAD_FIELDS} }: {e}") from None
    return out


def space_from_dict(data: dict, src: str = "space", base: Optional[HardwareConfig] = None) -> Space:
    """Validate a parsed YAML document (with a top-level ``space`` or ``sweep`` key)."""
    from qesim.hw.loader import load_hw

    if not isinstance(data, dict) or not ("space" in data or "sweep" in data):
        raise InputError(f"{src}: expected a top-level 'space:' mapping")
    if "space" in data and "sweep" in data:
        raise _fail(src, "sweep", "both 'space:' and its alias 'sweep:' are given; keep one")
    top_extra = set(data) - {"space", "sweep"}
    if top_extra:
        raise _fail(src, sorted(top_extra)[0], "unknown top-level key (a space file has only 'space:')")
    raw = data.get("space", data.get("sweep"))
    if not isinstance(raw, dict):
        raise _fail(src, "space", "expected a mapping")
    _reject_unknown(src, "space", raw, _SPACE_KEYS, "unknown key")
    base_name = raw.get("base", "flightllm-u280")
    if base is None:
        if not isinstance(base_name, str):
            raise _fail(src, "space.base", f"expected a hardware preset name or YAML path (got {base_name!r})")
        bpath = Path(base_name)
        if bpath.suffix in (".yaml", ".yml") and not bpath.is_absolute() and Path(src).exists():
            cand = Path(src).parent / bpath
            if cand.exists() and not bpath.exists():
                base_name = str(cand)
        try:
            base = load_hw(base_name)
        except InputError as e:
            raise _fail(src, "space.base", str(e)) from None
    sampling = raw.get("sampling", "grid")
    if sampling not in ("grid", "random"):
        raise _fail(src, "space.sampling", f"must be 'grid' or 'random' (got {sampling!r})")
    seed = raw.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise _fail(src, "space.seed", f"must be an integer >= 0 (got {seed!r})")
    samples = raw.get("samples", 0 if sampling == "grid" else None)
    if sampling == "random" and (isinstance(samples, bool) or not isinstance(samples, int) or samples < 1):
        raise _fail(src, "space.samples", f"random sampling needs samples: an integer >= 1 (got {samples!r})")
    if sampling == "grid" and "samples" in raw:
        raise _fail(src, "space.samples", f"applies to sampling: random only (a grid has every combination; "
                    f"got samples: {raw['samples']!r})")
    chunk = raw.get("chunk_size", 0)
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 0 or ("chunk_size" in raw and chunk < 1):
        raise _fail(src, "space.chunk_size", f"must be an integer >= 1 (got {chunk!r})")
    hw = raw.get("hw") or {}
    if not isinstance(hw, dict):
        raise _fail(src, "space.hw", "expected a mapping of dotted field paths to values")
    axes = []
    for path, spec in hw.items():
        path = str(path)
        bv = _base_value(base, path, src)
        if isinstance(spec, dict):
            ax = _range(spec, path, bv, src, sampling)
        else:
            ax = _values(spec, path, src)
        if ax.values is not None:
            ax.values = [_check_value(base, path, v, src) for v in ax.values]
            if len(set(map(repr, ax.values))) != len(ax.values):
                ax.values = list({repr(v): v for v in ax.values}.values())
        else:
            for v in (ax.lo, ax.hi):  # field constraints are intervals: checking the ends suffices
                _check_value(base, path, int(round(v)) if ax.integer else v, src)
        axes.append(ax)
    n_hw = samples if sampling == "random" else 1
    for a in axes:
        if a.values is not None and len(a.values) > MAX_AXIS_VALUES:
            raise _fail(src, f"space.hw.{a.path}", f"{len(a.values)} values exceed the limit of {MAX_AXIS_VALUES} per axis")
        if sampling == "grid":
            n_hw *= len(a.values)
    if n_hw > MAX_POINTS:
        raise _fail(src, "space.hw", f"the grid has {n_hw:.3g} hardware points, above the limit of {MAX_POINTS:.0e} "
                    "points; use fewer values or sampling: random")
    workloads = _workloads(raw, src)
    if n_hw * len(workloads) > MAX_POINTS:
        raise _fail(src, "space", f"{n_hw} hardware points x {len(workloads)} workloads = {n_hw * len(workloads):.3g} "
                    f"points, above the limit of {MAX_POINTS:.0e}")
    name = raw.get("name")
    if name is not None and not isinstance(name, str):
        raise _fail(src, "space.name", f"must be a string (got {name!r})")
    name = name or Path(src).stem
    from qesim.graph.presets import preset_names

    presets = set(preset_names())
    models = {w["model"]: _resolve_model(w["model"], src).model_dump(mode="json")
              for w in workloads if str(w["model"]).strip().lower() not in presets}
    sp = Space(name=str(name), source=src, base_name=str(base_name), base=base, sampling=sampling,
               samples=int(samples or 0), seed=seed, chunk_size=chunk, axes=axes, workloads=workloads, raw=raw,
               models=models)
    if len(sp) == 0:
        raise _fail(src, "space", "the space has no points")
    # every combination of structural (re-planning) values must make a valid config together
    struct = [a for a in axes if not is_vector_field(a.path) and a.values is not None]
    combos = 1
    for a in struct:
        combos *= len(a.values)
    if struct and combos <= 4096:
        for combo in itertools.product(*[a.values for a in struct]):
            apply_updates(base, dict(zip([a.path for a in struct], combo)), src)
    return sp


def load_space(path: str | Path) -> Space:
    """Load and validate a space file; raises InputError naming the file and the field."""
    from qesim.hw.loader import load_yaml

    p = Path(path)
    if not p.exists():
        ex = example_spaces()
        hit = ex.get(p.stem) if p.parent == Path(".") or p.parent.name == "sweeps" else None
        if hit is None:
            raise InputError(f"{p}: space file not found (examples shipped with qesim: {', '.join(ex) or 'none'})")
        p = hit
    return space_from_dict(load_yaml(p), str(p))


def example_spaces() -> dict:
    """The example space files shipped with qesim (``hw_configs/sweeps/``, package data in a
    wheel): name -> path. ``qesim sweep NAME`` and ``load_space(NAME)`` find them from any directory."""
    from qesim.hw.loader import config_dir

    return {f.stem: f for f in sorted((config_dir() / "sweeps").glob("*.yaml"))}


def space_from_spec(spec: dict) -> Space:
    """Rebuild a Space from :meth:`Space.to_dict` (on a worker)."""
    from qesim.graph.presets import ModelSpec, register_model

    for key, m in (spec.get("models") or {}).items():  # HF-config models read where the space was loaded
        register_model(key, ModelSpec.model_validate(m))
    base = HardwareConfig.model_validate(spec["base"])
    return space_from_dict({"space": spec["raw"]}, spec["source"], base=base)
