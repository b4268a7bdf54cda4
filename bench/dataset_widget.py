"""(i) The widget while a dataset runs: a preprocessing change's first updated column, with the Dataset tab's run
going in the background, beside the same figure with no run.

Notebook 01's super-resolution net on the sample images with the default formats live; the run checks every live
format on a generated ImageFolder (crops of the sample photos) in the widget's own background thread
(`wb.controller.dataset.start`), batches of 16. Each figure is `wb.preprocess = p` until the first column is
updated (the fastest live runtime's); the run's batch time is its batch size over its rate. The target (the
Dataset tab's issue): at most the widget's usual 150 ms plus one batch.

And the memory of a widget that checked 2,000 photos (200 with --quick) against one that checked 16: each in a
fresh process (the same net, the default formats live, the run's figures drawn in the tab), its peak resident
memory from wait4. Target: within 1.5x.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from .common import ROOT, first_column_timer, preprocess_values, row, summary, target
from .dataset import _folder
from .refresh import cases

SECTION = "i"
BATCH = 16
CHECKED = """
import sys
from bench.refresh import cases
from workbench import Workbench
from workbench.images import SAMPLE_IMAGES

case, options = next(cases(True))
wb = Workbench(images=SAMPLE_IMAGES, **options)
wb.controller.dataset.start(sys.argv[1], out=sys.argv[2], limit=int(sys.argv[3]))
wb.controller.dataset.wait()
assert wb.controller.dataset.state()["done"] == int(sys.argv[3]), wb.controller.dataset.state()
wb.close()
"""


def checked_peak(images: Path, out: Path, n: int) -> float:
    """Peak RSS (MB) of a fresh process whose widget checked `n` photos of `images` in its Dataset tab."""
    proc = subprocess.Popen([sys.executable, "-c", CHECKED, str(images), str(out), str(n)], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"the widget's dataset run failed: {err.decode()[-400:]}")
    return usage.ru_maxrss / 1024


def run(settings) -> tuple[list[dict], list[dict]]:
    from workbench import Workbench
    from workbench.images import SAMPLE_IMAGES

    case, options = next(cases(True))
    images = _folder(settings.workdir / "bench_dataset_widget", 160 if settings.quick else 800)
    wb = Workbench(images=SAMPLE_IMAGES, **options)
    try:
        first_column = first_column_timer(wb, preprocess_values(wb))
        idle = summary([first_column() for _ in range(settings.runs)])
        run = wb.controller.dataset
        run.start(images, out=settings.workdir / "bench_dataset_widget_run", batch_size=BATCH)
        while run.running and run.done < BATCH:  # past the run's start-up: a batch has been stored
            time.sleep(0.05)
        busy = []
        while run.running and len(busy) < settings.runs:
            busy.append(first_column())
            time.sleep(0.2)  # a user's pace, and the run gets the cores between moves
        state = run.state()
        run.stop()
        run.wait(120)
    finally:
        wb.close()
    big = 200 if settings.quick else 2000
    many = _folder(settings.workdir / "bench_dataset_widget_many", big)
    small_mb = checked_peak(many, settings.workdir / "bench_widget_16", 16)
    big_mb = checked_peak(many, settings.workdir / f"bench_widget_{big}", big)
    memory = [row(SECTION, case, "peak memory, a widget that checked 16 photos", None, max_rss_mb=small_mb),
              row(SECTION, case, f"peak memory, a widget that checked {big} photos", None, max_rss_mb=big_mb)]
    memory_target = target(f"widget memory, {big} photos vs 16", big_mb / small_mb, 1.5, "x")
    rows = [row(SECTION, case, "first column updated, no dataset run", idle)]
    if not busy or not state["rate"]:
        rows.append(row(SECTION, case, "first column updated while a dataset runs", None,
                        note="the run ended before a figure was taken"))
        return rows + memory, [target("first column while a dataset runs <= 150 ms + one batch", None, 150, "ms",
                                      "not measured"), memory_target]
    during = summary(busy)
    batch_ms = BATCH / state["rate"] * 1000
    rows.append(row(SECTION, case, f"first column updated while a dataset runs ({state['done']} images checked)",
                    during, batch_ms=batch_ms, note=f"a batch of {BATCH}: {batch_ms:.0f} ms; "
                    f"the run at {state['rate']:.1f} images/s"))
    return rows + memory, [target("first column while a dataset runs <= 150 ms + one batch", during["median_ms"],
                                  round(150 + batch_ms), "ms", f"the median of {len(busy)} moves; no run: "
                                  f"{idle['median_ms']:.0f} ms"), memory_target]
