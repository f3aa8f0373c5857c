"""``qesim calibrate``: fit a hardware config's fidelity terms to measured kernels; write the YAML.

The fit is per op class (``linear`` from matmuls, ``softmax``, ``norm`` from layernorms,
``elementwise`` from GELUs, ...): each class's few parameters (:func:`qesim.fidelity.fit.class_params`)
only move the predictions of that class's kernels, so the classes are fitted independently.
The calibrated YAML is the input file with its ``name`` replaced and the fitted op-class blocks of
``terms`` written in (other ``terms`` fields are kept as the input has them); comments record the
data, the method and the residuals.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from qesim.errors import InputError
from qesim.fidelity.fit import FitResult, data_params, fit


@dataclass
class Calibration:
    hw_name: str
    device: str
    fits: dict  # op class -> FitResult
    table: object  # measured DataFrame (one device)
    sources: list  # measured files
    command: str = "qesim calibrate"

    def values(self) -> dict:
        out: dict = {}
        for r in self.fits.values():
            out.update(r.all_values)
        return out


def select_device(table, device: Optional[str], what: str):
    devs = list(dict.fromkeys(table.device))
    if device is None:
        if len(devs) > 1:
            raise InputError(f"{what}: the measurements hold several devices ({', '.join(devs)}); pick one with --device")
        device = devs[0]
    sub = table[table.device == device].reset_index(drop=True)
    if sub.empty:
        raise InputError(f"{what}: no measurements for device {device!r} (found {', '.join(devs)})")
    return device, sub


def calibrate_table(hw, table, make_predictor: Callable, *, classes=None, min_points_per_param: int = 3,
                    what: str = "measured", fields=None) -> dict:
    """Op class -> FitResult for every class present in ``table`` (or the given ``classes``).
    ``fields``: fit only these parameters (names as ``compute_efficiency``); the others keep ``hw``'s values."""
    predict = make_predictor(hw, table)
    meas = table.latency_s.to_numpy()
    fits = {}
    present = list(dict.fromkeys(table.op_class))
    for cls in classes or present:
        if cls not in present:
            raise InputError(f"{what}: no measured kernels of op class {cls!r} (present: {', '.join(present)})")
        idx = np.flatnonzero(table.op_class.to_numpy() == cls)
        params = data_params(cls, meas[idx])
        if fields is not None:
            params = [q for q in params if q.path.rsplit(".", 1)[1] in fields]
        fits[cls] = fit(predict, params, meas, idx, min_points_per_param=min_points_per_param,
                        what=f"{what} ({cls}, {len(idx)} kernels)")
    return fits


def _fmt(v: float) -> str:
    return f"{v:.6g}"


def render_yaml(src_text: str, out_name: str, blocks: dict, header: list) -> str:
    """The input YAML with ``name`` replaced and the op-class ``blocks`` (class -> list of
    (field, value, comment)) written into ``terms`` under the ``header`` comment lines; the
    input's other ``terms`` entries are kept as they are."""
    lines = src_text.splitlines()
    lines = [f"name: {out_name}" if re.match(r"^name:\s", ln) else ln for ln in lines]
    start = next((i for i, ln in enumerate(lines) if re.match(r"^terms:", ln)), None)
    kept: list[str] = []
    if start is not None:
        end = next((j for j in range(start + 1, len(lines)) if lines[j] and not lines[j][0].isspace()
                    and not lines[j].startswith("#")), len(lines))
        while end > start + 1 and (not lines[end - 1].strip() or lines[end - 1].startswith("#")):
            end -= 1  # comment lines just above the next section belong to it
        if lines[start].split("#")[0].strip() != "terms:":
            raise InputError("calibrate: the input's `terms` block must be in block style (terms: on its own line)")
        cur = None
        for ln in lines[start + 1:end]:
            m = re.match(r"^  (\w+):", ln)
            if m:
                cur = m.group(1)
            if cur not in blocks:
                kept.append(ln)
    else:
        start = end = len(lines)
    while start > 0 and not lines[start - 1].strip():
        start -= 1
    block = [""] + [f"# {h}" if h else "#" for h in header] + ["terms:"] + kept
    for cls, fields in blocks.items():
        block.append(f"  {cls}:")
        for key, v, how in fields:
            block.append(f"    {key}: {_fmt(v)}    # {how}")
    out = lines[:start] + block + lines[end:]  # the terms block where the input had it
    while out and not out[-1].strip():
        out.pop()
    return "\n".join(out) + "\n"


