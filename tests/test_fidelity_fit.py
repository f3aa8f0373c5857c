"""qesim.fidelity.fit: recovers known parameters from synthetic data; refuses unsupported fits."""

import numpy as np
import pytest

from qesim.errors import InputError
from qesim.fidelity.fit import Param, by_family, cross_validate, fit, kfold
from qesim.perf import terms as T

F = 1e9
rng = np.random.default_rng(0)
BYTES = np.geomspace(1e3, 1e9, 24)  # a vector kernel sweep, bytes per call
BW = 1000.0  # GB/s peak
PARAMS = [Param("fixed_us", 0, 500, 5, 0), Param("memory_efficiency", 0.02, 1, 0.5, 1)]


def toy_predict(values, idx):
    """The terms' own formula on a toy memory-bound kernel: fixed + bytes / (BW * eff)."""
    mem = BYTES[idx] / T.memory_bytes_per_cycle(BW, F, values.get("memory_efficiency", 1.0))
    floor = values.get("floor_us", 0.0)
    return T.call_cycles(mem, F, fixed_us=values.get("fixed_us", 0.0), floor_us=floor) / F


def test_recovers_known_parameters():
    truth = {"fixed_us": 23.0, "memory_efficiency": 0.71}
    meas = toy_predict(truth, np.arange(len(BYTES)))
    res = fit(toy_predict, PARAMS, meas, np.arange(len(BYTES)))
    assert res.values["fixed_us"] == pytest.approx(23.0, rel=1e-4)
    assert res.values["memory_efficiency"] == pytest.approx(0.71, rel=1e-4)
    assert res.rms_log < 1e-6 and not res.notes


def test_recovers_with_noise_and_cv_is_out_of_sample():
    truth = {"fixed_us": 40.0, "memory_efficiency": 0.6}
    idx = np.arange(len(BYTES))
    meas = toy_predict(truth, idx) * np.exp(rng.normal(0, 0.03, len(idx)))
    res = fit(toy_predict, PARAMS, meas, idx)
    assert res.values["fixed_us"] == pytest.approx(40.0, rel=0.1)
    assert res.values["memory_efficiency"] == pytest.approx(0.6, rel=0.1)
    folds = kfold(np.argsort(BYTES), 4)
    assert sorted(np.concatenate(folds).tolist()) == idx.tolist()
    pred, notes = cross_validate(toy_predict, PARAMS, meas, idx, folds)
    cv = np.abs(pred / meas - 1)
    assert not notes and np.isfinite(pred).all()
    assert cv.mean() >= res.abs_err.mean() - 1e-9  # held-out error is not below the in-sample error
    assert cv.mean() < 0.06


def test_unidentified_parameter_goes_neutral():
    # the floor (2 us) is always below fixed + work here: the data cannot see it
    truth = {"fixed_us": 23.0, "memory_efficiency": 0.71}
    meas = toy_predict(truth, np.arange(len(BYTES)))
    ps = PARAMS + [Param("floor_us", 0, 500, 2.0, 0.0)]
    res = fit(toy_predict, ps, meas, np.arange(len(BYTES)))
    assert "floor_us" not in res.values and res.neutral == {"floor_us": 0.0}
    assert any("floor_us: not identified" in n for n in res.notes)
    assert res.values["fixed_us"] == pytest.approx(23.0, rel=1e-4)


def test_refuses_more_parameters_than_data_supports():
    meas = toy_predict({"fixed_us": 1.0, "memory_efficiency": 0.5}, np.arange(5))
    with pytest.raises(InputError, match="refusing to fit 2 parameters to 5 measurements"):
        fit(toy_predict, PARAMS, meas, np.arange(5))


def test_by_family():
    fam = np.array(["a", "a", "b", "b", "b"])
    folds = by_family(fam, np.arange(5))
    assert [f.tolist() for f in folds] == [[0, 1], [2, 3, 4]]
