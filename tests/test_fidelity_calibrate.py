"""qesim calibrate / fidelity machinery: measured-file reading, YAML writing, synthetic recovery.

The predictor here is a toy built from the terms' own functions (qesim.perf.terms) on each kernel's
bytes and MACs, so these tests do not depend on how the cost model applies the terms; the real
predictor (qesim.fidelity.kernels.make_predictor) is tested against the cost model elsewhere.
"""

import subprocess
import sys

import numpy as np
import pytest
import yaml

from qesim.errors import InputError
from qesim.fidelity.calibrate import run_calibrate
from qesim.fidelity.measured import read_measured
from qesim.hw.loader import load_hw
from qesim.perf import terms as T

LLMC = "qesim/fidelity/data/llmcompass"
HW = "hw_configs/nvidia-a100-80gb.yaml"


def toy_factory(hw, table):
    """Latency from the terms' formulas: max(floor, fixed + max(mem, comp) + min(mem, comp)/steps)."""
    M, N, K = (table[c].to_numpy(dtype=float) for c in "MNK")
    kern = table.kernel.to_numpy()
    f = hw.frequency_hz
    mm = kern == "matmul"
    elems = np.where(kern == "gelu", M, M * N)
    byts = np.where(mm, 2 * (M * K + K * N + M * N), 4 * elems)
    macs = np.where(mm, M * N * K, 0.0)
    sfu = np.where(mm, 0.0, 8 * elems / hw.sfu.lanes)
    cls = table.op_class.to_numpy()

    def predict(values, idx):
        idx = np.asarray(idx)
        out = np.empty(len(idx))
        for j, i in enumerate(idx):
            g = lambda k, d: values.get(f"terms.{cls[i]}.{k}", d)  # noqa: E731
            mem = byts[i] / T.memory_bytes_per_cycle(hw.hbm.bandwidth_gbps, f, g("memory_efficiency", 1.0))
            eff = T.compute_efficiency(M[i], N[i], max(K[i], 1), peak_fraction=g("compute_efficiency", 1.0),
                                       k_half=g("k_half", 0.0))
            comp = macs[i] / hw.mpe.rate("mm", 16, 16) / eff + sfu[i] / g("compute_efficiency", 1.0)
            work = max(mem, comp) + min(mem, comp) / 8
            out[j] = T.call_cycles(work, f, fixed_us=g("fixed_us", 0.0), floor_us=g("floor_us", 0.0)) / f
        return out

    return predict


def test_reads_llmcompass_as_is():
    t = read_measured(LLMC)
    assert len(t) == 170 and set(t.device) == {"A100", "MI210"}
    a = t[t.device == "A100"]
    assert a.kernel.value_counts().to_dict() == {"matmul": 20, "softmax": 22, "layernorm": 22, "gelu": 20}
    r = a[(a.kernel == "matmul") & (a.M == 64)].iloc[0]
    assert (r.N, r.K, r.latency_s) == (12288, 12288, pytest.approx(0.19e-3))
    s = a[(a.kernel == "softmax") & (a.M == 4096) & (a.N == 4096)].iloc[0]
    assert s.latency_s == pytest.approx(4096 * 4096 / (204.5603028420465e9))
    assert set(a[a.kernel == "matmul"].family) == {"matmul[N=12288,K=12288]", "matmul[M=8192]"}
    assert set(a[a.kernel == "gelu"].family) == {"gelu"}


@pytest.mark.parametrize("name,text,match", [
    ("matmul_X.csv", "64, 128, 128, 0.19ms\n", "has 5 columns, found 4"),
    ("matmul_X.csv", "64, 128, abc, 0.19ms, 1Tflops\n", "K is not a number"),
    ("softmax_X.csv", "64, 128, -3\n", "must be a positive"),
    ("gelu_X.csv", "", "no measurements"),
    ("mine.csv", "a,b\n1,2\n", "not a measured-kernel CSV"),
    ("mine.csv", "kernel,M,N,K,latency_us\nconv,1,2,3,4\n", "unknown kernel 'conv'"),
])
def test_bad_measured_files_one_clear_error(tmp_path, name, text, match):
    f = tmp_path / name
    f.write_text(text)
    with pytest.raises(InputError, match=match):
        read_measured(f)


