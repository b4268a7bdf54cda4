"""(i) The widget while a dataset runs: a preprocessing change's first updated column, with the Dataset tab's run
going in the background, beside the same figure with no run.

Notebook 01's super-resolution net on the sample images with the default formats live; the run checks every live
format on a generated ImageFolder (crops of the sample photos) in the widget's own background thread
(`wb.controller.dataset.start`), batches of 16. Each figure is `wb.preprocess = p` until the first column is
updated (the fastest live runtime's); the run's batch time is its batch size over its rate. The target (the
Dataset tab's issue): at most the widget's usual 150 ms plus one batch.
"""

from __future__ import annotations

import itertools
import time

from .common import row, summary, target
from .dataset import _folder
from .refresh import cases

SECTION = "i"
BATCH = 16


def run(settings) -> tuple[list[dict], list[dict]]:
    from workbench import Workbench
    from workbench.images import SAMPLE_IMAGES

    case, options = next(cases(True))
    images = _folder(settings.workdir / "bench_dataset_widget", 160 if settings.quick else 800)
    wb = Workbench(images=SAMPLE_IMAGES, **options)
    try:
        base = wb.reference_preprocess.with_imagetype()
        values = (base.replace(scale=(base.scale[0] * (1 + 1e-3 * (k % 50)),) * base.channels, name="bench")
                  for k in itertools.count())
        first_at: list[float] = []
        wb.controller.listen(lambda what: first_at.append(time.perf_counter()) if what == "column" else None)

        def first_column() -> float:
            first_at.clear()
            start = time.perf_counter()
            wb.preprocess = next(values)
            return (first_at[0] - start) * 1000

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
    rows = [row(SECTION, case, "first column updated, no dataset run", idle)]
    if not busy or not state["rate"]:
        rows.append(row(SECTION, case, "first column updated while a dataset runs", None,
                        note="the run ended before a figure was taken"))
        return rows, [target("first column while a dataset runs <= 150 ms + one batch", None, 150, "ms",
                             "not measured")]
    during = summary(busy)
    batch_ms = BATCH / state["rate"] * 1000
    rows.append(row(SECTION, case, f"first column updated while a dataset runs ({state['done']} images checked)",
                    during, batch_ms=batch_ms, note=f"a batch of {BATCH}: {batch_ms:.0f} ms; "
                    f"the run at {state['rate']:.1f} images/s"))
    return rows, [target("first column while a dataset runs <= 150 ms + one batch", during["median_ms"],
                         round(150 + batch_ms), "ms", f"the median of {len(busy)} moves; no run: "
                         f"{idle['median_ms']:.0f} ms")]
