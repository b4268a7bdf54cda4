"""Where batches run: the local engine (this process, or `workers` processes), or Ray Data.

Both call `run.process` / `run.candidate_rows` on the same batches, so they give the same figures. The Ray
engine runs PyTorch once per image in a first actor pool, then each candidate's runner in an actor pool of
its own (`map_batches` with a class), with the artifact's bytes shipped to the workers through Ray's object
store, so a cluster whose machines do not share this one's disk can run it. Ray is imported only here, with
its usage statistics and dashboard off: nothing leaves the machine.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pickle
import sys
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from ..errors import WorkbenchError
from ..tasks import Classification
from .run import BatchResult, Plan, candidate_rows, close_runners, process, reference, run_isolated
from .source import Item, read


def make_engine(name: str, plan: Plan, *, workers: int = 1, address: str | None = None):
    if name == "ray":
        return RayEngine(plan, address=address, workers=workers)
    return LocalEngine(plan, workers=workers)


def _single_threaded(plan: Plan) -> Plan:
    """The plan with each runtime on one thread, for one of several worker processes sharing the cores."""
    from ..formats import get

    def threads(fmt):
        return any(o.name == "threads" for o in get(fmt).runtime_options)

    cands = [dataclasses.replace(c, runtime_options={"threads": 1, **c.runtime_options})
             if threads(c.format) else c for c in plan.candidates]
    return dataclasses.replace(plan, candidates=cands)


def _cloudpickle():
    """cloudpickle (standalone, else Ray's copy), or None."""
    try:
        import cloudpickle
    except ImportError:
        try:
            from ray import cloudpickle
        except ImportError:
            return None
    return cloudpickle


def _by_value(plan: Plan, cloudpickle) -> None:
    """Send the model's class by value when it lives in a file.py the workers cannot import by name
    (models.py loads `file.py:factory` models as `_workbench_user_*` modules)."""
    name = type(plan.module).__module__
    module = sys.modules.get(name)
    if module is not None and name.startswith("_workbench_user_"):
        cloudpickle.register_pickle_by_value(module)


def _dumps(plan: Plan) -> bytes:
    cp = _cloudpickle()
    if cp is None:
        return pickle.dumps(plan)
    _by_value(plan, cp)
    return cp.dumps(plan)


# -- local ------------------------------------------------------------------------------------------
_PLAN: Plan | None = None


def _init_worker(blob: bytes) -> None:
    global _PLAN
    import torch

    torch.set_num_threads(1)
    _PLAN = pickle.loads(blob)


def _work(items: list[Item]) -> BatchResult:
    return process(_PLAN, items)


class LocalEngine:
    """Batches in this process (workers=1), or in `workers` processes, at most two batches each in flight so
    that memory stays flat however many images there are."""

    def __init__(self, plan: Plan, workers: int = 1):
        self.plan, self.workers, self.pool = plan, workers, None

    def __enter__(self):
        if self.workers > 1:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            try:
                blob = _dumps(_single_threaded(self.plan))
            except Exception as exc:
                raise WorkbenchError(f"--workers {self.workers}: the model cannot be sent to worker processes "
                                     f"({type(exc).__name__}: {exc}); use --workers 1") from exc
            self.pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                            initializer=_init_worker, initargs=(blob,))
        return self

    def __exit__(self, *exc):
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
        close_runners()

    def map(self, batches: Iterable[list[Item]]) -> Iterator[BatchResult]:
        if self.pool is None:
            for items in batches:
                yield process(self.plan, items)
            return
        from concurrent.futures import FIRST_COMPLETED, wait

        pending = set()
        for items in batches:
            pending.add(self.pool.submit(_work, items))
            if len(pending) >= 2 * self.workers:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for f in finished:
                    yield f.result()
        while pending:
            finished, pending = wait(pending, return_when=FIRST_COMPLETED)
            for f in finished:
                yield f.result()