def fit_blocks(cal: Calibration) -> tuple[dict, list]:
    """(blocks, header) of a calibration for :func:`render_yaml`."""
    files = ", ".join(sorted({Path(s).name for s in cal.sources}))
    counts = ", ".join(f"{k} {v}" for k, v in cal.table.kernel.value_counts(sort=False).items())
    header = [
        f"---- fidelity terms fitted by `{cal.command}` ----",
        f"data: {len(cal.table)} measured {cal.device} kernels ({counts}) from {files}",
        "method: per op class, log-space bounded least squares (scipy.optimize.least_squares, trf) of",
        "  log(predicted / measured) through qesim's own cost model; parameters the data do not identify",
        "  (vanishing or dependent Jacobian column) are set to their neutral value and named below.",
        "The fixed costs and floors include what the measurement harness pays per call (LLMCompass: an",
        "  eager PyTorch call followed by torch.cuda.synchronize()).",
    ]
    blocks = {}
    for cls, r in cal.fits.items():
        e = r.abs_err * 100
        header.append(f"{cls}: {r.n_points} kernels, rms log residual {r.rms_log:.4f}, |error| mean {e.mean():.1f} %, "
                      f"max {e.max():.1f} % (in sample; out-of-sample errors: qesim fidelity)")
        header += [f"  {n}" for n in r.notes]
        blocks[cls] = [(path.rsplit(".", 1)[1], v,
                        ("fitted" if path in r.values else "neutral: not identified by the data")
                        + f" ({cls}, {r.n_points} {cal.device} kernels)") for path, v in r.all_values.items()]
    return blocks, header


def run_calibrate(hw_path: str, measured: str, out: str, make_predictor: Callable, *, device=None, classes=None,
                  min_points_per_param: int = 3, command: str = "qesim calibrate") -> Calibration:
    from qesim.fidelity.measured import read_measured
    from qesim.hw.loader import config_from_dict, load_hw

    src = _resolve(hw_path)
    hw = load_hw(str(src))
    table = read_measured(measured)
    device, table = select_device(table, device, str(measured))
    fits = calibrate_table(hw, table, make_predictor, classes=classes, min_points_per_param=min_points_per_param,
                           what=str(measured))
    cal = Calibration(hw.name, device, fits, table, sorted({s.rsplit(":", 1)[0] for s in table.source}), command)
    outp = Path(out)
    blocks, header = fit_blocks(cal)
    text = render_yaml(src.read_text(), outp.stem, blocks, header)
    config_from_dict(_yaml(text, outp), str(outp))  # the written file must load
    try:
        outp.write_text(text)
    except OSError as e:
        raise InputError(f"{outp}: cannot write ({e.strerror})") from None
    return cal


def _resolve(hw_path: str) -> Path:
    from qesim.hw.loader import config_dir

    src = Path(hw_path)
    if not src.exists() and (config_dir() / f"{hw_path}.yaml").exists():
        src = config_dir() / f"{hw_path}.yaml"
    if not src.exists():
        raise InputError(f"{hw_path}: hardware config file not found")
    return src


#: the op-class fields a transfer may refit on the target device's own kernels (``--refit``)
REFIT_FIELDS = ("fixed_us", "floor_us", "compute_efficiency", "memory_efficiency", "k_half")


