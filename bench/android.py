"""(f) The formats outside the widget's default set (the Android runtimes, Apple's newer one) live in a Workbench,
beside their floors.

For notebook 01's super-resolution model and notebook 05's mobilenet_v2, on the sample images, with every format
that is not live by default converted live (the model's tensor in, the preprocessing computed in front of it):
- the widget (`wb.preprocess = p`) timed in turns with the live runtimes' bare calls back to back;
- refresh per format: what the widget does per format (`run` with a new preprocessing, `compare`);
- floor per format: the bare runtime on the same, already preprocessed, inputs, built once, as each format
  declares it (`Format.floor`, in its folder's floor.py: e.g. an extractor on each image's tensor, or a
  method call in a process of the Android tools env);
- a worker's IPC on its own, where a format's runtime runs in one (`BareCall.round_trip`): the runner's payload through
  the same channel with nothing run;
- formats whose runtime applies the preprocessing itself (`Format.native`, e.g. a mean/norm) exported with it inside:
  the runtime given the 8-bit pixels, the exported file's run beside that native floor.
"""

from __future__ import annotations

import contextlib
import itertools
import statistics

import numpy as np

from .common import measure, measure_pair, measure_ratio, row, target
from .refresh import cases as refresh_cases

SECTION = "f"


def cases(quick: bool):
    """Notebook 01's super-resolution net; notebook 05's mobilenet_v2 unless quick."""
    yield from refresh_cases(quick)


def android() -> tuple[str, ...]:
    """The formats this section makes live: those not in the widget's default set (the Android runtimes)."""
    from workbench import formats

    return tuple(n for n, f in formats.registry().items() if not f.default)


def run(settings) -> tuple[list[dict], list[dict]]:
    from workbench import Workbench, WorkbenchError
    from workbench.formats import get
    from workbench.images import SAMPLE_IMAGES

    rows, targets = [], []
    chosen = android()
    for case, options in cases(settings.quick):
        wb = Workbench(images=SAMPLE_IMAGES, formats=chosen, **options)
        s, live = wb.session, wb.live
        base = wb.reference_preprocess.with_imagetype()
        values = (base.replace(scale=(base.scale[0] * (1 + 1e-3 * (k % 50)),) * base.channels, name="bench")
                  for k in itertools.count())
        n = len(s.images)
        for fmt in chosen:
            if fmt not in wb.comparison:
                rows.append(row(SECTION, case, f"{fmt}: not live: {wb.controller.status.get(fmt, 'not converted')}",
                                None))
        x = np.ascontiguousarray(wb.preprocess.apply(s.pixels), np.float32)
        with contextlib.ExitStack() as stack:  # the floors' runtimes (a worker process) closed after
            calls = {fmt: get(fmt).bare_call(live.artifacts[fmt], x, s.pixels, stack) for fmt in wb.comparison}

            def back_to_back():
                for call in calls.values():
                    call()

            def set_preprocess():
                wb.preprocess = next(values)

            widget, together, together_ratio = measure_ratio(set_preprocess, back_to_back, 2 * settings.runs)
            floors = 0.0
            fmt_rows = []
            for fmt in wb.comparison:
                def refresh(fmt=fmt):
                    live.compare(fmt, live.run(fmt, next(values)))

                own: list[float] = []
                call = calls[fmt]
                bare = (lambda call=call: own.append(call())) if call.own_seconds else call
                timed, floor = measure_pair(refresh, bare, settings.runs)
                floors += floor["median_ms"]
                ratio = timed["median_ms"] / floor["median_ms"]
                fmt_rows.append(row(SECTION, case, f"{fmt}: refresh (run + compare)", timed, ratio_to_floor=ratio))
                note = f"the runtime's own clock there: {statistics.median(own) * 1000:.1f} ms" if own else ""
                fmt_rows.append(row(SECTION, case, f"{fmt}: floor ({call.what})", floor, note=note))
                if call.round_trip is not None:
                    ipc = measure(call.round_trip, settings.runs)
                    back = sum(v.nbytes for v in s.outputs.values()) // 1024
                    fmt_rows.append(row(SECTION, case, f"{fmt}: of which IPC ({x.nbytes // 1024} KB in, {back} KB "
                                                       "of outputs back, nothing run)", ipc))
                targets.append(target(f"refresh <= 1.3x floor: {case}, {fmt}", ratio, 1.3, "x"))
        what = f"widget refresh ({n} images, {'+'.join(wb.comparison)}, picture)"
        if calls:
            rows.append(row(SECTION, case, what, widget, ratio_to_floor=together_ratio,
                            note=f"the ratio: to the bare calls back to back, in turns with the widget (median of "
                                 f"the runs' ratios); "
                                 f"{widget['median_ms'] / floors:.2f}x the sum of the per-format floors below"))
            rows.append(row(SECTION, case, "  floor: the live runtimes' bare calls back to back", together))
        else:
            rows.append(row(SECTION, case, what, widget))
        rows += fmt_rows

        # Exported with the preprocessing inside: a runtime with its own preprocessing (a mean/norm)
        # applies it to the 8-bit pixels itself.
        for fmt in (f for f in chosen if get(f).native is not None):
            try:
                artifact = s.export(fmt, settings.workdir / f"android_baked{get(fmt).suffix}", overwrite=True)
            except WorkbenchError as exc:  # a failed export is a row, not a lost section
                rows.append(row(SECTION, case, f"{fmt} exported: export failed: {exc}", None))
                continue

            def run_exported(fmt=fmt):
                s.compare(fmt, s.run(fmt))

            timed, floor = measure_pair(run_exported, get(fmt).bare_call(artifact, x, s.pixels), settings.runs)
            ratio = timed["median_ms"] / floor["median_ms"]
            how = get(fmt).native.how
            rows.append(row(SECTION, case, f"{fmt} exported, {how} by {fmt}: run + compare", timed,
                            ratio_to_floor=ratio))
            rows.append(row(SECTION, case, f"{fmt} exported: floor (8-bit pixels, the runtime's {how}, run)", floor))
            targets.append(target(f"exported run <= 1.3x floor: {case}, {fmt} (native {how})", ratio, 1.3, "x"))
        wb.close()
    return rows, targets
