"""(c) Export per format through the workbench against the bare converter calls.

Notebook 05's mobilenet_v2 (random weights, 224x224, ImageNet normalization baked in, as the widget's
Export button writes it), for each default format that declares its bare converter calls
(`Format.bare_export`, in its floor.py: e.g. the exporter's own call and a save): the same
module (the model with its normalization in front) and the same example input, a file written too. Each
pair alternates, after one untimed warm-up of each (first-use imports).
"""

from __future__ import annotations

from .common import measure, row, summary, target

SECTION = "c"


def run(settings) -> tuple[list[dict], list[dict]]:
    import torch

    from workbench import Preprocess, load_model
    from workbench.formats import defaults, export, get
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
    rows, targets = [], []
    for fmt in [f for f in defaults() if get(f).bare_export]:
        bare_export = get(fmt).bare_exporter()

        def workbench_export(fmt=fmt):
            export(spec, fmt, settings.workdir / f"workbench{get(fmt).suffix}", overwrite=True)

        def bare(fmt=fmt, bare_export=bare_export):
            bare_export(spec, settings.workdir / f"bare{get(fmt).suffix}")

        # Alternate the two so a noisy neighbour hurts both alike; warm-ups pay the first-use imports.
        workbench_export()
        bare()
        ours, theirs = [], []
        for _ in range(settings.slow_runs):
            ours.append(measure(workbench_export, 1, warmup=0)["median_ms"])
            theirs.append(measure(bare, 1, warmup=0)["median_ms"])
        ours, theirs = summary(ours), summary(theirs)
        ratio = ours["median_ms"] / theirs["median_ms"]
        rows.append(row(SECTION, case, f"{fmt}: workbench export", ours, ratio_to_bare=ratio))
        rows.append(row(SECTION, case, f"{fmt}: bare call", theirs))
        targets.append(target(f"export <= 1.1x bare: {fmt}", ratio, 1.1, "x"))
    return rows, targets
