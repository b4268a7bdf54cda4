"""(f) The Android runtimes' refresh beside their floors: ExecuTorch, ncnn, MNN, LiteRT live in a Workbench.

For notebook 01's super-resolution model and notebook 05's mobilenet_v2, on the sample images, with the four
Android formats converted live (the model's tensor in, the preprocessing computed in front of it):
- the widget (`wb.preprocess = p`) timed in turns with the live runtimes' bare calls back to back;
- refresh per format: what the widget does per format (`run` with a new preprocessing, `compare`);
- floor per format: the bare runtime on the same, already preprocessed, inputs, built once: ncnn's
  extractor (a Mat from each image's tensor, each output read back), MNN's session (input copied in, run,
  outputs copied out), LiteRT's interpreter (set_tensor, invoke, get_tensor, the input already in the
  layout and type the model takes); ExecuTorch's `method.call` in a process of the Android tools env, the input
  already there and one small request to start it (`bench/executorch_floor.py`);
- ExecuTorch's IPC on its own: the runner's payload (the input batch, the outputs back) through the same
  channel with nothing run;
- ncnn and MNN exported with the preprocessing inside: their runtimes apply the per-channel mean/norm to
  the 8-bit pixels themselves (ncnn `from_pixels` + `substract_mean_normalize`, MNN `CVImageProcess`); the
  exported file's run beside that native floor.
"""

from __future__ import annotations

import contextlib
import itertools
import statistics

import numpy as np

from .common import measure, measure_pair, measure_ratio, row, target
from .refresh import cases as refresh_cases

SECTION = "f"
ANDROID = ("executorch", "ncnn", "mnn", "litert")


def cases(quick: bool):
    """Notebook 01's super-resolution net; notebook 05's mobilenet_v2 unless quick."""
    yield from refresh_cases(quick)


def android_floor(fmt: str, artifact, x: np.ndarray, pixels: np.ndarray | None = None,
                  stack: contextlib.ExitStack | None = None):
    """The bare runtime of an Android format on the preprocessed batch `x`, built once; the call to time.

    An ncnn or MNN artifact with the preprocessing inside is fed the 8-bit `pixels` (as a phone's camera
    hands them) and applies its mean/norm itself. ExecuTorch's call returns the runtime's own seconds; its
    worker is closed with `stack`.
    """
    pre = artifact.preprocess
    images = None
    if pre is not None and fmt in ("ncnn", "mnn"):
        from workbench.formats.ncnn.runner import eight_bit

        images = eight_bit(pixels, pre)  # untimed: the camera gives 8-bit images
    if fmt == "ncnn":
        import ncnn

        from workbench.formats.ncnn.validate import load

        net = load(artifact.path, fp16=artifact.precision == "fp16", threads=1)  # as the runner's default
        name, outs = net.input_names()[0], list(net.output_names())

        def extract(mat):
            ex = net.create_extractor()
            ex.input(name, mat)
            return [np.array(ex.extract(o)[1]) for o in outs]

        if images is not None:
            mn = pre.mean_norm()
            kind = (ncnn.Mat.PixelType.PIXEL_GRAY if pre.grayscale else
                    ncnn.Mat.PixelType.PIXEL_RGB2BGR if pre.bgr else ncnn.Mat.PixelType.PIXEL_RGB)
            mean, norm = list(mn["mean"]), list(mn["norm"])

            def native():
                for img in images:
                    mat = ncnn.Mat.from_pixels(img, kind, img.shape[1], img.shape[0])
                    mat.substract_mean_normalize(mean, norm)
                    extract(mat)

            return native
        rows = [np.ascontiguousarray(x[i]) for i in range(len(x))]
        return lambda: [extract(ncnn.Mat(r)) for r in rows]
    if fmt == "mnn":
        import MNN

        from workbench.formats.mnn.runner import WINOGRAD_MEMORY_LEVEL
        from workbench.formats.mnn.validate import load, native_quiet

        interp = load(artifact.path)
        if artifact.precision != "fp16":
            interp.setSessionHint(WINOGRAD_MEMORY_LEVEL, 0)  # the runner's fp32 setting: the same kernels
        with native_quiet():
            session = interp.createSession({"numThread": 1, "backend": "CPU",
                                            "precision": "low" if artifact.precision == "fp16" else "high"})
        inp = interp.getSessionInput(session)
        outputs = list(interp.getSessionOutputAll(session).values())
        hosts = [MNN.Tensor(o.getShape(), MNN.Halide_Type_Float, np.zeros(o.getShape(), np.float32),
                            MNN.Tensor_DimensionType_Caffe) for o in outputs]

        def results():
            interp.runSession(session)
            for out, host in zip(outputs, hosts):
                out.copyToHostTensor(host)
                np.array(host.getNumpyData())  # a copy, as a caller keeps it

        if images is not None:
            mn = pre.mean_norm()
            pad = (0.0,) * (4 - len(mn["mean"]))
            gray = MNN.CV_ImageFormat_GRAY
            process = MNN.CVImageProcess({
                "sourceFormat": gray if pre.grayscale else MNN.CV_ImageFormat_RGB,
                "destFormat": gray if pre.grayscale else (MNN.CV_ImageFormat_BGR if pre.bgr
                                                          else MNN.CV_ImageFormat_RGB),
                "mean": tuple(mn["mean"]) + pad, "normal": tuple(mn["norm"]) + pad})

            def native():
                for img in images:
                    process.convert(img, img.shape[1], img.shape[0], 0, inp)
                    results()

            return native
        rows = [np.ascontiguousarray(x[i:i + 1]) for i in range(len(x))]

        def call():
            for r in rows:
                inp.copyFrom(MNN.Tensor(r.shape, MNN.Halide_Type_Float, r, MNN.Tensor_DimensionType_Caffe))
                results()

        return call
    if fmt == "litert":
        from workbench.formats.litert.validate import load

        interp = load(artifact.path, threads=1)
        detail = interp.get_input_details()[0]
        index, want = detail["index"], tuple(detail["shape"])
        outs = [d["index"] for d in interp.get_output_details()]
        rows = [x[i:i + 1] if x[i:i + 1].shape == want else x[i:i + 1].transpose(0, 2, 3, 1) for i in range(len(x))]
        rows = [np.ascontiguousarray(taken(r, detail)) for r in rows]  # in the layout and type the model takes

        def call():
            for r in rows:
                interp.set_tensor(index, r)
                interp.invoke()
                for o in outs:
                    interp.get_tensor(o)

        return call
    if fmt == "executorch":
        worker = executorch_worker(artifact, x)
        if stack is not None:
            stack.callback(worker.close)
        return lambda: worker.request(("run", None))
    raise ValueError(f"no bare Android runtime for {fmt}")


