"""The Layers tab in a real JupyterLab (headless Chromium): MNN converted at fp16 and compared with PyTorch layer by
layer, the graph's nodes coloured by their error beside the legend, a row picked in the table outlined in the
graph; then an ONNX fp16 variant whose first layer overflows, drawn dark and named."""

import os

import nbformat
import pytest
from test_browser import _launch, _run_all, lab  # noqa: F401  (lab: the module's JupyterLab fixture)

pytestmark = [pytest.mark.browser]

WIDGET = '''
import torch
from torch import nn

from workbench import Preprocess, Workbench

torch.manual_seed(0)
net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                    nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                    nn.Linear(8, 4)).eval()
with torch.no_grad():
    net[0].weight.mul_(1e5)  # the first convolution's values pass fp16's 65504
wb = Workbench(net, images="../sample_images", preprocess=Preprocess.preset("unit", size=(32, 32)),
               task="classification", formats=("onnx", "mnn"), variants={"onnx": ["fp16"]})
wb
'''


def _fills(page):
    return page.locator(".workbench-layers-graph g.workbench-layer rect").evaluate_all(
        "rs => rs.map(r => [r.parentElement.dataset.torch, r.getAttribute('fill'), r.getAttribute('stroke')])")


def test_the_layers_tab_colours_the_graph_by_each_layers_error(lab):  # noqa: F811
    from playwright.sync_api import expect, sync_playwright

    from workbench.views.layers import BANDS, NONFINITE, PICKED

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(WIDGET)]
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nbformat.write(nb, lab["root"] / "notebooks" / "layers_tab.ipynb")
    expect.set_options(timeout=180_000)
    shot = os.environ.get("WORKBENCH_SHOTS")
    with sync_playwright() as p:
        browser = _launch(p)
        page = browser.new_page(viewport={"width": 1400, "height": 2000})
        page.set_default_timeout(180_000)
        page.goto(f"{lab['base']}/lab/tree/notebooks/layers_tab.ipynb?token={lab['token']}")
        _run_all(page)
        expect(page.get_by_role("button", name="Export")).to_be_visible()
        page.get_by_role("tab", name="Layers", exact=True).click()
        tab = page.locator(".workbench-layers-tab")
        expect(tab.get_by_text("nothing compared yet")).to_be_visible()

        tab.locator("select").first.select_option(label="MNN at fp16")
        tab.get_by_role("button", name="Compare layers").click()
        expect(tab.get_by_text("MNN at fp16 on image 1")).to_be_visible()
        expect(tab.locator(".workbench-layers-legend")).to_contain_text("within tolerance")
        expect(tab.locator(".workbench-layers-legend")).to_contain_text("not finite")
        fills = _fills(page)
        assert len(fills) >= 3, fills  # MNN folds each ReLU into its convolution: one node for both
        colours = {fill for _, fill, _ in fills}
        assert colours <= {b[1] for b in BANDS} | {NONFINITE[0]}, colours  # every node in a legend's colour
        outlined = [t for t, _, stroke in fills if stroke == PICKED]
        assert len(outlined) == 1, fills
        if shot:
            tab.screenshot(path=f"{shot}/layers_tab_mnn_fp16.png")

        # a row picked in the table is the node outlined in the graph, and its figures show
        table = tab.locator(".workbench-layers-table select")
        rows = table.locator("option").all_inner_texts()
        last = rows[-1].split()[0]  # a row starts with its PyTorch module
        assert [last] != outlined, (rows, outlined)
        table.select_option(index=len(rows) - 1)
        expect(tab.locator("pre", has_text=f"PyTorch module: {last}")).to_be_visible()
        page.wait_for_function(
            "p => [...document.querySelectorAll('.workbench-layers-graph g.workbench-layer')]"
            ".filter(g => g.querySelector('rect').getAttribute('stroke') === p[0]).map(g => g.dataset.torch)"
            ".join() === p[1]", arg=[PICKED, last])

        # ONNX's fp16 variant: the first convolution overflows, drawn in the legend's "not finite" colour
        tab.locator("select").first.select_option(label="ONNX fp16")
        tab.get_by_role("button", name="Compare layers").click()
        expect(tab.get_by_text("ONNX fp16 on image 1")).to_be_visible()
        expect(tab.locator("pre", has_text="fp16 overflow: op 1")).to_be_visible()
        fills = _fills(page)
        assert fills[0][1] == NONFINITE[0] and fills[0][2] == PICKED, fills  # the first layer, picked for the user
        assert {fill for _, fill, _ in fills[1:]} - {NONFINITE[0]}, fills  # later layers in other colours
        tip = page.locator(".workbench-layers-graph g.workbench-layer title").first.text_content()
        assert "error" in tip and "tolerance" in tip, tip  # a node's figures on hover
        if shot:
            tab.screenshot(path=f"{shot}/layers_tab_onnx_fp16.png")
        browser.close()
