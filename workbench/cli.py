"""`workbench check MODEL ...`: export, run on sample images, and report parity with PyTorch.

Exit 0 when every compared output is within tolerance, 1 when parity fails (or a format could not be
produced), 2 for bad input or usage, with a one-line message and no traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import threading
import time
import warnings
from pathlib import Path

from .dataset import cli as dataset_cli
from .errors import WorkbenchError
from .files import output_folder
from .images import SAMPLE_IMAGES


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2: the contract for usage errors
        print(f"workbench: error: {message} (see '{self.prog} --help')", file=sys.stderr)
        raise SystemExit(2)


def _example(what: str) -> str:
    """An example for the help, from the registry: FORMAT.NAME=VALUE of the first option with choices (what:
    "export_options", "runtime_options"), or FORMAT:VARIANT,FORMAT:VARIANT (what: "variants")."""
    from . import formats

    known = formats.registry().items()
    if what == "variants":
        return ",".join([f"{n}:{next(iter(f.variants))}" for n, f in known if f.variants][:2]) or "FORMAT:VARIANT"
    for name, fmt in known:
        for option in getattr(fmt, what):
            other = [c for c in (option.choices or ()) if c is not None and c != option.default]
            if other:
                return f"{name}.{option.name}={other[0]}"
    return "FORMAT.NAME=VALUE"


def build_parser() -> argparse.ArgumentParser:
    from . import formats

    parser = _Parser(prog="workbench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    check = sub.add_parser("check", help="export a model and compare every format with PyTorch on images")
    check.add_argument("model", help="torchvision:NAME, timm:NAME, file.py:factory, model.pt/.pth, ...")
    check.add_argument("--weights", default="DEFAULT",
                       help="torchvision weights name or timm pretrained tag, 'DEFAULT', or 'none' for random "
                            "weights; for file.py:factory, a state_dict file")
    check.add_argument("--factory", help="file.py:name that builds the model, for a state_dict MODEL file")
    check.add_argument("--trust-pickle", action="store_true",
                       help="allow a fully pickled model file: this RUNS CODE FROM THE FILE; only for files you trust")
    check.add_argument("--images", type=Path, help=f"folder of sample images (default: {SAMPLE_IMAGES.name}/)")
    check.add_argument("--to", help=f"formats, comma-separated (default: {','.join(formats.defaults())}; "
                       "'workbench check --to help' lists every registered format)")
    norm = check.add_mutually_exclusive_group()
    norm.add_argument("--preset", help="unit, half, imagenet, caffe, raw, gray, gray_raw")
    norm.add_argument("--mean", type=float, nargs="+", metavar="M", help="Normalize mean (0-1 units)")
    check.add_argument("--std", type=float, nargs="+", metavar="S", help="Normalize std, with --mean")
    check.add_argument("--bgr", action="store_true", help="the model takes BGR channel order")
    check.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), help="input size")
    resize = check.add_mutually_exclusive_group()
    resize.add_argument("--resize", type=int, metavar="N",
                        help="resize the shorter side to N pixels before the center crop (torchvision's 256 -> 224)")
    resize.add_argument("--crop-pct", type=float, metavar="F", dest="crop_pct",
                        help="timm's crop_pct: resize to int(size / F) before the center crop")
    check.add_argument("--interpolation", choices=["bilinear", "bicubic"],
                       help="the resize's filter (default: the model's, else bilinear)")
    check.add_argument("--task", choices=["classification", "segmentation", "image", "detection", "generic"],
                       help="what the main output means (default: what the model says, else read from its shape); "
                            "a detection passes when every format finds the same objects as PyTorch")
    check.add_argument("--score-threshold", type=float, metavar="F", dest="score_threshold",
                       help="detection: boxes scoring below F are dropped, on both sides (default 0.25; with random "
                            "weights, which score nothing that high, the 10th best score)")
    check.add_argument("--iou-threshold", type=float, metavar="F", dest="iou_threshold",
                       help="detection: NMS's IoU threshold, on both sides (default 0.45)")
    check.add_argument("--output-range", type=float, nargs=2, metavar=("LOW", "HIGH"), dest="output_range",
                       help="an image output's range, mapped to 0-255 pixels: 0 1 (sigmoid), -1 1 (tanh), 0 255; "
                            "implies --task image (default: read from the model's final tanh/sigmoid)")
    check.add_argument("--output", metavar="NAME|INDEX",
                       help="the main output, by name or position (default: the model's first)")
    check.add_argument("--labels", type=Path, help="text file, one class name per line")
    check.add_argument("--out", type=Path, help="output folder (default: a new temporary folder)")
    check.add_argument("--overwrite", action="store_true", help="replace existing artifacts in --out")
    _format_flags(check)
    check.add_argument("--option", action="append", default=[], metavar="FORMAT.NAME=VALUE",
                       help=f"any export option of a format, e.g. {_example('export_options')} (repeatable)")
    check.add_argument("--runtime-option", action="append", default=[], metavar="FORMAT.NAME=VALUE",
                       help=f"any runner option of a format, e.g. {_example('runtime_options')} (repeatable)")
    check.add_argument("--rtol", type=float, help="tolerance relative to each output's range "
                       "(default 1e-4 for fp32, 1e-2 for fp16)")
    check.add_argument("--atol", type=float, default=0.0, help="absolute tolerance added to --rtol's")
    check.add_argument("--compress", metavar="FORMAT:VARIANT,...",
                       help="compressed variants to build, run and compare after their format, e.g. "
                            f"{_example('variants')} ('--compress help' lists them); their format is added to --to")
    check.add_argument("--min-top1", type=float, metavar="F", dest="min_top1",
                       help="fail (exit 1) a format or variant whose top-1 agreement with PyTorch is below F (0-1)")
    check.add_argument("--min-psnr", type=float, metavar="DB", dest="min_psnr",
                       help="fail a format or variant whose worst PSNR against PyTorch is below DB")
    check.add_argument("--min-miou", type=float, metavar="F", dest="min_miou",
                       help="fail a format or variant whose segmentation mIoU against PyTorch is below F")
    check.add_argument("--json", action="store_true", help="print one JSON document instead of the table "
                       "(whatever the model, its factory or a converter prints goes to stderr)")
    check.add_argument("--debug", action="store_true",
                       help="print the traceback of an error inside an exporter, runner or the workbench to stderr")
    dataset_cli.add_arguments(check)  # --limit, --every, --workers, --engine, --resume ...: workbench/dataset/cli.py
    check.add_argument("--layers", action="store_true",
                       help="compare each failing format and each compressed variant with PyTorch layer by layer on "
                            "the first image: name the first diverging layer (JSON: the per-layer figures)")
    return parser


def _flags() -> dict[str, list[tuple[str, str, object]]]:
    """Each format option's command-line flag: {"--precision": [(format, kind, Option), ...]}, registry order."""
    from . import formats

    flags: dict[str, list] = {}
    for name, fmt in formats.registry().items():
        for kind, option in fmt.options_with_flags():
            flags.setdefault(option.flag, []).append((name, kind, option))
    return flags


