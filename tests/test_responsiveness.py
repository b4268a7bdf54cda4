"""Slider drags coalesce: many changes while the kernel is busy give one recompute, with the latest value.

Speed itself is measured in bench/, not here: these tests count recomputes and check which value won.
"""

import asyncio
import json
import textwrap

import numpy as np
import pytest

from conftest import SAMPLES, tiny_classifier
from workbench import Preprocess, Workbench
from workbench.widgets.view import COALESCE_SECONDS, SCALE_DIGITS


@pytest.fixture(scope="module")
def wb():
    w = Workbench(tiny_classifier(num_classes=10), SAMPLES, preprocess=Preprocess.preset("imagenet", size=(48, 48)),
                  task="classification", formats=("onnx",))
    yield w
    w.close()


async def _settled(wb):
    while wb.pending:  # the scheduled recompute has not run yet
        await asyncio.sleep(0.005)


def test_rapid_slider_changes_in_an_event_loop_give_one_recompute_with_the_last_value(wb):
    wb.controller.match()
    scales = [wb.control("scale").value * (1 + 0.05 * k) for k in range(1, 11)]

    async def drag():
        before = wb.controller.recomputes
        for value in scales:
            wb.control("scale").value = value
        assert wb.controller.recomputes == before, "a change recomputed before the ones behind it were read"
        await _settled(wb)
        return before

    before = asyncio.run(drag())
    assert wb.controller.recomputes == before + 1
    assert wb.preprocess.scale[0] == pytest.approx(float(f"{scales[-1]:.{SCALE_DIGITS}g}"), rel=1e-12)  # as aimed
    latest = wb.live.compare("onnx", wb.live.run("onnx", wb.preprocess))
    assert wb.comparison["onnx"].worst()["max_abs"] == pytest.approx(latest.worst()["max_abs"])


def test_setting_preprocess_from_code_wins_over_a_pending_slider_change(wb):
    wb.controller.match()
    target = Preprocess.preset("half", size=(48, 48))

    async def drag_then_set():
        wb.control("scale").value = wb.control("scale").value * 3
        before = wb.controller.recomputes
        wb.preprocess = target  # synchronous: complete when the setter returns
        assert wb.controller.recomputes == before + 1 and wb.preprocess == target
        assert not wb.pending, "the slider change still waits to overwrite the value set from code"
        await asyncio.sleep(5 * COALESCE_SECONDS)  # past the deadline a stale recompute would have had
        return before

    before = asyncio.run(drag_then_set())
    assert wb.controller.recomputes == before + 1
    assert wb.preprocess == target


def test_without_an_event_loop_a_slider_change_recomputes_at_once(wb):
    wb.controller.match()
    before = wb.controller.recomputes
    wb.control("scale").value = wb.control("scale").value * 2
    assert wb.controller.recomputes == before + 1
    assert wb.preprocess.scale[0] == pytest.approx(wb.control("scale").value)


SETUP = f"""
import sys
sys.path.insert(0, {str(SAMPLES.parent / 'tests')!r})
from conftest import SAMPLES, tiny_classifier
from workbench import Preprocess, Workbench
wb = Workbench(tiny_classifier(num_classes=10), SAMPLES, preprocess=Preprocess.preset("imagenet", size=(48, 48)),
               task="classification", formats=("onnx",))
start = wb.controller.recomputes
print(wb.control("scale").model_id)
"""
SETTLE = """
import asyncio, json
while wb.pending:
    await asyncio.sleep(0.01)
print(json.dumps({"recomputes": wb.controller.recomputes - start, "scale": wb.preprocess.scale[0],
                  "errors": wb.shown()["errors"]}))
"""


def _execute(kc, code: str) -> str:
    out = []
    reply = kc.execute_interactive(textwrap.dedent(code), timeout=300, output_hook=lambda m: out.append(m))
    assert reply["content"]["status"] == "ok", reply["content"]
    return "".join(m["content"]["text"] for m in out if m["msg_type"] == "stream")