def test_bad_measured_file_cli_exit_2(tmp_path):
    f = tmp_path / "matmul_X.csv"
    f.write_text("64, 128, abc, 0.19ms, 1Tflops\n")
    for cmd in (["calibrate", HW, "--measured", str(f), "--out", str(tmp_path / "o.yaml")],
                ["fidelity", "--measured", str(f), "--out", str(tmp_path)]):
        r = subprocess.run([sys.executable, "-m", "qesim.cli", *cmd], capture_output=True, text=True)
        assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
        assert "matmul_X.csv:1: K is not a number" in r.stderr


def test_headed_csv(tmp_path):
    f = tmp_path / "k.csv"
    f.write_text("kernel,M,N,K,latency_us,device\nmatmul,128,256,512,30,X\nsoftmax,4,8,,12,X\n")
    t = read_measured(f)
    assert t.latency_s.tolist() == pytest.approx([30e-6, 12e-6]) and t.K.tolist() == [512, 0]


def test_calibrate_recovers_known_terms_and_writes_yaml(tmp_path):
    hw = load_hw(HW)
    truth = {"terms.linear.fixed_us": 25.0, "terms.linear.compute_efficiency": 0.9, "terms.linear.k_half": 40.0,
             "terms.linear.memory_efficiency": 0.85, "terms.norm.fixed_us": 30.0,
             "terms.norm.memory_efficiency": 0.6}
    real = read_measured(LLMC)
    real = real[(real.device == "A100") & real.kernel.isin(["matmul", "layernorm"])].reset_index(drop=True)
    synth = toy_factory(hw, real)(truth, np.arange(len(real)))
    f = tmp_path / "k.csv"
    lines = ["kernel,M,N,K,latency_us,device"] + [
        f"{r.kernel},{r.M},{r.N},{r.K or ''},{float(s) * 1e6!r},SYN" for r, s in zip(real.itertuples(), synth)]
    f.write_text("\n".join(lines) + "\n")
    out = tmp_path / "cal.yaml"
    cal = run_calibrate(HW, str(f), str(out), toy_factory, command="test")
    got = cal.values()
    for k, v in truth.items():
        assert got[k] == pytest.approx(v, rel=1e-3), k
    # the synthetic data have no floor: whatever floor the fit keeps changes no prediction
    assert cal.fits["norm"].rms_log < 1e-6 and cal.fits["linear"].rms_log < 1e-6
    text = out.read_text()
    assert "name: cal" in text and "# data: 42 measured SYN kernels" in text and "rms log residual" in text
    loaded = load_hw(str(out))
    assert loaded.terms.linear.fixed_us == pytest.approx(25.0, rel=1e-3)
    assert loaded.hbm.bandwidth_gbps == 2039  # the rest of the input is kept
    assert yaml.safe_load(text)["terms"]["norm"]["memory_efficiency"] == pytest.approx(0.6, rel=1e-3)


def test_calibrate_refuses_unsupported_fit(tmp_path):
    f = tmp_path / "k.csv"
    f.write_text("kernel,M,N,K,latency_us\nmatmul,128,256,512,30\nmatmul,256,256,512,40\nmatmul,512,256,512,50\n")
    with pytest.raises(InputError, match="refusing to fit 5 parameters to 3 measurements"):
        run_calibrate(HW, str(f), str(tmp_path / "o.yaml"), toy_factory)


def test_calibrate_needs_device_when_several():
    with pytest.raises(InputError, match="several devices.*--device"):
        run_calibrate(HW, LLMC, "/tmp/never.yaml", toy_factory)