# -- Ray Data ---------------------------------------------------------------------------------------
def start_ray(address: str | None = None, num_cpus: int = 2):
    """Ray, started locally (num_cpus, no dashboard) or connected to the cluster at `address`; its usage
    statistics off before it is imported. Returns (ray, whether this call started it)."""
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    os.environ.setdefault("RAY_DISABLE_DOCKER_CPU_WARNING", "1")
    try:
        import ray
    except ImportError as exc:
        raise WorkbenchError("--engine ray needs Ray Data: pip install 'workbench[ray]' (or 'ray[data]')") from exc
    if ray.is_initialized():
        return ray, False
    kwargs = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
    try:
        if address:
            ray.init(address=address, **{k: v for k, v in kwargs.items() if k != "include_dashboard"})
        else:
            # a local cluster listens on loopback only: no port of it is reachable from another machine
            ray.init(num_cpus=num_cpus, _node_ip_address="127.0.0.1", **kwargs)
    except Exception as exc:
        raise WorkbenchError(f"cannot start Ray{' at ' + address if address else ''}: {exc}") from exc
    import logging

    for name in ("ray", "ray.data"):  # Ray's INFO lines would bury the progress bar on stderr
        logging.getLogger(name).setLevel(logging.ERROR)
    ray.data.DataContext.get_current().enable_progress_bars = False
    return ray, True


def _pack(path: Path) -> dict[str, bytes]:
    """An artifact's files (a file and its siblings named after it, such as external weights, or a folder
    such as an .mlpackage) as {relative path: bytes}."""
    files = {}
    if path.is_dir():
        for f in sorted(path.rglob("*")):
            if f.is_file():
                files[str(Path(path.name) / f.relative_to(path))] = f.read_bytes()
    else:
        for f in sorted(path.parent.glob(path.name + "*")):
            if f.is_file():
                files[f.name] = f.read_bytes()
    return files


def _unpack(files: dict[str, bytes]) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="workbench-ray-"))
    for rel, data in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
    return folder


class _ReferenceStage:
    """Reads a batch of images and runs PyTorch on it, once per image."""

    def __init__(self, plan_ref):
        import ray
        import torch

        torch.set_num_threads(1)
        self.plan = ray.get(plan_ref[0])

    def __call__(self, batch: dict) -> dict:
        items = _items(batch)
        pre = self.plan.preprocess
        pixels, reasons = read(items, pre.size, pre.fit, pre.resize, pre.interpolation)
        n = len(items)
        full = np.zeros((n, 3, *pre.size), np.float32)
        ok = [i for i, r in enumerate(reasons) if r is None]
        full[ok] = pixels
        batch["reason"] = np.array([r or "" for r in reasons], dtype=object)
        batch["pixels"] = full
        batch["ref_class"] = np.full(n, -1, np.int64)
        if ok:
            ref = reference(self.plan, pixels)
            if isinstance(self.plan.task, Classification):
                batch["ref_class"][ok] = ref[self.plan.outputs[0]].reshape(len(ok), -1).argmax(1)
            for name, value in ref.items():
                column = np.zeros((n, *value.shape[1:]), value.dtype)
                column[ok] = value
                batch[f"ref:{name}"] = column
        else:
            for name in self.plan.outputs:
                batch[f"ref:{name}"] = np.zeros((n, 1), np.float32)  # no image readable: no figure made from it
        return batch


class _CandidateStage:
    """One candidate's runner on the batches, in an actor: its artifact unpacked on the worker."""

    def __init__(self, plan_ref, position: int, files_ref):
        import ray
        import torch

        torch.set_num_threads(1)
        plan = ray.get(plan_ref[0])
        cand = plan.candidates[position]
        folder = _unpack(ray.get(files_ref[0]))
        artifact = dataclasses.replace(cand.artifact, path=folder / cand.artifact.path.name)
        self.cand = dataclasses.replace(cand, artifact=artifact,
                                        runtime_options={"threads": 1, **cand.runtime_options}
                                        if cand.format == "onnx" else cand.runtime_options)
        self.plan = dataclasses.replace(plan, candidates=[self.cand])

    def __call__(self, batch: dict) -> dict:
        items = _items(batch)
        ok = [i for i, r in enumerate(batch["reason"]) if not r]
        rows, worst = [], []
        if ok:
            pixels = np.ascontiguousarray(batch["pixels"][ok])
            ref = {name: np.ascontiguousarray(batch[f"ref:{name}"][ok]) for name in self.plan.outputs}
            outputs, errors = run_isolated(lambda px: _run(self.cand, px), pixels)
            rows, worst = candidate_rows(self.plan, self.cand, [items[i] for i in ok], pixels, ref, outputs, errors)
        name = self.cand.name
        by_index = {r[0]: r for r in rows}
        kept = {w[0]: w for w in worst}
        batch[f"rows:{name}"] = np.array([json.dumps(by_index.get(int(i))) for i in batch["index"]], dtype=object)
        batch[f"worst:{name}"] = np.array([pickle.dumps(kept[int(i)][1:]) if int(i) in kept else b""
                                          for i in batch["index"]], dtype=object)
        return batch