def taken(x: np.ndarray, detail: dict) -> np.ndarray:
    """`x` as a LiteRT input tensor takes it: a full-integer model's quantized (round(x / scale) + zero point),
    which an app does with its preprocessing, before the runtime."""
    dtype = np.dtype(detail["dtype"])
    if dtype.kind == "f":
        return x.astype(dtype)
    scale, zero = detail["quantization"]
    return np.clip(np.round(x / scale) + zero, np.iinfo(dtype).min, np.iinfo(dtype).max).astype(dtype)


def executorch_worker(artifact, x: np.ndarray):
    """bench/executorch_floor.py in the Android tools env, holding the program and the batch `x`."""
    from pathlib import Path

    from workbench.formats.executorch.tools import Worker

    script = Path(__file__).resolve().parent / "executorch_floor.py"
    worker = Worker(script, [str(artifact.path)], what="ExecuTorch floor", packages="executorch")
    worker.request(("input", np.ascontiguousarray(x, np.float32)))
    return worker


def run(settings) -> tuple[list[dict], list[dict]]:
    from workbench import Workbench, WorkbenchError
    from workbench.formats import get
    from workbench.images import SAMPLE_IMAGES

    rows, targets = [], []
    for case, options in cases(settings.quick):
        wb = Workbench(images=SAMPLE_IMAGES, formats=ANDROID, **options)
        s, live = wb.session, wb.live
        base = wb.reference_preprocess.with_imagetype()
        values = (base.replace(scale=(base.scale[0] * (1 + 1e-3 * (k % 50)),) * base.channels, name="bench")
                  for k in itertools.count())
        n = len(s.images)
        for fmt in ANDROID:
            if fmt not in wb.comparison:
                rows.append(row(SECTION, case, f"{fmt}: not live: {wb.controller.status.get(fmt, 'not converted')}",
                                None))
        x = np.ascontiguousarray(wb.preprocess.apply(s.pixels), np.float32)
        with contextlib.ExitStack() as stack:  # the floors' runtimes (ExecuTorch's worker) closed after
            calls = {fmt: android_floor(fmt, live.artifacts[fmt], x, s.pixels, stack) for fmt in wb.comparison}

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
                bare = call if fmt != "executorch" else (lambda call=call: own.append(call()))
                timed, floor = measure_pair(refresh, bare, settings.runs)
                floors += floor["median_ms"]
                ratio = timed["median_ms"] / floor["median_ms"]
                fmt_rows.append(row(SECTION, case, f"{fmt}: refresh (run + compare)", timed, ratio_to_floor=ratio))
                if fmt == "executorch":
                    fmt_rows.append(row(SECTION, case, "executorch: floor (method.call in the tools env, input "
                                                       "already there, one small request)", floor,
                                        note=f"the runtime's own clock there: {statistics.median(own) * 1000:.1f} ms"))
                    worker = executorch_worker(live.artifacts[fmt], x)
                    stack.callback(worker.close)
                    ipc = measure(lambda worker=worker: worker.request(("echo", x)), settings.runs)
                    back = sum(v.nbytes for v in s.reference.values()) // 1024
                    fmt_rows.append(row(SECTION, case, f"executorch: of which IPC ({x.nbytes // 1024} KB in, {back} KB "
                                                       "of outputs back, nothing run)", ipc))
                else:
                    fmt_rows.append(row(SECTION, case, f"{fmt}: floor (bare runtime, same inputs)", floor))
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

        # Exported with the preprocessing inside: ncnn and MNN apply the mean/norm to the 8-bit pixels themselves.
        for fmt in ("ncnn", "mnn"):
            try:
                artifact = s.export(fmt, settings.workdir / f"android_baked{get(fmt).suffix}", overwrite=True)
            except WorkbenchError as exc:  # a failed export is a row, not a lost section
                rows.append(row(SECTION, case, f"{fmt} exported: export failed: {exc}", None))
                continue

            def run_exported(fmt=fmt):
                s.compare(fmt, s.run(fmt))

            timed, floor = measure_pair(run_exported, android_floor(fmt, artifact, x, s.pixels), settings.runs)
            ratio = timed["median_ms"] / floor["median_ms"]
            rows.append(row(SECTION, case, f"{fmt} exported, mean/norm by {fmt}: run + compare", timed,
                            ratio_to_floor=ratio))
            rows.append(row(SECTION, case, f"{fmt} exported: floor (8-bit pixels, the runtime's mean/norm, run)",
                            floor))
            targets.append(target(f"exported run <= 1.3x floor: {case}, {fmt} (native mean/norm)", ratio, 1.3, "x"))
        wb.close()
    return rows, targets