def _format_flags(parser) -> None:
    """One argument per flag the registered formats declare (aliases of --option/--runtime-option), its help
    naming each format that takes it."""
    for flag, takers in _flags().items():
        choices = sorted({c for _, _, o in takers for c in (o.choices or ()) if c is not None}) or None
        if any(not o.choices for _, _, o in takers):
            choices = None  # a format takes any value: its exporter says which are wrong
        uses = "; ".join(f"{_title(name)}: {o.help or o.name}"
                         + ("" if "default" in o.help else f" (default {o.default})") for name, _, o in takers)
        parser.add_argument(flag, dest=_dest(flag), metavar=None if choices else "VALUE", choices=choices,
                            type=_literal,
                            help=f"{uses}. Applies to each chosen format that has it "
                                 f"(--{'runtime-' if takers[0][1] == 'runtime' else ''}option FORMAT."
                                 f"{takers[0][2].name}=VALUE sets one)")


def _literal(text: str):
    """A command-line value as a Python literal when it is one (1, 0.5, True), else the text (fp16)."""
    import ast

    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _dest(flag: str) -> str:
    return "flag_" + flag.lstrip("-").replace("-", "_")


def _title(name: str) -> str:
    from . import formats

    return formats.get(name).title


def _apply_flags(args, names: list[str], options: dict, runtime: dict) -> list[str]:
    """Put each flag given into the options of the chosen formats that take it (an explicit --option wins);
    returns notes for the chosen formats a flag does not apply to. A flag no chosen format takes is a usage
    error naming the formats that do."""
    notes = []
    for flag, takers in _flags().items():
        value = getattr(args, _dest(flag), None)
        if value is None:
            continue
        chosen = [(n, kind, o) for n, kind, o in takers if n in names]
        if not chosen:
            raise _Usage(f"{flag} applies to {', '.join(_title(n) for n, _, _ in takers)}; none of them is checked "
                         f"(--to {','.join(names)})")
        for name, kind, option in chosen:
            (options if kind == "export" else runtime).setdefault(name, {}).setdefault(option.name, value)
        others = [n for n in names if n not in {t[0] for t in takers}]
        if others:
            notes.append(f"{flag} {value}: applied to {', '.join(_title(n) for n, _, _ in chosen)}; "
                         f"{', '.join(_title(n) for n in others)} {'has' if len(others) == 1 else 'have'} no such "
                         "option")
    return notes