def _run(cand, pixels):
    from .run import run_candidate

    return run_candidate(cand, pixels)


def _items(batch: dict) -> list[Item]:
    labels = batch["label"]
    return [Item(int(i), str(n), str(p), None if int(lab) < 0 else int(lab))
            for i, n, p, lab in zip(batch["index"], batch["name"], batch["path"], labels)]


class RayEngine:
    """Ray Data: PyTorch in one actor pool, each candidate in its own, batches streamed back in order."""

    def __init__(self, plan: Plan, address: str | None = None, workers: int = 1):
        self.plan, self.address, self.workers = plan, address, workers
        self.ray = None
        self.started = False

    def __enter__(self):
        self.ray, self.started = start_ray(self.address)
        return self

    def __exit__(self, *exc):
        if self.started:
            with contextlib.suppress(Exception):
                self.ray.shutdown()

    def map(self, batches: Iterable[list[Item]]) -> Iterator[BatchResult]:
        ray = self.ray
        chunks = list(batches)
        rows = [{"index": i.index, "name": i.name, "path": str(Path(i.path).resolve()),
                 "label": -1 if i.label is None else i.label} for chunk in chunks for i in chunk]
        if not rows:
            return
        size = max(len(c) for c in chunks)
        from ray import cloudpickle

        _by_value(self.plan, cloudpickle)
        plan_ref = [ray.put(self.plan)]
        ds = ray.data.from_items(rows, override_num_blocks=len(chunks))
        pool = max(1, self.workers)
        ds = ds.map_batches(_ReferenceStage, fn_constructor_kwargs={"plan_ref": plan_ref}, batch_size=size,
                            batch_format="numpy", concurrency=pool, num_cpus=1)
        for position, cand in enumerate(self.plan.candidates):
            files_ref = [ray.put(_pack(Path(cand.artifact.path)))]
            ds = ds.map_batches(_CandidateStage, fn_constructor_kwargs={"plan_ref": plan_ref, "position": position,
                                                                        "files_ref": files_ref},
                                batch_size=size, batch_format="numpy", concurrency=pool, num_cpus=1)
        names = [c.name for c in self.plan.candidates]
        ds = ds.drop_columns(["pixels", *[f"ref:{n}" for n in self.plan.outputs]])
        for batch in ds.iter_batches(batch_size=size, batch_format="numpy", prefetch_batches=1):
            yield self._result(batch, names)

    def _result(self, batch: dict, names: list[str]) -> BatchResult:
        result = BatchResult()
        for i, (idx, name, label, reason) in enumerate(zip(batch["index"], batch["name"], batch["label"],
                                                           batch["reason"])):
            ref_class = int(batch["ref_class"][i]) if int(batch["ref_class"][i]) >= 0 else None
            result.images.append((int(idx), str(name), None if int(label) < 0 else int(label),
                                  "skipped" if reason else "ok", reason or None, ref_class))
        for cand in names:
            for text in batch[f"rows:{cand}"]:
                row = json.loads(text)
                if row is not None:
                    result.results.append(tuple(row))
            result.worst[cand] = [(int(idx), *pickle.loads(blob)) for idx, blob in
                                  zip(batch["index"], batch[f"worst:{cand}"]) if blob]
        return result
