"""A real JupyterLab in headless Chromium: run a notebook, move a slider, export, see Netron's graph.

Needs Debian's chromium (.ci/run installs it); skipped with the reason when it is absent.
"""

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

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not Path(CHROMIUM).exists() and not os.environ.get("CI"),
                                 reason="Debian's chromium is not installed (apt-get install chromium)")]

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    # A copy of the checkout's notebooks and photos, so the run writes its exports outside the repository.
    root = tmp_path_factory.mktemp("lab")
    shutil.copytree(ROOT / "notebooks", root / "notebooks", ignore=shutil.ignore_patterns("exports", ".ipynb_*"))
    shutil.copytree(ROOT / "sample_images", root / "sample_images")
    port, token = free_port(), "workbench-test-token"
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(root / ".jupyter"), "JUPYTER_RUNTIME_DIR": str(root / ".runtime")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", f"--ServerApp.port={port}", "--ServerApp.ip=127.0.0.1",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}", "--LabApp.news_url=",
         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
        + (["--allow-root"] if os.geteuid() == 0 else []),
        cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2)
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail("JupyterLab did not start:\n" + proc.stdout.read().decode()[-3000:])
            time.sleep(0.5)
    yield {"root": root, "base": base, "token": token}
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def test_notebook_01_slider_export_and_graph_in_a_real_browser(lab):
    """make lab, open notebook 01, Run All: the whole workbench appears and works."""
    from playwright.sync_api import expect, sync_playwright

    root = lab["root"]
    expect.set_options(timeout=180_000)  # the widget converts three formats before it draws
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--no-first-run", "--disable-sync", "--disable-quic"])
        page = browser.new_page(viewport={"width": 1400, "height": 1800})
        page.set_default_timeout(180_000)
        page.goto(f"{lab['base']}/lab/tree/notebooks/01_super_resolution.ipynb?token={lab['token']}")
        page.locator(".jp-Notebook").first.wait_for()
        try:  # JupyterLab's "get notified about news?" toast covers part of the page
            page.get_by_role("alert").get_by_role("button", name="No").click(timeout=5_000)
        except Exception:
            pass
        select = page.get_by_role("dialog").get_by_role("button", name="Select Kernel")
        try:  # JupyterLab may ask which kernel to start even when the notebook names one
            select.click(timeout=15_000)
        except Exception:
            pass
        expect(page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").first).to_be_attached()
        page.get_by_role("menuitem", name="Run", exact=True).click()
        page.get_by_role("menuitem", name="Run All Cells", exact=True).click()

        building = page.locator(".widget-hprogress:has(.widget-label:text-matches('^(converting to|comparing on)'))")
        expect(building).to_be_visible()  # while the widget converts, a bar says what it is doing
        export = page.get_by_role("button", name="Export")
        expect(export).to_be_visible()
        expect(building).to_have_count(0)  # and it is gone once the widget shows
        metrics = page.locator("table:has-text('top-1 / mIoU')")
        expect(metrics).to_contain_text("ONNX Runtime")
        picture = page.locator(".widget-image").first
        before_metrics, before_picture = metrics.inner_text(), picture.get_attribute("src")

        # Move the scale slider through its readout, as a user typing a value would.
        readout = page.locator(".widget-slider:has(.widget-label:text-is('scale')) .widget-readout").first
        readout.click()
        readout.fill("0.03")
        readout.press("Enter")
        expect(metrics).not_to_have_text(before_metrics)
        expect(picture).not_to_have_attribute("src", before_picture)
        assert "FAIL" in metrics.inner_text()  # away from the matched values, parity visibly breaks

        page.get_by_role("button", name="Match PyTorch").click()
        expect(metrics).to_contain_text("PASS")
        page.wait_for_timeout(1500)  # the sliders echo their displayed values back: they must not break the match
        assert "FAIL" not in metrics.inner_text()

        export.click()
        expect(page.locator("text=parity_report.json")).to_be_visible()
        out = root / "notebooks" / "exports" / "SuperResolutionNet"
        assert {"SuperResolutionNet.onnx", "SuperResolutionNet.mlpackage", "SuperResolutionNet.pt",
                "parity_report.json", "parity_report.png"} <= {f.name for f in out.iterdir()}
        assert json.loads((out / "parity_report.json").read_text())["formats"]["onnx"]["passed"] is True

        shot = os.environ.get("WORKBENCH_SCREENSHOT")
        if shot:
            # tall enough for the whole widget: taller than the notebook panel, JupyterLab's bars cover its top
            page.set_viewport_size({"width": 1400, "height": 3000})
            widget = page.locator(".jp-OutputArea-output:has(.widget-button)").first
            widget.scroll_into_view_if_needed()
            widget.screenshot(path=shot)
            page.set_viewport_size({"width": 1400, "height": 1800})

        # The Graph tab: Netron's page through jupyter-server-proxy, showing the model's nodes.
        page.get_by_role("tab", name="Graph").click()
        frame = page.frame_locator("iframe[title^='Netron']")
        expect(frame.locator("text=Conv").first).to_be_visible(timeout=60_000)
        expect(frame.get_by_text("Accept", exact=True)).to_have_count(0)  # no consent prompt (issue 13.10)
        expect(frame.locator("text=Relu").first).to_be_visible()
        # The notebook's last cell ran too: its own export is on disk.
        assert (root / "notebooks" / "exports" / "01_super_resolution" / "SuperResolutionNet.onnx").is_file()
        browser.close()