def _preprocess(args):
    from .preprocess import Preprocess

    if args.std is not None and args.mean is None:
        raise WorkbenchError("--std needs --mean (Normalize(mean, std))")
    if args.mean is not None:
        if args.std is None:
            raise WorkbenchError("--mean needs --std (Normalize(mean, std))")
        return Preprocess.from_normalize(args.mean, args.std, bgr=args.bgr, grayscale=len(args.mean) == 1)
    if args.preset:
        pre = Preprocess.preset(args.preset)
        return pre.replace(bgr=True) if args.bgr and not pre.bgr else pre
    return None


def _formats(text: str | None) -> list[str]:
    """The formats `--to` names, each registered; a usage error (exit 2) lists them otherwise."""
    from . import formats

    known = formats.registry()
    listing = ", ".join(f"{n} ({f.title}, {'/'.join(f.suffixes)})" for n, f in known.items())
    if text is None:
        return list(formats.defaults())
    names = [f.strip() for f in text.split(",") if f.strip()]
    if not names or names == ["help"]:
        raise _Usage(f"--to names no format; the registered formats are: {listing}")
    unknown = [n for n in names if n not in known]
    if unknown:
        raise _Usage(f"--to: unknown format {unknown[0]!r}; the registered formats are: {listing}")
    return names


def _compress(text: str | None) -> dict[str, list[str]]:
    """The variants `--compress` names as {format: [variant, ...]}; a usage error (exit 2) lists them otherwise."""
    from . import formats

    if text is None:
        return {}
    known = {n: f for n, f in formats.registry().items() if f.variants}
    listing = "; ".join(f"{n}: {', '.join(f.variants)}" for n, f in known.items())
    result: dict[str, list[str]] = {}
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items or items == ["help"]:
        raise _Usage(f"--compress names no variant; write FORMAT:VARIANT. The variants are {listing}")
    for item in items:
        fmt, colon, variant = item.partition(":")
        if not colon or fmt not in known or variant not in known[fmt].variants:
            raise _Usage(f"--compress: unknown variant {item!r}; write FORMAT:VARIANT. The variants are {listing}")
        result.setdefault(fmt, [])
        if variant not in result[fmt]:
            result[fmt].append(variant)
    return result


def _options(pairs: list[str], flag: str) -> dict[str, dict]:
    """FORMAT.NAME=VALUE pairs as {format: {name: value}}; values are read as Python literals when they
    are one (1, 0.5, True, None), else kept as text."""
    result: dict[str, dict] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        fmt, dot, name = key.partition(".")
        if not (sep and dot and fmt and name):
            raise _Usage(f"{flag} {pair!r}: write FORMAT.NAME=VALUE, e.g. {_example('export_options')}")
        result.setdefault(fmt.strip(), {})[name.strip()] = _literal(value)
    return result


def _task(args):
    """--task, an image task with its --output-range, or a detection with its thresholds."""
    given = {k: getattr(args, k) for k in ("score_threshold", "iou_threshold") if getattr(args, k) is not None}
    if given or args.task == "detection":
        if args.task not in (None, "detection") or args.output_range is not None:
            raise _Usage(f"--score-threshold and --iou-threshold are a detection's; they do not go with "
                         f"--task {args.task or 'image'}")
        from .tasks import Detection

        return Detection(**given)
    if args.output_range is None:
        return args.task
    from .tasks import ImageToImage

    if args.task not in (None, "image"):
        raise _Usage(f"--output-range is the range of an image output; it does not go with --task {args.task}")
    return ImageToImage(output_range=tuple(args.output_range))


