"""(c) Export per format through the workbench against the bare converter calls.

Notebook 05's mobilenet_v2 (random weights, 224x224, ImageNet normalization baked in, as the widget's
Export button writes it). The bare calls get the same module (the model with its normalization in front)
and the same example input, and write a file too: `torch.onnx.export(..., dynamo=True)` and saving its
model; `torch.jit.trace` + `torch.jit.save`; `torch.jit.trace` + `ct.convert` (an ML program, fp16, the
same ImageType) + `save`. Each pair alternates, after one untimed warm-up of each (first-use imports).
"""

from __future__ import annotations

import warnings

from .common import measure, row, summary, target

SECTION = "c"


def bare_calls(spec, workdir):
    """format -> the bare call that writes the same model as the workbench's exporter."""
    import torch

    model = spec.wrapped(bake=spec.preprocess)
    x = spec.example_input(pixels=True)
    names = dict(input_names=[spec.input_name], output_names=list(spec.output_names))

    def onnx():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(model, (x,), dynamo=True, external_data=False, verbose=False, **names)
        program.save(str(workdir / "bare.onnx"))

    def trace():
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            return torch.jit.trace(model, x, strict=False)

    def torchscript():
        torch.jit.save(trace(), str(workdir / "bare.pt"))

    def coreml():
        import contextlib
        import io

        import coremltools as ct

        fit = spec.preprocess.imagetype_fit()
        image = ct.ImageType(name=spec.input_name, shape=spec.input_shape, scale=1.0,
                             bias=[0.0] * spec.preprocess.channels, color_layout=ct.colorlayout.RGB)
        with contextlib.redirect_stderr(io.StringIO()):  # its progress bars, which the workbench hides too
            mlmodel = ct.convert(trace(), inputs=[image], outputs=[ct.TensorType(name=n) for n in spec.output_names],
                                 convert_to="mlprogram", compute_precision=ct.precision.FLOAT16,
                                 minimum_deployment_target=ct.target.iOS16)
        assert not fit.exact  # ImageNet's std: the workbench bakes it too, and passes pixels through
        mlmodel.save(str(workdir / "bare.mlpackage"))

    return {"onnx": onnx, "coreml": coreml, "torchscript": torchscript}


def run(settings) -> tuple[list[dict], list[dict]]:
    import torch

    from workbench import Preprocess, load_model
    from workbench.formats import export, get
    from workbench.images import SAMPLE_IMAGES
    from workbench.session import Session

    if settings.quick:
        from workbench.zoo import SmallCNN

        torch.manual_seed(0)
        case, model = "SmallCNN (quick), 64x64", SmallCNN(num_classes=10, width=8).eval()
        session = Session(model, SAMPLE_IMAGES, preprocess=Preprocess.preset("imagenet", size=(64, 64)),
                          task="classification")
    else:
        torch.manual_seed(0)
        case = "05 mobilenet_v2, 224x224"
        session = Session(load_model("torchvision:mobilenet_v2", weights="none"), SAMPLE_IMAGES)
    spec = session.spec()
    bare = bare_calls(spec, settings.workdir)
    rows, targets = [], []
    for fmt in ("onnx", "coreml", "torchscript"):
        def workbench_export(fmt=fmt):
            export(spec, fmt, settings.workdir / f"workbench{get(fmt).suffix}", overwrite=True)

        # Alternate the two so a noisy neighbour hurts both alike; warm-ups pay the first-use imports.
        workbench_export()
        bare[fmt]()
        ours, theirs = [], []
        for _ in range(settings.slow_runs):
            ours.append(measure(workbench_export, 1, warmup=0)["median_ms"])
            theirs.append(measure(bare[fmt], 1, warmup=0)["median_ms"])
        ours, theirs = summary(ours), summary(theirs)
        ratio = ours["median_ms"] / theirs["median_ms"]
        rows.append(row(SECTION, case, f"{fmt}: workbench export", ours, ratio_to_bare=ratio))
        rows.append(row(SECTION, case, f"{fmt}: bare call", theirs))
        targets.append(target(f"export <= 1.1x bare: {fmt}", ratio, 1.1, "x"))
    return rows, targets
