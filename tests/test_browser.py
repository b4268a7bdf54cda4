"""A real JupyterLab in headless Chromium: run a notebook, move a slider, export, see Netron's graph.

Needs Debian's chromium (.ci/run installs it); skipped with the reason when it is absent.
"""

import json
import os
import re
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
        metrics = page.locator("table.workbench-parity")
        expect(metrics).to_contain_text("ONNX Runtime")
        picture = page.locator(".workbench-comparison").first
        before_metrics, before_picture = metrics.inner_text(), picture.get_attribute("src")

        # Issue 22.10: choosing "gray", whose values are the model's own, shows "gray", not the model's own preset.
        # The widget's messages are read between cells: wait for Run All to finish first.
        idle = page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").first
        expect(idle).to_be_attached()
        preset = page.locator(".widget-dropdown:has(.widget-label:text-is('preset')) select")
        preset.select_option(label="model's own (training)")
        page.wait_for_timeout(1500)
        preset.select_option(label="gray")
        page.wait_for_timeout(1500)  # whatever the front end echoes back must not switch it
        expect(idle).to_be_attached()
        expect(preset).to_have_value("gray")
        # Issue 22.8/22.9: a 12 px drag of the scale handle is a step a user can aim (it doubled the scale before),
        # its box shows the value aimed at without float noise, and the value stays put after the release
        typed = page.locator(".widget-hbox:has(.widget-slider .widget-label:text-is('scale')) .widget-text input")
        shown = typed.first.input_value()
        handle = page.locator(".widget-hbox:has(.widget-slider .widget-label:text-is('scale')) .noUi-handle").first
        handle.scroll_into_view_if_needed()
        box = handle.bounding_box()
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        page.mouse.down()
        for dx in (4, 8, 12):
            page.mouse.move(box["x"] + box["width"] / 2 + dx, box["y"] + box["height"] / 2)
        page.mouse.up()
        expect(typed.first).not_to_have_value(shown)
        page.wait_for_timeout(1500)
        nudged = typed.first.input_value()
        assert 0.01 < float(nudged) / float(shown) - 1 < 0.15, (shown, nudged)
        assert len(nudged.lstrip("0.").replace(".", "")) <= 4, f"float noise in the scale box: {nudged}"

        # Type a scale into the exact-value box beside the scale slider, as a user would.
        typed.first.fill("0.03")
        typed.first.press("Enter")
        expect(metrics).not_to_have_text(before_metrics)
        expect(picture).not_to_have_attribute("src", before_picture)
        assert "FAIL" in metrics.inner_text()  # away from the matched values, parity visibly breaks

        page.get_by_role("button", name="Match PyTorch").click()
        try:
            expect(metrics).not_to_contain_text("out of date")  # every column recomputed, fastest first
        except AssertionError as e:  # say what the widget said (a column once stayed out of date, cause unknown)
            errors = page.locator(".workbench-errors").all_inner_texts()
            busy = page.locator("text=/results below are out of date/").all_inner_texts()
            raise AssertionError(f"{e}\nthe widget's error area: {errors}\nbusy line: {busy}") from e
        page.wait_for_timeout(1500)  # the sliders echo their displayed values back: they must not break the match
        expect(metrics).not_to_contain_text("out of date")
        assert "FAIL" not in metrics.inner_text() and "PASS" in metrics.inner_text()

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


SCENARIO = """\
import sys
sys.path.insert(0, {tests!r})
from conftest import tiny_classifier
from workbench import Preprocess, Workbench
wb = Workbench(tiny_classifier(num_classes=10), "../sample_images", task="classification",
               preprocess=Preprocess.preset("imagenet", size=(48, 48)))
wb
"""


def _scenario_notebook(root: Path) -> Path:
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(SCENARIO.format(tests=str(ROOT / "tests")))]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = root / "notebooks" / "scenario.ipynb"
    nbformat.write(nb, path)
    return path


def _launch(p):
    return p.chromium.launch(
        executable_path=CHROMIUM, headless=True,
        args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
              "--no-first-run", "--disable-sync", "--disable-quic"])


