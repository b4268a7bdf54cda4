"""Core ML's own figures for the bench (`Format.bench`, section (b) of bench/): the Core ML interpreter per image,
at fp32 and as declared (fp16), against PyTorch eager and ONNX Runtime, on mobilenet_v2, resnet18 and
deeplabv3_mobilenet_v3_large (random weights) and notebook 01's super-resolution model (its trained weights).

Each model is exported once with the workbench (ONNX; Core ML as an ML program declared fp16, the
preprocessing inside). Per image: `workbench.CoreMLInterpreter(path, compute_precision=...).predict({input:
PIL image})`, the PyTorch module on one preprocessed image (inference mode), and the ONNX Runtime runner on
one image. The interpreter's plan is built once per precision, before timing. `max |d|` is the interpreter's
worst difference from PyTorch on the timed images, relative to the output's range. Run from the repository
(`python -m bench.run --sections b`): it uses bench/'s timing helpers.
"""

from __future__ import annotations

import warnings

import numpy as np

SECTION = "b"
SIZE = (224, 224)


def models(quick: bool):
    import torch

    from bench.common import NOTEBOOKS
    from workbench import ImageToImage, Preprocess, load_model
    from workbench.zoo import SuperResolutionNet

    sr = SuperResolutionNet(upscale_factor=3)
    sr.load_state_dict(torch.load(NOTEBOOKS / "weights" / "super_resolution_x3.pth", map_location="cpu",
                                  weights_only=True))
    yield "super-resolution (gray)", dict(model=sr.eval(), preprocess=Preprocess.preset("gray", size=SIZE),
                                          task=ImageToImage(output_range=(0.0, 1.0)))
    if quick:
        return
    for name in ("mobilenet_v2", "resnet18", "deeplabv3_mobilenet_v3_large"):
        torch.manual_seed(0)
        # load_model's weights="none" builds with weights=None and, where the builder has it, weights_backbone=None
        yield name, dict(model=load_model(f"torchvision:{name}", weights="none"), size=SIZE)


def feed(pixels: np.ndarray, pre):
    """One image as Core ML takes an ImageType input: a PIL image in the artifact's colour layout."""
    from PIL import Image

    arr = np.clip(pixels, 0, 255).round().astype(np.uint8)
    if arr.shape[0] == 1:
        return Image.fromarray(arr[0], "L")
    rgb = arr.transpose(1, 2, 0)
    return Image.fromarray(np.ascontiguousarray(rgb[..., ::-1] if pre.bgr else rgb), "RGB")


def run(settings) -> tuple[list[dict], list[dict]]:
    import torch

    from bench.common import measure, row, target
    from workbench import CoreMLInterpreter as interpreter
    from workbench.formats import runner_for
    from workbench.images import SAMPLE_IMAGES
    from workbench.session import Session

    rows, targets = [], []
    count = 1 if settings.quick else 2  # images per model; each timed `runs` times
    for name, options in models(settings.quick):
        model = options.pop("model")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            s = Session(model, sorted(SAMPLE_IMAGES.glob("*.jpg"))[:count], **options)
        pre, pixels = s.training_preprocess, s.pixels
        case = f"{name}, {pre.size[0]}x{pre.size[1]}"
        module = s.model.module
        inputs = [torch.from_numpy(np.ascontiguousarray(pre.apply(pixels[i:i + 1]), np.float32)) for i in range(count)]

        def per_image(call):  # every runtime alike: `slow_runs` passes over the images, after a warm-up
            return measure(lambda: [call(i) for i in range(count)], settings.slow_runs)

        def eager(i):
            with torch.inference_mode():
                module(inputs[i])

        stats = per_image(eager)
        eager_ms = stats["median_ms"] / count
        rows.append(row(SECTION, case, "PyTorch eager, per image", _per(stats, count)))
        onnx = runner_for(s.export("onnx", settings.workdir / f"{name}.onnx", overwrite=True))
        rows.append(row(SECTION, case, "ONNX Runtime, per image",
                        _per(per_image(lambda i: onnx.run(pixels[i:i + 1])), count)))
        onnx.deactivate()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            coreml = s.export("coreml", settings.workdir / f"{name}.mlpackage", overwrite=True, precision="fp16")
        for label, precision in (("fp32", "fp32"), ("as declared (fp16)", None)):
            try:
                plan = interpreter(str(coreml.path), compute_precision=precision)
                data = [{coreml.input_name: feed(pixels[i], coreml.preprocess)} for i in range(count)]
                outputs = [plan.predict(d) for d in data]  # also the warm-up: the plan is built by now
                stats = per_image(lambda i: plan.predict(data[i]))
            except Exception as exc:  # the interpreter is young: report, do not lose the other figures
                rows.append(row(SECTION, case, f"Core ML interpreter {label}", None,
                                note=f"failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"))
                if precision == "fp32":
                    targets.append(target(f"interpreter fp32 <= 1.5x PyTorch eager per image: {name}", None, 1.5,
                                          "x", "interpreter failed on this model"))
                continue
            per = _per(stats, count)
            ratio = per["median_ms"] / eager_ms
            try:
                note = _parity(outputs, s)
            except Exception as exc:  # a figure beside the timing: never lose the timing for it
                note = f"parity not computed: {type(exc).__name__}: {exc}"
            rows.append(row(SECTION, case, f"Core ML interpreter {label}, per image", per, ratio_to_eager=ratio,
                            note=note))
            if precision == "fp32":
                targets.append(target(f"interpreter fp32 <= 1.5x PyTorch eager per image: {name}", ratio, 1.5, "x"))
    return rows, targets


def _per(stats: dict, count: int) -> dict:
    """Per-image figures from the timing of `count` images."""
    return {**stats, **{k: stats[k] / count for k in ("median_ms", "min_ms", "max_ms")}, "images": count}


def _parity(outputs: list[dict], session) -> str:
    """The interpreter's worst difference from PyTorch on the main output, relative to its range (image
    outputs: as 8-bit pixels on both sides, as Core ML gives them; classifiers: the probabilities)."""
    from PIL import Image

    from workbench.tasks import softmax

    ref = session.outputs[session.task.main_output(session.outputs)][: len(outputs)]
    first = outputs[0]
    probs = next((n for n, v in first.items() if isinstance(v, dict)), None)
    if probs is not None:  # a classifier: {label: probability}, softmax of the model's logits
        got = np.array([[o[probs][label] for label in session.labels] for o in outputs], np.float64)
        want = softmax(ref.reshape(len(ref), -1))
        return f"max |d| {np.abs(got - want).max():.2g} (probabilities)"
    name = next(n for n, v in first.items() if isinstance(v, (np.ndarray, Image.Image)))
    values = [o[name] for o in outputs]
    if isinstance(values[0], Image.Image):
        got = np.stack([np.asarray(v, np.float64).reshape(ref.shape[2:] + (-1,)) for v in values])
        want = session.task.to_images(ref).astype(np.float64)
        return f"max |d| {np.abs(got - want).max():.0f} of 255 (8-bit output)"
    got = np.stack([np.asarray(v, np.float64).reshape(ref.shape[1:]) for v in values])
    rng = float(ref.max() - ref.min()) or 1.0
    return f"max |d| {np.abs(got - ref).max() / rng:.2g} of range"