def test_a_drag_sent_by_the_browser_to_a_real_kernel_coalesces():
    """The messages a browser sends while dragging, sent to a real ipykernel as comm messages."""
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="python3")
    try:
        model_id = _execute(kc, SETUP).split()[-1]
        values = list(np.geomspace(0.001, 0.05, 20))
        for value in values:  # back to back, as a drag does: the kernel reads them while busy with the first
            kc.shell_channel.send(kc.session.msg("comm_msg", {
                "comm_id": model_id, "data": {"method": "update", "state": {"value": float(value)},
                                              "buffer_paths": []}}))
        result = json.loads(_execute(kc, SETTLE).strip().splitlines()[-1])
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    assert result["errors"] == ""
    assert 1 <= result["recomputes"] < len(values), result
    assert result["scale"] == pytest.approx(values[-1])


def test_refresh_reuses_the_runtime_session_and_converts_nothing(wb):
    runner = wb.live.runner("onnx")
    session, artifact = runner.session, wb.live.artifacts["onnx"]
    written = artifact.path.stat().st_mtime_ns
    for _ in range(3):
        wb.control("scale").value = wb.control("scale").value * 1.1
    wb.preprocess = Preprocess.preset("half", size=(48, 48))
    assert wb.live.runner("onnx") is runner and runner.session is session
    assert wb.live.artifacts["onnx"] is artifact and artifact.path.stat().st_mtime_ns == written


BUILD = f"""
import sys
sys.path.insert(0, {str(SAMPLES.parent / 'tests')!r})
from conftest import SAMPLES, tiny_classifier
from workbench import Preprocess, Workbench
wb = Workbench(tiny_classifier(num_classes=10), SAMPLES, preprocess=Preprocess.preset("imagenet", size=(48, 48)),
               task="classification", formats=("onnx", "torchscript"))
wb
"""


def test_building_in_a_real_kernel_shows_a_progress_bar_then_removes_it():
    """What the front end receives while `Workbench(...)` runs in a cell: a bar that counts the conversions."""
    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="python3")
    messages = []
    try:
        reply = kc.execute_interactive(BUILD, timeout=300, output_hook=messages.append)
        assert reply["content"]["status"] == "ok", reply["content"]
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    opened = {m["content"]["comm_id"]: m["content"]["data"]["state"] for m in messages if m["msg_type"] == "comm_open"}
    bars = [i for i, state in opened.items() if state.get("_model_name") == "IntProgressModel"]
    assert len(bars) == 3, "expected the build's bar, the Export panel's and the Dataset tab's"
    bar = next(i for i in bars if opened[i]["max"] == 4)  # the reference, two conversions, the first comparison
    views = [m for m in messages if m["msg_type"] == "display_data"
             and m["content"]["data"].get("application/vnd.jupyter.widget-view+json", {}).get("model_id") == bar]
    assert len(views) == 1, "the bar was not shown while building"
    said = [m["content"]["data"]["state"]["description"] for m in messages if m["msg_type"] == "comm_msg"
            and m["content"]["comm_id"] == bar and "description" in m["content"]["data"].get("state", {})]
    assert said == ["loading the model and computing PyTorch's outputs (1/4)", "converting to ONNX (2/4)",
                    "converting to TorchScript (3/4)", "comparing on 8 images (4/4)"]
    order = [m["msg_type"] for m in messages]
    shown, result = order.index("display_data"), order.index("execute_result")
    updates = [i for i, m in enumerate(messages) if m["msg_type"] == "update_display_data"
               and m["content"]["transient"]["display_id"] == views[0]["content"]["transient"]["display_id"]]
    assert shown < updates[-1] < result, "the bar must go before the finished widget shows"
    emptied = {"text/html": "", "text/plain": "<IPython.core.display.HTML object>"}
    assert messages[updates[-1]]["content"]["data"] == emptied
    closed = [m for m in messages if m["msg_type"] == "comm_close" and m["content"]["comm_id"] == bar]
    assert len(closed) == 1
