"""One dataset run: the plan (what every worker needs), the work on one batch, and the driver loop.

`process(plan, items)` is the whole work on a batch, wherever it runs: read the images (an unreadable one is
recorded as skipped), PyTorch once, then each candidate (a format's artifact or a compressed variant)
compared with `workbench.compare.compare`, the comparison the CLI and the widget use, so the figures are
the ones they report. Only per-image figures leave it, with the outputs of the batch's few worst images per
candidate; the store keeps the N worst of the whole run. A candidate that fails on a batch is retried image
by image, and the images it still fails on are recorded as failed for it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..compare import DEFAULT_TOLERANCES, Tolerance, compare
from ..errors import WorkbenchError, first_line
from ..formats import Artifact
from ..preprocess import Preprocess
from ..tasks import Classification, Segmentation, Task
from .source import ImageSource, Item, open_source, read

BATCH = 16
WORST = 8


@dataclass(frozen=True)
class Candidate:
    """A format's artifact, or a compressed variant of it, as the run compares it with PyTorch."""

    name: str  # "onnx", "onnx int8"
    format: str
    artifact: Artifact
    runtime_options: dict = field(default_factory=dict)
    tolerance: Tolerance | Mapping | None = None

    def runner(self):
        from .. import formats

        return formats.get(self.format).make_runner(self.artifact, **self.runtime_options)


@dataclass
class Plan:
    """What a worker needs to process batches: picklable (processes get it by fork, Ray by cloudpickle)."""

    module: object  # the PyTorch model (eval mode)
    preprocess: Preprocess
    outputs: tuple[str, ...]  # the reference's outputs, the main one first
    task: Task
    candidates: list[Candidate]
    worst_n: int = WORST

    @property
    def figure(self) -> str:
        """The task's agreement figure, per image: what `worst` ranks by."""
        return figure_of(self.task)


def figure_of(task: Task) -> str:
    if isinstance(task, Classification):
        return "top1_agreement"
    if isinstance(task, Segmentation):
        return "miou"
    return "psnr"


@dataclass
class BatchResult:
    """Rows for the store: `images` (idx, name, label, status, reason, ref_class), `results` (store.RESULT_COLUMNS),
    `worst`: per candidate, up to worst_n (idx, figure, psnr, pixels uint8, reference, output) of this batch."""

    images: list[tuple] = field(default_factory=list)
    results: list[tuple] = field(default_factory=list)
    worst: dict[str, list[tuple]] = field(default_factory=dict)
    seconds: float = 0.0


# -- the work on one batch --------------------------------------------------------------------------
_RUNNERS: dict[str, object] = {}  # per process: each candidate's runner, built once


def _runner(cand: Candidate):
    r = _RUNNERS.get(cand.name)
    if r is None:
        r = _RUNNERS[cand.name] = cand.runner()
    return r


def close_runners() -> None:
    for r in _RUNNERS.values():
        with contextlib.suppress(Exception):
            r.deactivate()
    _RUNNERS.clear()


def reference(plan: Plan, pixels: np.ndarray) -> dict[str, np.ndarray]:
    """PyTorch's outputs, one image at a time as the session computes them, in the reference's order."""
    from ..formats.common.pytorch import TorchRunner

    raw = TorchRunner(plan.module, label="PyTorch (eager)", batch=1).run(pixels, plan.preprocess)
    return {name: raw[name] for name in plan.outputs}


def process(plan: Plan, items: Sequence[Item], pixels=None, reasons=None, ref=None) -> BatchResult:
    """Read, run and compare one batch (pixels/reasons/ref: already computed, as the Ray engine's first stage
    gives them)."""
    start = time.perf_counter()
    if pixels is None:
        pixels, reasons = read(items, plan.preprocess.size, plan.preprocess.fit, plan.preprocess.resize,
                               plan.preprocess.interpolation)
    ok = [item for item, why in zip(items, reasons) if why is None]
    if ref is None and ok:
        ref = reference(plan, pixels)
    main = plan.outputs[0]
    classify = isinstance(plan.task, Classification)
    ref_class = ref[main].reshape(len(ok), -1).argmax(1) if ok and classify else [None] * len(ok)
    result = BatchResult()
    by_index = {item.index: i for i, item in enumerate(ok)}
    for item, why in zip(items, reasons):
        i = by_index.get(item.index)
        rc = int(ref_class[i]) if i is not None and ref_class[i] is not None else None
        result.images.append((item.index, item.name, item.label, "skipped" if why else "ok", why, rc))
    if ok:
        for cand in plan.candidates:
            rows, worst = candidate_rows(plan, cand, ok, pixels, ref)
            result.results += rows
            result.worst[cand.name] = worst
    result.seconds = time.perf_counter() - start
    return result


