"""(g) Compressed variants: refresh beside the floor, for every variant the registered formats declare.

For notebook 01's super-resolution model on the sample images (not mobilenet_v2: the interpreted variants at
224x224 would take most of the bench). Each format that declares variants
(`workbench.formats.get(name).variants`) is exported as the widget's live artifact (the model's tensor in), and
each variant compressed from it as the widget's Compression tab does (one that calibrates reads the sample
images through the preprocessing in force). Then per variant:
- refresh: the variant's runner with a new preprocessing, and the comparison with PyTorch (as the widget
  reruns a variant on every change);
- floor: the bare runtime on the variant's file, on the same already preprocessed inputs (each format's
  `Format.floor`, in its folder's floor.py).
A variant that fails to build or to run is a row that says so, and its target is "not measured".
"""

from __future__ import annotations

import contextlib
import itertools
import time

import numpy as np

from .common import measure, measure_pair, row, target
from .refresh import cases

SECTION = "g"


def run(settings) -> tuple[list[dict], list[dict]]:
    from workbench import WorkbenchError
    from workbench import formats as registered
    from workbench.images import SAMPLE_IMAGES
    from workbench.session import ArtifactSet, Session

    rows, targets = [], []
    for case, options in cases(quick=True):  # notebook 01's model only (see the docstring)
        s = Session(images=SAMPLE_IMAGES, **options)
        base = s.training_preprocess.with_imagetype()
        values = (base.replace(scale=(base.scale[0] * (1 + 1e-3 * (k % 50)),) * base.channels, name="bench")
                  for k in itertools.count())
        x = np.ascontiguousarray(base.apply(s.pixels), np.float32)
        calibration = registered.Calibration(tuple(i.name for i in s.images), s.pixels, base, expected=base)
        for name, fmt in registered.registry().items():
            if not fmt.variants:
                continue
            try:
                live = fmt.export(s.spec(bake=False, labels=False), settings.workdir / f"variants_{s.name}{fmt.suffix}",
                                  overwrite=True, **fmt.live_options)
            except WorkbenchError as exc:
                for variant in fmt.variants:
                    rows.append(row(SECTION, case, f"{name} {variant}: not built: the {name} export failed: {exc}",
                                    None))
                    targets.append(target(f"variant refresh <= 1.3x floor: {case}, {name} {variant}", None, 1.3, "x",
                                          "the export failed"))
                continue
            for variant in fmt.variants:
                what = f"{name} {variant}"
                name_of_target = f"variant refresh <= 1.3x floor: {case}, {what}"
                start = time.perf_counter()
                try:
                    artifact = fmt.compress(variant, live, settings.workdir / f"{s.name}.{variant}{fmt.suffix}",
                                            calibration=calibration if fmt.calibrates(variant) else None,
                                            overwrite=True)
                except Exception as exc:  # a variant's converter may raise anything: a row, not a lost section
                    rows.append(row(SECTION, case, f"{what}: failed to build: {type(exc).__name__}: {exc}", None))
                    targets.append(target(name_of_target, None, 1.3, "x", "failed to build"))
                    continue
                built = time.perf_counter() - start
                variant_set = ArtifactSet(s)
                variant_set.add(artifact)

                def refresh(variant_set=variant_set, name=name):
                    variant_set.compare(name, variant_set.run(name, next(values)))

                ipc = None
                try:
                    with contextlib.ExitStack() as stack:
                        bare = fmt.bare_call(artifact, x, s.pixels, stack)
                        timed, bare_stats = measure_pair(refresh, bare, settings.runs)
                        if bare.round_trip is not None:  # its runner is a round trip to a worker: what that costs
                            ipc = measure(bare.round_trip, settings.runs)
                except Exception as exc:  # as above: the row says what stopped it
                    rows.append(row(SECTION, case, f"{what}: failed to run: {type(exc).__name__}: {exc}", None))
                    targets.append(target(name_of_target, None, 1.3, "x", "failed to run"))
                    continue
                finally:
                    variant_set.close()
                ratio = timed["median_ms"] / bare_stats["median_ms"]
                rows.append(row(SECTION, case, f"{what}: refresh (run + compare)", timed, ratio_to_floor=ratio,
                                note=f"built in {built:.1f} s"))
                rows.append(row(SECTION, case, f"{what}: floor (bare runtime on the variant's file)", bare_stats))
                if ipc is not None:
                    rows.append(row(SECTION, case, f"{what}: of which IPC (the input batch there, the outputs back, "
                                                   "nothing run)", ipc))
                targets.append(target(name_of_target, ratio, 1.3, "x"))
        s.close()
    return rows, targets