def transfer_terms(hw_path: str, terms_from: str, out: str, command: str = "qesim calibrate", *,
                   measured: Optional[str] = None, refit=None, device=None, make_predictor: Optional[Callable] = None,
                   min_points_per_param: int = 3) -> dict:
    """Write ``hw_path`` with the fitted op-class blocks of the calibrated config ``terms_from``
    (nothing fitted: the fitted *shape* carried to another device's datasheet numbers).

    With ``measured`` and ``refit`` (field names, e.g. ``['compute_efficiency', 'floor_us']``): the
    transferred config's ``refit`` fields of every op class present in ``measured`` are then fitted
    to those kernels of the target device (the other fields stay as transferred)."""
    from qesim.hw.config import OP_CLASSES, OpClassTerms
    from qesim.hw.loader import config_from_dict, load_hw

    src, donor_p = _resolve(hw_path), _resolve(terms_from)
    donor = load_hw(str(donor_p))
    own = load_hw(str(src))
    blocks = {}
    for cls in OP_CLASSES:
        oc = donor.terms.op_class(cls)
        if oc == OpClassTerms() or own.terms.op_class(cls) != OpClassTerms():
            continue  # nothing to carry, or the target's own (sourced) block wins
        blocks[cls] = [(k, v, f"from {donor_p.name} (fitted or sourced there; not fitted on this device)")
                       for k, v in oc.model_dump().items() if v is not None]
    if not blocks:
        raise InputError(f"{terms_from}: no fitted terms to transfer (every op class is neutral)")
    header = [f"---- fidelity terms transferred by `{command}` ----",
              f"The op-class terms below are those of {donor.name} ({donor_p.name}){'' if refit else ', unchanged'}: this device's datasheet",
              "numbers with the fitted shape (efficiencies, fixed costs, roll-off) of another device."]
    outp = Path(out)
    text = render_yaml(src.read_text(), outp.stem, blocks, header)
    if measured is not None and refit:
        from qesim.fidelity.measured import read_measured

        bad = [f for f in refit if f not in REFIT_FIELDS]
        if bad:
            raise InputError(f"--refit: unknown field(s) {', '.join(bad)}; known: {', '.join(REFIT_FIELDS)}")
        table = read_measured(measured)
        dev, table = select_device(table, device, str(measured))
        hw_t = config_from_dict(_yaml(text, outp), str(outp))
        fits = calibrate_table(hw_t, table, make_predictor, min_points_per_param=min_points_per_param,
                               what=str(measured), fields=set(refit))
        files = ", ".join(sorted({Path(s.rsplit(":", 1)[0]).name for s in table.source}))
        header[-1] += f" Refitted on this device: {', '.join(refit)} of {', '.join(fits)}"
        header.append(f"  ({len(table)} measured {dev} kernels from {files}; the rest is {donor.name}'s, not fitted here).")
        for cls, r in fits.items():
            e = r.abs_err * 100
            header.append(f"{cls}: {r.n_points} {dev} kernels, rms log residual {r.rms_log:.4f}, |error| mean "
                          f"{e.mean():.1f} %, max {e.max():.1f} % (in sample)")
            header += [f"  {n}" for n in r.notes]
            fitted = r.all_values
            old_fields = dict((k, (v, how)) for k, v, how in blocks.get(cls, []))
            for path, v in fitted.items():
                key = path.rsplit(".", 1)[1]
                how = (f"fitted on {r.n_points} {dev} kernels ({files})" if path in r.values
                       else f"neutral: not identified by the {dev} kernels")
                old_fields[key] = (v, how)
            blocks[cls] = [(k, v, how) for k, (v, how) in old_fields.items()]
        text = render_yaml(src.read_text(), outp.stem, blocks, header)
    else:
        header[-1] += " Nothing was fitted here."
    config_from_dict(_yaml(text, outp), str(outp))
    try:
        outp.write_text(text)
    except OSError as e:
        raise InputError(f"{outp}: cannot write ({e.strerror})") from None
    return blocks


def _yaml(text: str, where: Path) -> dict:
    import yaml

    return yaml.safe_load(text)
