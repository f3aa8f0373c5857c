"""``qesim fidelity``: how well a config predicts a measured kernel set, in and out of sample.

For the primary device (default: LLMCompass's A100 kernels on ``nvidia-a100-80gb``) each kernel is
predicted four ways: by the datasheet config (neutral terms), by the terms fitted on all kernels
(in sample), by k-fold cross-validation (each fold predicted by a fit on the other folds, folds
interleaved by kernel size within each op class) and by leave-one-family-out (each sweep family
predicted by a fit on the other families of its class: extrapolation to shapes never seen).
For each transfer device (default: the MI210 kernels on ``amd-mi210``) the kernels are predicted by
that device's datasheet config alone and with the primary device's fitted terms (the fitted
*shape*: efficiencies, overheads and roll-off carried over unchanged, nothing fitted on it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from qesim.fidelity.calibrate import calibrate_table, select_device
from qesim.fidelity.fit import by_family, cross_validate, data_params, kfold


@dataclass
class FidelityResult:
    kernels: object  # DataFrame, one row per (device, kernel)
    summary: object  # DataFrame, one row per (device, op class) + 'all'
    fitted: dict  # path -> value (primary device, all kernels)
    notes: list = field(default_factory=list)
    setup: dict = field(default_factory=dict)
    extra_md: str = ""  # more report sections (the end-to-end check)


def _err(pred, meas):
    return (np.asarray(pred, dtype=float) / np.asarray(meas, dtype=float) - 1.0) * 100.0


def run_validation(measured: str, hw, device: str | None, make_predictor: Callable, *, folds: int = 5,
                   transfer: list = (), min_points_per_param: int = 3) -> FidelityResult:
    """See the module docstring. ``transfer``: list of (hardware config, device name) or (hardware config,
    device name, calibrated config): the third, when given, is also predicted with its own terms as
    configured (``own_us``: e.g. the fitted shape with a compute efficiency refitted on other kernels of that
    device, ``qesim calibrate --terms-from --refit``)."""
    import pandas as pd

    from qesim.fidelity.measured import read_measured

    table_all = read_measured(measured)
    device, table = select_device(table_all, device, str(measured))
    meas = table.latency_s.to_numpy()
    predict = make_predictor(hw, table)
    allidx = np.arange(len(table))
    notes: list = []
    datasheet = np.asarray(predict({}, allidx), dtype=float)
    fits = calibrate_table(hw, table, make_predictor, min_points_per_param=min_points_per_param,
                           what=f"{measured} [{device}]")
    fitted: dict = {}
    for cls, r in fits.items():
        fitted.update(r.all_values)
        notes += [f"{device} {cls} (all kernels): {n}" for n in r.notes]
    insample = np.asarray(predict(fitted, allidx), dtype=float)
    kf = np.full(len(table), np.nan)
    fold_of = np.full(len(table), -1)
    lofo = np.full(len(table), np.nan)
    for cls in fits:
        idx = np.flatnonzero(table.op_class.to_numpy() == cls)
        order = idx[np.argsort(table.elements.to_numpy()[idx] * np.maximum(1, table.K.to_numpy()[idx]), kind="stable")]
        fl = kfold(order, folds)
        for j, f in enumerate(fl):
            fold_of[f] = j
        p, nn = cross_validate(predict, data_params(cls, meas[idx]), meas, idx, fl, min_points_per_param=min_points_per_param)
        kf[idx] = p
        notes += [f"{device} {cls} k-fold: {n}" for n in nn]
        fam = by_family(table.family.to_numpy(), idx)
        if len(fam) > 1:
            p, nn = cross_validate(predict, data_params(cls, meas[idx]), meas, idx, fam, min_points_per_param=min_points_per_param)
            lofo[idx] = p
            notes += [f"{device} {cls} leave-one-family-out: {n}" for n in nn]
        else:
            notes.append(f"{device} {cls}: one sweep family only, no leave-one-family-out")
    rows = table.assign(
        hw=hw.name, measured_us=meas * 1e6, datasheet_us=datasheet * 1e6, fitted_us=insample * 1e6,
        kfold_us=kf * 1e6, fold=fold_of, lofo_us=lofo * 1e6, transfer_us=np.nan, own_us=np.nan, own_err_pct=np.nan,
        datasheet_err_pct=_err(datasheet, meas), fitted_err_pct=_err(insample, meas),
        kfold_err_pct=_err(kf, meas), lofo_err_pct=_err(lofo, meas), transfer_err_pct=np.nan, role="fit")
    frames = [rows]
    setup_tr = []
    for item in transfer:
        thw, tdev = item[0], item[1]
        own_hw = item[2] if len(item) > 2 else None
        _, tt = select_device(table_all, tdev, str(measured))
        tp = make_predictor(thw, tt)
        ti = np.arange(len(tt))
        tm = tt.latency_s.to_numpy()
        ds = np.asarray(tp({}, ti), dtype=float)
        tr = np.asarray(tp(fitted, ti), dtype=float)
        own = np.asarray(make_predictor(own_hw, tt)({}, ti), dtype=float) if own_hw is not None else np.full(len(tt), np.nan)
        frames.append(tt.assign(
            hw=thw.name, measured_us=tm * 1e6, datasheet_us=ds * 1e6, fitted_us=np.nan, kfold_us=np.nan, fold=-1,
            lofo_us=np.nan, transfer_us=tr * 1e6, own_us=own * 1e6, datasheet_err_pct=_err(ds, tm), fitted_err_pct=np.nan,
            kfold_err_pct=np.nan, lofo_err_pct=np.nan, transfer_err_pct=_err(tr, tm), own_err_pct=_err(own, tm),
            role="transfer"))
        setup_tr.append((thw.name, tdev) + ((own_hw.name,) if own_hw is not None else ()))
    kernels = pd.concat(frames, ignore_index=True).drop(columns=["latency_s"])
    return FidelityResult(kernels, summarise(kernels), fitted, notes,
                          dict(device=device, hw=hw.name, folds=folds, transfer=setup_tr))


def summarise(kernels):
    """Mean |error| (%) per (device, op class) and over all kernels of a device, per prediction."""
    import pandas as pd

    cols = ["datasheet_err_pct", "fitted_err_pct", "kfold_err_pct", "lofo_err_pct", "transfer_err_pct", "own_err_pct"]
    out = []
    for dev, g in kernels.groupby("device", sort=False):
        for cls, h in list(g.groupby("op_class", sort=False)) + [("all", g)]:
            rec = dict(device=dev, hw=h.hw.iloc[0], op_class=cls, kernels=len(h))
            for c in cols:
                v = h[c].abs() if c in h else pd.Series([np.nan])
                rec[c.replace("_err_pct", "_mean_abs_err_pct")] = float(v.mean()) if v.notna().any() else np.nan
                rec[c.replace("_err_pct", "_max_abs_err_pct")] = float(v.max()) if v.notna().any() else np.nan
            out.append(rec)
    return pd.DataFrame(out)