def run_candidate(cand: Candidate, pixels: np.ndarray) -> dict[str, np.ndarray]:
    return _runner(cand).run(pixels)


def candidate_rows(plan: Plan, cand: Candidate, items: Sequence[Item], pixels, ref, outputs=None, errors=None):
    """The store rows of one candidate on a batch of readable images, and the batch's worst for it.

    outputs: the candidate's outputs when already computed; errors: {position: reason} of images it failed on."""
    if outputs is None:
        outputs, errors = run_isolated(lambda px: run_candidate(cand, px), pixels)
    errors = errors or {}
    good = [i for i in range(len(items)) if i not in errors]
    rows = [(items[i].index, cand.name, "failed", errors[i]) + (None,) * 9 for i in errors]
    if not good:
        return rows, []
    ref_good = {k: v[good] for k, v in ref.items()} if len(good) < len(items) else ref
    tol = cand.tolerance or DEFAULT_TOLERANCES[cand.artifact.precision]
    names = [items[i].name for i in good]
    expected = cand.artifact.expected(ref_good)
    comparison = compare(expected, outputs, task=plan.task, tolerance=tol, images=names, name=cand.name)
    main = plan.outputs[0]
    per_image: dict[str, list] = {n: [] for n in names}
    for r in comparison.rows:
        per_image[r.image].append(r)
    figure = plan.figure
    cand_main = next(iter(outputs.values())) if main not in outputs else outputs[main]
    classify = isinstance(plan.task, Classification)
    cand_class = np.asarray(cand_main).reshape(len(good), -1).argmax(1) if classify else None
    scored = []
    for j, name in enumerate(names):
        image_rows = per_image[name]
        main_row = next((r for r in image_rows if r.output == main), image_rows[0])
        fig = main_row.task.get(figure, main_row.psnr) if figure != "psnr" else main_row.psnr
        psnr = min(r.psnr for r in image_rows)
        rows.append((items[good[j]].index, cand.name, "ok", None,
                     int(all(r.passed for r in image_rows)),
                     max(r.max_abs for r in image_rows), max(r.mean_abs for r in image_rows),
                     max(r.max_rel for r in image_rows), psnr, min(r.cosine for r in image_rows), float(fig),
                     main_row.task.get("top5_agreement"), int(cand_class[j]) if classify else None))
        scored.append((float(fig) if fig == fig else -np.inf, psnr, j))
    scored.sort()
    worst = []
    for fig, psnr, j in scored[:plan.worst_n]:
        g = good[j]
        worst.append((items[g].index, fig, psnr, np.clip(pixels[g], 0, 255).astype(np.uint8),
                      np.asarray(expected[main][j]), np.asarray(cand_main[j])))
    return rows, worst


def run_isolated(run, pixels: np.ndarray):
    """`run(pixels)`; when it fails on the batch, image by image: (outputs of the images it ran on, {position:
    reason} of the others). The outputs are None when it failed on every image."""
    try:
        return run(pixels), {}
    except Exception as exc:  # one bad image must not cost the batch: find which
        if len(pixels) == 1:
            return None, {0: _reason(exc)}
    parts, errors = [], {}
    for i in range(len(pixels)):
        try:
            parts.append(run(pixels[i:i + 1]))
        except Exception as exc:
            errors[i] = _reason(exc)
    if not parts:
        return None, errors
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}, errors


def _reason(exc: BaseException) -> str:
    return first_line(exc) if isinstance(exc, WorkbenchError) else f"{type(exc).__name__}: {first_line(exc)}"


# -- the driver -------------------------------------------------------------------------------------
def candidates_of(report, runtime_options: Mapping[str, dict] | None = None,
                  tolerance: Tolerance | Mapping | None = None) -> tuple[list[Candidate], list[str]]:
    """The candidates a sample-image check (`Session.check`'s Report) produced, and a note for each format or
    variant it could not produce or run here."""
    cands, notes = [], []
    for name, r in report.formats.items():
        opts = dict((runtime_options or {}).get(name, {}))
        if r.artifact is None or r.error or r.skipped:
            notes.append(f"{name}: not checked on the dataset: {r.error or r.skipped or 'no artifact'}")
        else:
            cands.append(Candidate(name, name, _shippable(r.artifact), opts, tolerance))
        for v, vr in r.variants.items():
            if vr.artifact is None or vr.error:
                notes.append(f"{name} {v}: not checked on the dataset: {vr.error or 'no artifact'}")
            else:
                cands.append(Candidate(f"{name} {v}", name, _shippable(vr.artifact), opts, tolerance))
    return cands, notes


def _shippable(artifact: Artifact) -> Artifact:
    """The artifact without its in-memory traced module (the divergence locator's), which workers do not need."""
    return dataclasses.replace(artifact, traced=None) if artifact.traced is not None else artifact