class Progress:
    """What the check is doing, on stderr (also under --json, whose stdout stays one JSON document), for every
    step that runs `after` seconds or more: "workbench: exporting NAME ... (12.3 s)", with the seconds since
    the start; a step still running `every` seconds later is reported again ("still exporting NAME, 60 s"), so
    a slow export is never silent. Quick steps print nothing, so bad input still gives one line.
    WORKBENCH_PROGRESS_AFTER=0 reports every step."""

    VERBS = {"load": "loading", "run": "running", "export": "exporting", "compress": "compressing",
             "locate": "locating the divergence of"}

    def __init__(self, stream=None, every: float = 30.0, after: float | None = None):
        self.stream, self.every = stream or sys.stderr, every
        self.after = float(os.environ.get("WORKBENCH_PROGRESS_AFTER", 5.0)) if after is None else after
        self.start = self.since = self.said = time.monotonic()
        self.step, self.announced, self.spoke = None, False, False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._beat = threading.Thread(target=self._heartbeat, daemon=True)
        self._beat.start()

    def __call__(self, what: str, step: str) -> None:
        with self._lock:
            self.step = f"{self.VERBS.get(step, step)} {what}"
            self.since, self.announced = time.monotonic(), False
        if self.after <= 0:
            self.beat()

    def done(self) -> None:
        self.close()
        with self._lock:
            if self.spoke:
                self._print(f"done in {time.monotonic() - self.start:.1f} s")

    def close(self) -> None:
        """Stop the heartbeat."""
        self._stop.set()

    def beat(self) -> None:
        """Announce the current step once it has run `after` seconds; again every `every` seconds after."""
        with self._lock:
            now = time.monotonic()
            if not self.step:
                return
            if not self.announced and now - self.since >= self.after:
                self._print(f"{self.step} ... ({self.since - self.start:.1f} s)")
                self.announced, self.said = True, now
            elif self.announced and now - self.said >= self.every:
                self._print(f"still {self.step}, {now - self.since:.0f} s")
                self.said = now

    def _heartbeat(self) -> None:
        while not self._stop.wait(0.25):
            self.beat()

    def _print(self, text: str) -> None:
        self.spoke = True
        print(f"workbench: {text}", file=self.stream, flush=True)


