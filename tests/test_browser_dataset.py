"""The Dataset tab in a real JupyterLab (headless Chromium): a folder typed in, Run, the progress and the table
filling in, the worst images shown in the comparison by name, and back."""

import os
import re

import nbformat
import pytest
from test_browser import _launch, _run_all, lab  # noqa: F401  (lab: the module's JupyterLab fixture)

pytestmark = [pytest.mark.browser]

SETUP = '''
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

from workbench import Preprocess, Workbench
from workbench.zoo import SmallCNN

DATA = Path("photos")
rng = np.random.default_rng(0)
for k, path in enumerate(sorted(Path("../sample_images").glob("*.jpg")) * 8):
    im = Image.open(path).convert("RGB").resize((40, 40))
    im = ImageEnhance.Brightness(im).enhance(float(rng.uniform(0.3, 1.5)))
    (DATA / f"c{k % 4}").mkdir(parents=True, exist_ok=True)
    im.save(DATA / f"c{k % 4}" / f"{path.stem}_{k:02d}.jpg")
'''

WIDGET = '''
import torch
torch.manual_seed(0)
wb = Workbench(SmallCNN(num_classes=4, width=4).eval(), images="../sample_images",
               preprocess=Preprocess.preset("imagenet", size=(32, 32)), task="classification",
               labels=["c0", "c1", "c2", "c3"], formats=("onnx", "torchscript"), variants={"onnx": ["int8"]})
wb
'''


def test_a_dataset_run_fills_the_tab_and_its_worst_images_go_into_the_comparison(lab):  # noqa: F811
    from playwright.sync_api import expect, sync_playwright

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(SETUP), nbformat.v4.new_code_cell(WIDGET)]
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nbformat.write(nb, lab["root"] / "notebooks" / "dataset_tab.ipynb")
    expect.set_options(timeout=180_000)
    with sync_playwright() as p:
        browser = _launch(p)
        page = browser.new_page(viewport={"width": 1400, "height": 2200})
        page.set_default_timeout(180_000)
        page.goto(f"{lab['base']}/lab/tree/notebooks/dataset_tab.ipynb?token={lab['token']}")
        _run_all(page)
        expect(page.get_by_role("button", name="Export")).to_be_visible()

        page.get_by_role("tab", name="Dataset", exact=True).click()
        folder = page.get_by_placeholder("a folder of images, or one subfolder per class")
        folder.fill("photos")
        folder.press("Enter")
        page.locator("button.widget-button", has_text=re.compile(r"^\s*Run\s*$")).click()
        expect(page.locator("text=/64 \\/ 64 images/")).to_be_visible()
        expect(page.locator("text=/ · done/")).to_be_visible()
        table = page.locator(".workbench-dataset table")
        expect(table).to_contain_text("torchscript")
        expect(table).to_contain_text("onnx int8")
        page.get_by_role("button", name="worst in comparison").click()
        status = page.locator("text=/in the comparison: /")
        expect(status).to_be_visible()
        names = status.inner_text().split("in the comparison: ", 1)[1].split(", ")
        assert len(names) == 8 and all(n.startswith("c") and "/" in n for n in names), names
        shot = os.environ.get("WORKBENCH_SHOTS")
        if shot:
            page.screenshot(path=f"{shot}/dataset_tab.png", full_page=True)
            page.locator(".workbench-dataset-tab").screenshot(path=f"{shot}/dataset_tab_panel.png")  # the README's
        # the comparison's own table names them: its columns were computed on those images
        expect(page.locator(".workbench-comparison").first).to_be_visible()
        page.get_by_role("button", name="Back to the sample images").click()
        expect(status).to_have_count(0)
        browser.close()