def test_fidelity_report_with_toy_predictor(tmp_path):
    from qesim.fidelity.validate import run_validation
    from qesim.report.fidelity import write_fidelity

    res = run_validation(LLMC, load_hw(HW), "A100", toy_factory, folds=4, transfer=[(load_hw("amd-mi210"), "MI210")])
    k = res.kernels
    assert len(k) == 84 + 86 and k[k.device == "A100"].kfold_us.notna().all()
    s = res.summary.set_index(["device", "op_class"])
    # out-of-sample error is not below the in-sample error of the same fit
    for cls in ("linear", "softmax", "norm", "elementwise"):
        assert s.loc[("A100", cls), "kfold_mean_abs_err_pct"] >= s.loc[("A100", cls), "fitted_mean_abs_err_pct"] - 1e-6
    assert np.isfinite(s.loc[("MI210", "all"), "transfer_mean_abs_err_pct"])
    paths = write_fidelity(res, tmp_path, "qesim fidelity (test)")
    md = (tmp_path / "fidelity.md").read_text()
    assert "Generated by `qesim fidelity (test)`" in md and "## Transfer to MI210" in md
    assert all(p.exists() and p.stat().st_size > 0 for p in paths)


def test_transfer_with_refit_fits_only_the_named_fields(tmp_path):
    """--terms-from + --measured + --refit: the donor's shape is kept, only the named fields are
    fitted to the target's kernels (synthetic: the target differs from the donor in compute_efficiency)."""
    from qesim.fidelity.calibrate import transfer_terms

    donor = tmp_path / "donor.yaml"
    src = open("hw_configs/nvidia-h100-sxm.yaml").read()
    donor.write_text(src.replace("name: nvidia-h100-sxm", "name: donor").replace(
        "terms:\n", "terms:\n  linear: {fixed_us: 20.0, compute_efficiency: 0.9, k_half: 30.0, memory_efficiency: 0.85}\n", 1))
    target = load_hw("hw_configs/nvidia-h100-sxm.yaml")
    truth = {"terms.linear.fixed_us": 20.0, "terms.linear.compute_efficiency": 0.7, "terms.linear.k_half": 30.0,
             "terms.linear.memory_efficiency": 0.85}
    shapes = [(n, n, n) for n in (512, 1024, 2048, 4096, 8192)] + [(8192, m, m) for m in (256, 1024, 4096)]
    import pandas as pd

    table = pd.DataFrame([dict(kernel="matmul", op_class="linear", M=m, N=nn, K=k) for m, nn, k in shapes])
    synth = toy_factory(target, table)(truth, np.arange(len(table)))
    f = tmp_path / "k.csv"
    f.write_text("kernel,M,N,K,latency_us,device\n" + "".join(
        f"matmul,{m},{nn},{k},{float(s) * 1e6!r},TGT\n" for (m, nn, k), s in zip(shapes, synth)))
    out = tmp_path / "t.yaml"

    def factory(hw, table):  # the toy predictor on top of the config's own (transferred) terms
        base = toy_factory(hw, table)
        own = {f"terms.linear.{k}": v for k, v in hw.terms.linear.model_dump().items() if v is not None}
        return lambda values, idx: base({**own, **values}, idx)

    transfer_terms("hw_configs/nvidia-h100-sxm.yaml", str(donor), str(out), measured=str(f),
                   refit=["compute_efficiency"], make_predictor=factory)
    got = load_hw(str(out)).terms.linear
    assert got.compute_efficiency == pytest.approx(0.7, rel=1e-4)  # refitted
    assert got.fixed_us == 20.0 and got.k_half == 30.0 and got.memory_efficiency == 0.85  # the donor's
    text = out.read_text()
    assert "Refitted on this device: compute_efficiency of linear" in text and "fitted on 8 TGT kernels" in text
    with pytest.raises(InputError, match="--refit: unknown field"):
        transfer_terms("hw_configs/nvidia-h100-sxm.yaml", str(donor), str(out), measured=str(f), refit=["bogus"],
                       make_predictor=factory)