@contextlib.contextmanager
def stdout_to_stderr():
    """File descriptor 1 (and `sys.stdout`) pointed at stderr meanwhile: what Python code prints and what C++
    writes to the process's stdout both land on stderr."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os.dup2(saved, 1)
        os.close(saved)


class _Usage(Exception):
    """Bad command-line usage: exit 2 with the message."""


def check(args) -> int:
    from .tasks import read_labels

    if dataset_cli.wants_stream(args):  # a large folder, an ImageFolder or a list: streamed (docs/dataset.md)
        return dataset_cli.run(args)
    names = _formats(args.to)
    compress = _compress(args.compress)
    names += [n for n in compress if n not in names]
    options = _options(args.option, "--option")
    runtime = _options(args.runtime_option, "--runtime-option")
    flag_notes = _apply_flags(args, names, options, runtime)
    options = {k: v for k, v in options.items() if k in names}
    if args.out:
        output_folder(args.out)  # an unwritable --out is bad input (exit 2): say so before any work
    images = args.images or SAMPLE_IMAGES
    labels = read_labels(args.labels) if args.labels else None
    progress = Progress()
    try:
        # under --json, stdout carries the JSON alone: a factory's model summary, a converter's print and a
        # runtime's C++ log line all go to stderr while the model is loaded, exported and run
        with stdout_to_stderr() if args.json else contextlib.nullcontext():
            report = _run(args, names, options, runtime, images, labels, progress, compress)
        report.notes += flag_notes
        progress.done()
    finally:
        progress.close()
    if args.debug:
        for name, r in report.formats.items():
            for text in [r.traceback] + [v.traceback for v in r.variants.values()]:
                if text:
                    print(f"workbench: {name}: {text}", file=sys.stderr)
    if args.json:
        print(report.to_json())
    else:
        print(render(report))
    return 0 if report.passed else 1


def _run(args, names, options, runtime, images, labels, progress, compress=None):
    from .compare import Tolerance
    from .session import Session

    session = Session(args.model, images, preprocess=_preprocess(args), task=_task(args), labels=labels,
                      size=args.size, output=args.output, resize=args.resize, crop_pct=args.crop_pct,
                      interpolation=args.interpolation, weights=None if args.weights == "none" else args.weights,
                      factory=args.factory, trust=args.trust_pickle,
                      runtime_options={k: v for k, v in runtime.items() if k in names}, progress=progress)
    tolerance = Tolerance(rel=args.rtol, atol=args.atol) if args.rtol is not None else None
    thresholds = {k: getattr(args, k) for k in ("min_top1", "min_psnr", "min_miou") if getattr(args, k) is not None}
    report = session.check(names, args.out, tolerance=tolerance, overwrite=args.overwrite, options=options,
                           progress=progress, compress=compress, thresholds=thresholds or None)
    if args.layers:
        from .layers import attach

        attach(session, report, tolerance, progress)
    return report


def render(report) -> str:
    lines = [f"model    {report.model}", f"images   {len(report.images)}: {', '.join(report.images)}",
             f"preproc  {report.preprocess.describe()}", f"task     {report.task}"]
    lines += [f"note     {n}" for n in report.notes]
    head = (f"{'format':<12}{'status':<9}{'max abs':>10}{'mean abs':>10}{'PSNR dB':>9}{'cosine':>10}"
            f"{'top-1/mIoU':>12}  path")
    lines += ["", head, "-" * len(head)]
    for name, r in report.formats.items():
        status = {True: "PASS", False: "FAIL", None: "NOT RUN"}[r.passed]
        w = r.comparison.worst() if r.comparison else {}
        cells = _cells(w)
        path = r.artifact.path if r.artifact else "-"
        lines.append(f"{name:<12}{status:<9}{''.join(cells)}  {path}")
        if r.label:
            lines.append(f"{'':<12}ran on: {r.label}")
        for text in (r.error, r.skipped):
            if text:
                lines.append(f"{'':<12}{text}")
        if r.comparison:
            lines += _detection_lines(w)
            lines += [f"{'':<12}{f}" for f in r.comparison.failures[:5]]
        if r.divergence:
            lines += [f"{'':<12}{line}" for line in r.divergence.splitlines()]
        if r.artifact:
            lines += [f"{'':<12}({n})" for n in r.artifact.notes]
        lines += _variant_lines(r)
    lines += ["", "parity: " + ("PASS" if report.passed else "FAIL")]
    return "\n".join(lines)


def _cells(w: dict) -> list[str]:
    task = w.get("top1_agreement", w.get("miou"))
    cells = [f"{w['max_abs']:>10.3g}", f"{w['mean_abs']:>10.3g}",
             f"{w['psnr']:>9.1f}" if math.isfinite(w["psnr"]) else f"{'inf':>9}",
             f"{w['cosine']:>10.6f}"] if w else [f"{'-':>10}", f"{'-':>10}", f"{'-':>9}", f"{'-':>10}"]
    cells.append(f"{task:>12.3f}" if task is not None else f"{'-':>12}")
    return cells


def _detection_lines(w: dict) -> list[str]:
    """A detector's figures against PyTorch's boxes, on one line under its format."""
    if "det_recall" not in w:
        return []
    return [f"{'':<12}boxes: precision {w['det_precision']:.3f}, recall {w['det_recall']:.3f} (IoU 0.5), "
            f"mAP@0.5:0.95 {w['det_map']:.3f}, class flips {w['det_class_flips']:.0f}, largest box diff "
            f"{w['det_box_diff']:.3g} px, score diff {w['det_score_diff']:.3g}; {w['det_boxes']:.0f} boxes for "
            f"PyTorch's {w['det_reference_boxes']:.0f}" + _borderline(w)]


def _borderline(w: dict) -> str:
    n = w.get("det_borderline", 0)
    return (f" (and {n:.0f} just under the score threshold, matched there: borderline, neither lost nor extra)"
            if n else "")


def _variant_lines(r) -> list[str]:
    """One line per compressed variant under its format: status, figures, size against the artifact."""
    lines = []
    for name, v in r.variants.items():
        status = {True: "PASS", False: "FAIL", None: "figures"}[v.passed]
        w = v.comparison.worst() if v.comparison else {}
        size = (f"{v.size_bytes:,} B, x{v.size_ratio:.2f}" if v.size_ratio is not None else "-")
        label = f"  {name}"
        if len(label) > 11:  # a long name gets a line of its own, so the figures stay in their columns
            lines.append(label)
            label = ""
        lines.append(f"{label:<12}{status:<9}{''.join(_cells(w))}  {size}  {v.artifact.path if v.artifact else '-'}")
        extra = ([v.error] if v.error else []) + _detection_lines(w) + v.failures + [f"({n})" for n in v.artifact.notes
                                                               if v.artifact]
        extra += (v.divergence or "").splitlines()  # --layers
        lines += [f"{'':<12}{text}" for text in extra]
    return lines


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    warnings.filterwarnings("ignore")
    try:
        return check(args)
    except _Usage as exc:
        print(f"workbench: error: {exc} (see 'workbench check --help')", file=sys.stderr)
        return 2
    except WorkbenchError as exc:
        print(f"workbench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("workbench: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug (in the workbench or a library it drives): one line, the traceback on --debug
        if args.debug:
            raise
        from .errors import first_line

        print(f"workbench: error: {type(exc).__name__}: {first_line(exc)[:400]} (a bug: rerun with --debug for "
              "the traceback, and report it)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