def _run_all(page):
    from playwright.sync_api import expect

    page.locator(".jp-Notebook").first.wait_for()
    try:
        page.get_by_role("alert").get_by_role("button", name="No").click(timeout=5_000)
    except Exception:
        pass
    try:
        page.get_by_role("dialog").get_by_role("button", name="Select Kernel").click(timeout=15_000)
    except Exception:
        pass
    expect(page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").first).to_be_attached()
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()


def test_widget_shows_what_it_computed_in_a_real_browser(lab):
    """Issue 13's scenarios as a user drives them: a preset applied exactly (1), graph buttons by format on one
    private server (2, 10), controls in step after Match and bake (3), refusals and the confirm before files
    that fail parity (5, 6), every image paged through (8)."""
    from playwright.sync_api import expect, sync_playwright

    root = lab["root"]
    _scenario_notebook(root)
    expect.set_options(timeout=180_000)
    requests = []
    with sync_playwright() as p:
        browser = _launch(p)
        page = browser.new_page(viewport={"width": 1400, "height": 2200})
        page.set_default_timeout(180_000)
        page.on("request", lambda r: requests.append(r.url))
        page.goto(f"{lab['base']}/lab/tree/notebooks/scenario.ipynb?token={lab['token']}")
        _run_all(page)
        export = page.get_by_role("button", name="Export")
        expect(export).to_be_visible()
        metrics = page.locator("table.workbench-parity")
        expect(metrics).to_contain_text("tolerance")
        expect(metrics).to_contain_text("0.01 of scale (fp16")  # item 7: each format's tolerance, and why

        def text_box(label):
            return page.locator(f".widget-hbox:has(.widget-slider .widget-label:text-is('{label}')) "
                                ".widget-text input").first

        # 1. caffe: the biases are caffe's, exactly, in the boxes and on the sliders
        preset = page.locator(".widget-dropdown:has(.widget-label:text-is('preset')) select")
        preset.select_option(label="caffe")
        expect(text_box("B")).to_have_value("-103.939")
        expect(text_box("R")).to_have_value("-123.68")
        expect(page.locator("text=in force: caffe")).to_be_visible()
        page.wait_for_timeout(1500)  # whatever the front end echoes back (it sends old handle values) must not win
        handle = page.locator(".widget-hbox:has(.widget-slider .widget-label:text-is('R')) .noUi-handle").first
        assert float(handle.get_attribute("aria-valuenow")) == pytest.approx(-123.68, abs=0.1)
        expect(text_box("R")).to_have_value("-123.68")
        expect(page.locator("text=in force: caffe")).to_be_visible()
        expect(preset).to_have_value("caffe")

        # 3. Match PyTorch names the model's own preset; bake disables the values and shows the exact ones
        page.get_by_role("button", name="Match PyTorch").click()
        expect(preset).to_have_value("model's own (training)")
        page.get_by_role("checkbox", name="bake the exact normalization into the model").check()
        expect(text_box("scale")).to_be_disabled()
        expect(text_box("scale")).to_have_value("0.017124753831663668, 0.01750700280112045, 0.017429193899782137")
        expect(metrics).not_to_contain_text("FAIL")
        page.get_by_role("checkbox", name="bake the exact normalization into the model").uncheck()
        expect(text_box("scale")).to_be_enabled()

        # 8. every image: page 2 shows images 5-8
        expect(page.locator("text=images 1-4 of 8")).to_be_visible()
        page.locator("button:has(.fa-chevron-right)").click()
        expect(page.locator("text=images 5-8 of 8")).to_be_visible()

        # 6. the Match values fail parity for an ImageNet model (one scalar scale): Export asks first
        out = root / "notebooks" / "exports" / "SmallCNN"
        export.click()
        expect(page.locator("text=fail parity with this preprocessing")).to_be_visible()
        assert not out.exists()
        for name in ("Export anyway", "Cancel"):  # 22.7: beside the long reason, neither is cut to "Export..."
            button = page.get_by_role("button", name=name)
            fits = button.evaluate("b => [b.scrollWidth, b.clientWidth]")
            assert fits[0] <= fits[1], f"{name!r} is cut: {fits[0]} px of text in {fits[1]} px"
        page.get_by_role("button", name="Export anyway").click()
        expect(page.locator("text=parity_report.json")).to_be_visible()
        report = json.loads((out / "parity_report.json").read_text())
        shown_scale = float(text_box("scale").input_value())
        assert report["preprocess"]["scale"] == [shown_scale] * 3  # what the controls said, not the training std
        assert report["formats"]["onnx"]["preprocess"]["scale"] == [shown_scale] * 3
        # 5. again without overwrite: refused, with the reason, and the previous list is gone
        export.click()
        expect(page.locator("text=already exists")).to_be_visible()
        expect(page.locator("text=parity_report.png (picture")).to_have_count(0)

        # 2 and 10. graph buttons by format, the artifact named on the button, one server, nothing off the machine
        page.get_by_role("tab", name="Graph").click()
        expect(page.get_by_role("button", name="ONNX", exact=True)).to_be_visible()
        frame = page.frame_locator("iframe[title^='Netron']")
        expect(frame.locator("text=Conv").first).to_be_visible(timeout=60_000)
        expect(frame.get_by_text("Accept", exact=True)).to_have_count(0)
        first_src = page.locator("iframe[title^='Netron']").get_attribute("src")
        page.get_by_role("button", name="Core ML", exact=True).click()
        expect(page.locator("iframe[title^='Netron: model.mlmodel']")).to_be_attached()
        expect(frame.locator("text=conv").first).to_be_visible(timeout=60_000)
        second_src = page.locator("iframe[title^='Netron']").get_attribute("src")
        assert second_src.split("?")[0] == first_src.split("?")[0], "toggling started another Netron server"

        # Issue 17: the Compression tab. Tick ONNX int8 (it compresses in the background), see its size and
        # figures, the chart and the images where it differs most; formats not live say why they cannot be ticked.
        page.get_by_role("tab", name="Compression").click()
        onnx_row = page.locator(".widget-hbox:has(span:text-is('ONNX'))").first
        onnx_row.get_by_role("checkbox", name="int8", exact=True).check()
        table = page.locator("table.workbench-compression")
        expect(table).to_contain_text("ONNX int8")
        expect(table).to_contain_text("calibrated on 8 sample images")
        expect(table).to_contain_text("with the preprocessing in force")
        expect(page.locator("text=run ExecuTorch live first").first).to_be_visible()
        charts = page.locator(".jp-OutputArea-output .widget-tab-contents .widget-image:visible")
        expect(charts).to_have_count(2)  # the chart, and the picture of the images it differs most on
        # Issue 22.6: both are shown at their own size: neither shrunk (labels unreadable) nor blown up (blurred)
        for picture in (page.locator("img.workbench-chart"), page.locator("img.workbench-variant-picture")):
            expect(picture).to_be_visible()
            page.wait_for_function("i => i.complete && i.naturalWidth > 0", arg=picture.element_handle())
            natural, shown = picture.evaluate("i => [i.naturalWidth, i.getBoundingClientRect().width]")
            assert abs(natural - shown) <= 1, f"a {natural} px picture shown {shown:.0f} px wide"
        shot = os.environ.get("WORKBENCH_SCREENSHOT")
        if shot:
            page.locator(".jp-OutputArea-output:has(.widget-button)").first.screenshot(
                path=str(Path(shot).with_name("workbench_compression.png")))
        # Issue 22.1: Export with a compressed variant ticked writes it beside its format's file, and the bar ends full
        page.get_by_role("tab", name="Model").click()
        page.get_by_role("checkbox", name="overwrite existing files").check()
        export.click()
        page.get_by_role("button", name="Export anyway").click()
        expect(page.locator("text=SmallCNN.int8.onnx")).to_be_visible()
        assert {"SmallCNN.onnx", "SmallCNN.int8.onnx", "parity_report.json"} <= {f.name for f in out.iterdir()}
        bar = page.locator(".widget-hbox:has(button .fa-download) .widget-hprogress .progress-bar").first
        expect(bar).to_have_attribute("style", re.compile(r"width: 100%"))
        if shot:
            panel = page.locator(".widget-hbox:has(button .fa-download)").first.locator("xpath=..")
            panel.scroll_into_view_if_needed()
            panel.screenshot(path=str(Path(shot).with_name("workbench_export_variants.png")))
        page.get_by_role("tab", name="Compression").click()
        preset.select_option(label="caffe")  # the variant reruns; its calibration no longer fits
        expect(table).to_contain_text("not the preprocessing in force")
        if shot:
            page.get_by_role("tab", name="Model").click()
            widget = page.locator(".jp-OutputArea-output:has(.widget-button)").first
            widget.screenshot(path=str(Path(shot).with_name("workbench_scenario.png")))
        browser.close()
    outside = [u for u in requests if not u.startswith(lab["base"]) and not u.startswith(("data:", "blob:"))]
    assert not outside, f"the page asked beyond the Jupyter server: {outside[:5]}"


def test_notebook_7_runs_the_workbench(lab):
    """The same widget in Jupyter Notebook 7's interface (make lab installs it)."""
    from playwright.sync_api import expect, sync_playwright

    _scenario_notebook(lab["root"])
    expect.set_options(timeout=180_000)
    with sync_playwright() as p:
        browser = _launch(p)
        page = browser.new_page(viewport={"width": 1400, "height": 1800})
        page.set_default_timeout(180_000)
        page.goto(f"{lab['base']}/notebooks/notebooks/scenario.ipynb?token={lab['token']}")
        _run_all(page)
        expect(page.get_by_role("button", name="Export")).to_be_visible()
        expect(page.locator("table.workbench-parity")).to_contain_text("PASS")
        page.get_by_role("button", name="Match PyTorch").click()
        expect(page.locator(".widget-dropdown:has(.widget-label:text-is('preset')) select")).to_have_value(
            "model's own (training)")
        browser.close()