def _progress_bar(total: int, done: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, initial=done, unit="img", file=sys.stderr, dynamic_ncols=True, disable=not enabled,
                smoothing=0.1, desc="workbench: dataset")


def check_dataset(session, source, formats: Sequence[str] | None = None, out: str | Path | None = None, *,
                  compress: Mapping[str, Sequence[str]] | None = None, options: Mapping[str, dict] | None = None,
                  tolerance: Tolerance | Mapping | None = None, labels_from_folders: bool | None = None,
                  limit: int | None = None, every: int | None = None, workers: int = 1, engine: str = "local",
                  ray_address: str | None = None, resume: bool = False, overwrite: bool = False,
                  batch_size: int = BATCH, worst_n: int = WORST, progress: bool = True, report=None,
                  thresholds: Mapping[str, float] | None = None, preprocess: Preprocess | None = None,
                  on_batch=None, stop=None):
    """Check `session`'s model on every image of `source`, streamed; returns a `DatasetResult`.

    session: a `workbench.Session` (its sample images are what the artifacts are exported, calibrated and
    checked on first). source: a folder, ImageFolder, .txt list or an `ImageSource` (see `open_source`).
    formats/compress/options/tolerance/thresholds: as `Session.check` takes them. out: the run's folder
    (artifacts, dataset.sqlite, the worst-image pictures; default: a new temporary folder). engine: "local"
    (`workers` processes) or "ray" (`ray_address`: an existing cluster, else a local one of 2 CPUs).
    resume: continue the run recorded in `out`. report: an existing `Session.check` Report to take the
    artifacts from (skips the export). Raises WorkbenchError for a bad source, engine or an earlier run
    that does not match. preprocess: what the artifacts carry (default: the training preprocessing; the
    reference is always the training one, as in `Session.check`). on_batch(done, total): called after each
    batch is stored; stop(): checked between batches, True ends the run there (resumable, `resume=True`).
    """
    import tempfile

    from .engines import make_engine
    from .result import DatasetResult
    from .store import Store

    if engine not in ("local", "ray"):
        raise WorkbenchError(f"engine {engine!r}: use 'local' or 'ray'")
    if workers < 1:
        raise WorkbenchError(f"workers {workers}: at least 1")
    classes = session.labels if isinstance(session.task, Classification) else None
    src = source if isinstance(source, ImageSource) else open_source(
        source, labels=classes, labels_from_folders=labels_from_folders, limit=limit, every=every)
    out = Path(out) if out is not None else Path(tempfile.mkdtemp(prefix="workbench-dataset-"))
    names = list(formats) if formats is not None else None
    baked = preprocess or session.training_preprocess
    fingerprint = {"model": session.model.source, "preprocess": session.training_preprocess.to_dict(),
                   "baked": baked.to_dict(),
                   "task": session.task.name, "formats": names,
                   "compress": {k: list(v) for k, v in (compress or {}).items()},
                   "options": options or {}, "tolerance": repr(tolerance), "source": str(src.root),
                   "images": len(src.items), "first": src.items[0].name if src.items else None,
                   "last": src.items[-1].name if src.items else None}
    store = Store(out, fingerprint, resume=resume, overwrite=overwrite, worst_n=worst_n)
    try:
        if report is None:
            report = session.check(names, out, tolerance=tolerance, overwrite=True, options=options,
                                   compress=compress, thresholds=thresholds, preprocess=baked)
        runtime = session.exported.runtime_options
        cands, notes = candidates_of(report, runtime, tolerance)
        plan = Plan(session.model.module, session.training_preprocess, tuple(session.outputs), session.task, cands,
                    worst_n)
        done = store.done() & {i.index for i in src.items}
        started = time.perf_counter()
        computed = 0
        bar = _progress_bar(len(src.items), len(done), progress)
        try:
            with make_engine(engine, plan, workers=workers, address=ray_address) as eng:
                for batch in eng.map(src.batches(batch_size, done)):
                    store.write(batch)
                    computed += len(batch.images)
                    bar.update(len(batch.images))
                    if on_batch is not None:
                        on_batch(len(done) + computed, len(src.items))
                    if stop is not None and stop():
                        break
        finally:
            bar.close()
        seconds = time.perf_counter() - started
    finally:
        store.close()
    return DatasetResult.load(out, session=session, source=src, report=report, notes=notes, thresholds=thresholds,
                              computed=computed, seconds=seconds, engine=engine, workers=workers)


def _env_threads(workers: int) -> None:
    """Single-threaded runtimes in each of several workers: `workers` processes share the cores."""
    if workers > 1:
        os.environ.setdefault("OMP_NUM_THREADS", "1")
