"""``qesim report``: the static HTML page, checked as files and in real headless Chromium."""

from __future__ import annotations

import re
import shutil
import subprocess
import textwrap
from html.parser import HTMLParser
from pathlib import Path

import pytest

pytest.importorskip("pyarrow")

from qesim.cli import main  # noqa: E402

SPACE = """\
space:
  base: flightllm-u280
  hw:
    hbm.bandwidth_gbps: [230, 460]
    scale.macs: [0.5, 1]
    buffers.weight_bytes: [524288, 2097152]
  workload:
    model: qwen2vl-2b
    setting: [W16A16, W4A8]
    method: qe
  scenarios:
    - {stage: prefill, seq_len: 64}
    - {stage: decode, context_len: 128}
"""

ACCURACY = """\
model,method,setting,metric,value
smollm2-135m,rtn,W4A8,ppl,25.0
smollm2-135m,qe,W4A8,ppl,21.0
smollm2-135m,rtn,W3A16,ppl,40.0
smollm2-135m,qe,W3A16,ppl,29.0
smollm2-135m,_run,W4A8,quant_s,3.0
"""


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.imgs, self.tables, self.h2 = [], 0, []
        self._in_h2 = False

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.imgs.append(dict(attrs)["src"])
        elif tag == "table":
            self.tables += 1
        elif tag == "h2":
            self._in_h2 = True
            self.h2.append("")

    def handle_endtag(self, tag):
        if tag == "h2":
            self._in_h2 = False

    def handle_data(self, data):
        if self._in_h2:
            self.h2[-1] += data


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("rep")
    space = d / "space.yaml"
    space.write_text(textwrap.dedent(SPACE))
    out = d / "reports"
    assert main(["sweep", str(space), "--out", str(out / "sweep"), "--quiet"]) == 0
    (out / "accuracy.csv").write_text(ACCURACY)
    (out / "inference.csv").write_text("model,hw,latency_s\nqwen2vl-2b,flightllm-u280,0.5\n")
    assert main(["report", "--out", str(out), "--model", "qwen2vl-2b", "--quiet"]) == 0
    return out


def test_report_files_and_structure(report):
    page = report / "index.html"
    assert page.exists()
    c = _Collect()
    c.feed(page.read_text())
    titles = " | ".join(c.h2)
    for want in ("Table 8", "accuracy vs speed", "Design-space sweep", "Per-op", "Inference"):
        assert want in titles
    assert c.tables >= 8
    names = {Path(s).name for s in c.imgs}
    assert {"sweep_pareto.png", "accuracy_vs_speed.png", "roofline.png", "speedup_heatmap.png",
            "latency_breakdown.png"} <= names
    for src in c.imgs:  # every image is a local, non-empty PNG next to the page
        p = report / src
        assert p.exists() and p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000
    text = page.read_text()
    assert "http://" not in text and "https://" not in text  # no external assets
    assert "Skipped" not in text.split("id='table8'")[1].split("id='others'")[0]  # sections 1-4 had their inputs


def test_report_skips_missing_inputs(tmp_path):
    out = tmp_path / "bare"
    assert main(["report", "--out", str(out), "--model", "qwen2vl-2b", "--quiet"]) == 0
    text = (out / "index.html").read_text()
    assert "Skipped: " in text and "accuracy.csv not found" in text and "no sweep result" in text
    assert "QE Table 8 reproduced" in text
    # every Skipped box names the command that fills it
    skips = re.findall(r'<p class="skip">(.*?)</p>', text)
    assert len(skips) >= 2 and all("Fill it with <code>qesim " in s for s in skips), skips
    from qesim.report.html import REPORTS

    box = re.search(r'<div class="skip">(.*?)</div>', text, re.S).group(1)  # the reports not in OUT
    rows = re.findall(r"<tr>(.*?)</tr>", box)
    assert len(rows) == len(REPORTS) and all("<code>qesim " in r for r in rows), rows
    assert "qesim energy --report --out" in box and "qesim fidelity --out" in box


def test_report_bad_sweep_dir_is_one_line_error(tmp_path, capsys):
    assert main(["report", "--out", str(tmp_path / "r"), "--sweep", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "sweep.parquet" in err[0]


CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run", "--disable-sync"]


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("chromium is not installed (Debian package `chromium`)")
    return exe


def test_report_renders_in_headless_chromium(report, tmp_path):
    exe = _chromium()
    url = (report / "index.html").resolve().as_uri()
    common = [exe, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000"]
    dom = subprocess.run(common + ["--dump-dom", url], capture_output=True, text=True, timeout=120).stdout
    m = re.search(r'<body[^>]*data-images-ok="(\d+)"[^>]*data-images-broken="(\d+)"', dom)
    assert m, "the page's load handler did not run"
    c = _Collect()
    c.feed((report / "index.html").read_text())
    assert int(m.group(1)) == len(c.imgs) >= 5  # every <img> decoded with a non-zero size
    assert int(m.group(2)) == 0
    assert dom.count("<table") == c.tables >= 8
    assert "qesim_speedup" in dom and "Pareto fronts" in dom
    shot = tmp_path / "shot.png"
    subprocess.run(common + ["--window-size=1280,2000", f"--screenshot={shot}", url], capture_output=True,
                   timeout=120)
    assert shot.exists() and shot.stat().st_size > 20000
    import matplotlib.image as mpimg

    px = mpimg.imread(shot)
    assert px.shape[0] >= 1000 and px.std() > 0.05  # not a blank page
