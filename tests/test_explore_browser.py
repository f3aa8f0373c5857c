"""`qesim explore` in a real browser: headless Chromium (Debian's chromium + chromium-driver, driven
by selenium) moves a slider and reads the numbers, which must equal what `qesim estimate` gives
for the same hardware. Runs in CI (scripts/test.sh installs the browser); skipped elsewhere only
when the browser or the [explore] extra is missing."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")


def _missing() -> str:
    try:
        import dash  # noqa: F401
        import selenium  # noqa: F401
    except ModuleNotFoundError as e:
        return f"python package {e.name} missing (pip install -e '.[explore]')"
    if not CHROMIUM or not DRIVER:
        return "chromium / chromedriver missing (apt-get install chromium chromium-driver)"
    return ""


if _missing():
    if os.environ.get("CI"):
        raise RuntimeError(f"browser test cannot run in CI: {_missing()}")
    pytest.skip(_missing(), allow_module_level=True)

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402

HW = "qe-paper-npu"
WORKLOAD = ["--model", "llama2-7b", "--setting", "W4A8", "--method", "qe", "--stage", "prefill",
            "--seq-len", "128", "--context", "0", "--batch", "1"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


@pytest.fixture(scope="module")
def app_url():
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "qesim.cli", "explore", "--port", str(port), "--hw", HW,
                             "--sweep", str(ROOT / "reports" / "energy_sweep" / "sweep.parquet")],
                            env=_env(), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        for _ in range(120):  # at most ~60 s for the server to come up
            try:
                urllib.request.urlopen(url, timeout=2).read()
                break
            except OSError:
                if proc.poll() is not None:
                    raise RuntimeError(proc.stdout.read().decode())
                time.sleep(0.5)
        else:
            raise RuntimeError("qesim explore did not start")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def browser():
    o = webdriver.ChromeOptions()
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1500,1300"):
        o.add_argument(a)
    o.binary_location = CHROMIUM
    d = webdriver.Chrome(service=Service(DRIVER), options=o)
    d.set_page_load_timeout(60)
    yield d
    d.quit()


def _wait(d, pred, timeout=60.0):
    t0 = time.time()
    while time.time() - t0 < timeout:
        try:
            v = pred()
            if v:
                return v
        except Exception:  # element not rendered yet
            pass
        time.sleep(0.05)
    raise AssertionError("timed out waiting for the page")


def _value(d, ident):
    return d.find_element(By.ID, ident).get_attribute("data-value")


def _estimate(hw_path) -> dict:
    out = subprocess.run([sys.executable, "-m", "qesim.cli", "estimate", "--hw", str(hw_path), "--json"] + WORKLOAD,
                         env=_env(), cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def _hw_with_bandwidth(tmp_path, gbps: float) -> Path:
    from qesim.hw.loader import load_hw

    hw = load_hw(HW).with_updates({"hbm.bandwidth_gbps": gbps})
    p = tmp_path / "hw.yaml"
    p.write_text(yaml.safe_dump(hw.model_dump(), sort_keys=False))
    return p


def test_slider_moves_numbers_to_what_estimate_gives(app_url, browser, tmp_path):
    d = browser
    d.get(app_url)
    lat0 = float(_wait(d, lambda: _value(d, "out-latency"), timeout=240.0))  # cold start on a loaded machine
    ref = _estimate(HW)
    assert lat0 == pytest.approx(ref["latency_s"], rel=1e-12)
    assert float(_value(d, "out-ept")) == pytest.approx(ref["energy_per_token_j"], rel=1e-12)
    assert d.find_element(By.ID, "out-latency").text == f"{ref['latency_s'] * 1e3:.4g} ms"

    # halve the bandwidth step by step with the keyboard on the HBM slider (a real knob move)
    thumb = d.find_element(By.CSS_SELECTOR, "#hbm_gbps [role=slider]")
    t0 = time.time()
    for _ in range(4):
        thumb.send_keys(Keys.ARROW_LEFT)
    lat1 = float(_wait(d, lambda: float(_value(d, "out-latency")) != lat0 and
                       float(_value(d, "hbm_gbps-show")) < 460 and _value(d, "out-latency")))
    took = time.time() - t0
    gbps = float(_value(d, "hbm_gbps-show"))
    time.sleep(1.0)  # let any queued update land, then read the settled values
    lat1, gbps = float(_value(d, "out-latency")), float(_value(d, "hbm_gbps-show"))
    assert gbps < 460 and lat1 > lat0  # less bandwidth on a bandwidth-bound config: slower
    ref1 = _estimate(_hw_with_bandwidth(tmp_path, gbps))
    assert lat1 == pytest.approx(ref1["latency_s"], rel=1e-12)
    assert float(_value(d, "out-ept")) == pytest.approx(ref1["energy_per_token_j"], rel=1e-12)
    assert d.find_element(By.ID, "out-area").text == f"{ref1['area_mm2']:.4g} mm²"
    assert took < 30.0, f"a slider change took {took:.2f} s to reach the page"  # loose: CI shares 2 cores
    d.save_screenshot(str(ROOT / "tests" / ".explore_estimate.png")) if os.environ.get("QESIM_SCREENSHOTS") else None


def test_sweep_tab_shows_the_pareto_front(app_url, browser):
    import pandas as pd

    from qesim.dse.pareto import pareto_front

    d = browser
    d.get(app_url)
    _wait(d, lambda: _value(d, "out-latency"), timeout=240.0)
    d.find_element(By.XPATH, "//*[contains(text(), 'sweep Pareto front')]").click()
    rows = _wait(d, lambda: d.find_elements(By.CSS_SELECTOR, "#front-table tr"))
    df = pd.read_parquet(ROOT / "reports" / "energy_sweep" / "sweep.parquet")
    known = [c for c in df.columns if df[c].dtype.kind in "fi" and df[c].notna().any()]
    y = next(c for c in ("energy_per_token_j", "area_mm2", "sram_bytes") if c in known)
    objs = ["latency_s", y] + (["area_mm2"] if "area_mm2" in known and y != "area_mm2" else [])
    front = pareto_front(df.dropna(subset=objs), {c: "min" for c in objs})
    assert len(rows) - 1 == min(len(front), 200)  # header row + one row per front point
    if os.environ.get("QESIM_SCREENSHOTS"):
        d.save_screenshot(str(ROOT / "tests" / ".explore_sweep.png"))
