"""`workbench check MODEL --images DIR` on a whole dataset: its arguments, when it streams, and the run.

It streams when DIR is a .txt list, holds class subfolders or a tree, holds more than STREAM_ABOVE images, or
any flag of this module is given; a small flat folder keeps the sample-image check as it was.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..errors import WorkbenchError
from ..images import IMAGE_SUFFIXES

STREAM_ABOVE = 64  # images in a flat folder that the sample-image check still holds in memory
SAMPLES = 8  # images of the dataset the artifacts are exported, calibrated and first checked on


def add_arguments(check: argparse.ArgumentParser) -> None:
    group = check.add_argument_group("whole datasets (streamed: --images DIR with class subfolders or more than "
                                     f"{STREAM_ABOVE} images, or a .txt list of paths)")
    group.add_argument("--limit", type=int, metavar="N", help="check the first N images (after --every)")
    group.add_argument("--every", type=int, metavar="K", help="check one image in K of the sorted listing")
    group.add_argument("--labels-from-folders", action=argparse.BooleanOptionalAction, dest="labels_from_folders",
                       help="ground truth from the class subfolders' names (default: automatic, when DIR holds only "
                            "class subfolders and the model has labels)")
    group.add_argument("--workers", type=int, default=1, metavar="N", help="processes on this machine (default 1)")
    group.add_argument("--engine", choices=["local", "ray"], default="local",
                       help="local processes, or Ray Data (pip install 'workbench[ray]')")
    group.add_argument("--ray-address", dest="ray_address", metavar="ADDR",
                       help="an existing Ray cluster (default: a local one of 2 CPUs)")
    group.add_argument("--resume", action="store_true", help="continue the run recorded in --out")
    group.add_argument("--batch-size", type=int, default=16, dest="batch_size", metavar="N",
                       help="images per batch (one commit to the store each)")
    group.add_argument("--worst", type=int, default=8, metavar="N", help="worst images kept per format (default 8)")


FLAGS = ("limit", "every", "labels_from_folders", "ray_address")


def wants_stream(args) -> bool:
    """Whether this `check` is a dataset run."""
    if args.images is None:
        return False
    if any(getattr(args, f, None) is not None for f in FLAGS) or args.resume or args.workers != 1 \
            or args.engine != "local":
        return True
    path = Path(args.images)
    if path.is_file():
        return path.suffix.lower() == ".txt"
    if not path.is_dir():
        return False
    count = 0
    for p in path.iterdir():
        if p.is_dir() and not p.name.startswith("."):
            return True
        if p.suffix.lower() in IMAGE_SUFFIXES:
            count += 1
            if count > STREAM_ABOVE:
                return True
    return False


def run(args) -> int:
    """The dataset run of `workbench check`: 0 when every format is within tolerance on every image, 1 otherwise."""
    import contextlib

    from .. import cli
    from ..tasks import read_labels
    from .source import open_source

    if args.resume and not args.out:
        raise WorkbenchError("--resume continues the run recorded in --out: give --out FOLDER")
    names = cli._formats(args.to)
    compress = cli._compress(args.compress)
    names += [n for n in compress if n not in names]
    options = cli._options(args.option, "--option")
    runtime = cli._options(args.runtime_option, "--runtime-option")
    flag_notes = cli._apply_flags(args, names, options, runtime)
    options = {k: v for k, v in options.items() if k in names}
    if args.out:
        cli.output_folder(args.out)
    listing = open_source(args.images, labels_from_folders=False, every=args.every, limit=args.limit)
    step = max(1, len(listing.items) // SAMPLES)
    samples = [i.path for i in listing.items[::step][:SAMPLES]]
    labels = read_labels(args.labels) if args.labels else None
    # under --json, stdout carries the JSON alone (as in the sample check): what the model, a converter or a
    # runtime prints goes to stderr
    with cli.stdout_to_stderr() if args.json else contextlib.nullcontext():
        outcome = _check(args, names, compress, options, runtime, flag_notes, listing, samples, labels)
    if isinstance(outcome, int):
        return outcome
    result, report = outcome
    if args.json:
        doc = result.to_dict()
        doc["sample_check"] = json.loads(report.to_json())
        print(json.dumps(doc, indent=2))
    else:
        print(result.render())
    return 0 if result.passed else 1


def _readable(paths, listing) -> list[str]:
    """The sample images that open: a corrupt one among the first is skipped here too, not fatal."""
    from ..images import load_image

    good = []
    for p in paths:
        try:
            load_image(p)
            good.append(p)
        except WorkbenchError:
            continue
    if not good:
        for item in listing.items[:64]:
            try:
                load_image(item.path)
                return [item.path]
            except WorkbenchError:
                continue
        raise WorkbenchError(f"none of the first images of {listing.root} can be read; check the dataset")
    return good


def _check(args, names, compress, options, runtime, flag_notes, listing, samples, labels):
    """The sample check, then the dataset run: (result, report), or an exit status when interrupted."""
    from .. import cli
    from ..compare import Tolerance
    from ..session import Session
    from .run import check_dataset
    from .source import open_source

    progress = cli.Progress()
    try:
        session = Session(args.model, _readable(samples, listing), preprocess=cli._preprocess(args),
                          task=cli._task(args), labels=labels, size=args.size, output=args.output,
                          resize=args.resize, crop_pct=args.crop_pct, interpolation=args.interpolation,
                          weights=None if args.weights == "none" else args.weights, factory=args.factory,
                          trust=args.trust_pickle, runtime_options={k: v for k, v in runtime.items() if k in names},
                          progress=progress)
        tolerance = Tolerance(rel=args.rtol, atol=args.atol) if args.rtol is not None else None
        thresholds = {k: getattr(args, k) for k in ("min_top1", "min_psnr", "min_miou")
                      if getattr(args, k) is not None}
        from ..tasks import Classification

        # class folders are ground truth for a classifier only (a segmentation model's labels are its mask's)
        classes = session.labels if isinstance(session.task, Classification) else None
        source = open_source(args.images, labels=classes, labels_from_folders=args.labels_from_folders,
                             every=args.every, limit=args.limit)
        out = args.out
        if out is None:
            import tempfile

            out = Path(tempfile.mkdtemp(prefix="workbench-dataset-"))
        progress("the sample images", "export")
        report = session.check(names, out, tolerance=tolerance, overwrite=True, options=options, progress=progress,
                               compress=compress, thresholds=thresholds or None)
        report.notes += flag_notes
        progress.close()
        try:
            result = check_dataset(session, source, names, out, compress=compress, options=options,
                                   tolerance=tolerance, workers=args.workers, engine=args.engine,
                                   ray_address=args.ray_address, resume=args.resume, overwrite=args.overwrite,
                                   batch_size=args.batch_size, worst_n=args.worst, report=report,
                                   thresholds=thresholds or None)
        except KeyboardInterrupt:
            print(f"workbench: interrupted; the finished batches are in {Path(out) / 'dataset.sqlite'}: run the same "
                  "command with --resume to continue", file=sys.stderr)
            return 130
    finally:
        progress.close()
    return result, report
