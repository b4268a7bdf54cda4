"""Timing, the preprocessing sweep, machine facts and table helpers shared by the sections."""

from __future__ import annotations

import gc
import itertools
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
# The workbench's own packages; each format's (`Format.modules`) follow them in the results.
PACKAGES = ("torch", "torchvision", "numpy", "pillow", "ipywidgets", "ipykernel")


@dataclass
class Settings:
    """How hard to measure: `quick` is for developing the bench (fewer runs, fewer models)."""

    quick: bool = False
    runs: int = 15  # fast things (a refresh, a bare inference): this VM's noise needs many
    slow_runs: int = 3  # things that take seconds (an export, a reconversion, a notebook)
    workdir: Path = field(default_factory=lambda: Path("/tmp"))

    @classmethod
    def make(cls, quick: bool, workdir: Path) -> Settings:
        return cls(quick, 3, 1, workdir) if quick else cls(False, 15, 3, workdir)


def measure(fn: Callable[[], object], runs: int, warmup: int = 1) -> dict:
    """Median wall time of `fn` in ms over `runs` calls after `warmup` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        gc.collect()
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return summary(times)


def measure_pair(a: Callable[[], object], b: Callable[[], object], runs: int, warmup: int = 1) -> tuple[dict, dict]:
    """`measure` for two things taken in turns (a, b, a, b, ...): a ratio of their medians is then not
    skewed by the machine getting faster or slower between two blocks of runs."""
    times = _in_turns(a, b, runs, warmup)
    return summary(times[0]), summary(times[1])


def measure_ratio(a: Callable[[], object], b: Callable[[], object], runs: int,
                  warmup: int = 1) -> tuple[dict, dict, float]:
    """`measure_pair`, and the median of the ratios a/b of each run of a to the run of b just after it: on
    this VM, whose speed drifts within seconds, steadier than the ratio of the medians."""
    times = _in_turns(a, b, runs, warmup)
    return summary(times[0]), summary(times[1]), statistics.median(x / y for x, y in zip(*times))


def _in_turns(a, b, runs, warmup) -> tuple[list, list]:
    for _ in range(warmup):
        a()
        b()
    times: tuple[list, list] = ([], [])
    for _ in range(runs):
        for fn, out in ((a, times[0]), (b, times[1])):
            gc.collect()
            start = time.perf_counter()
            fn()
            out.append((time.perf_counter() - start) * 1000)
    return times


def preprocess_values(wb) -> Iterator:
    """Preprocessings for a built `Workbench` `wb`: its reference one with the scale nudged by up to 5%, a new
    value each time, so nothing can be answered from a cache of the last one."""
    base = wb.reference_preprocess.with_imagetype()
    return (base.replace(scale=(base.scale[0] * (1 + 1e-3 * (k % 50)),) * base.channels, name="bench")
            for k in itertools.count())


def first_column_timer(wb, values: Iterator) -> Callable[[], float]:
    """A call that sets `wb.preprocess` to the next of `values` and returns the ms until the widget's first
    column (the fastest live runtime's) was updated. Listens to `wb.controller` from now on."""
    first_at: list[float] = []
    wb.controller.listen(lambda what: first_at.append(time.perf_counter()) if what == "column" else None)

    def first_column() -> float:
        first_at.clear()
        start = time.perf_counter()
        wb.preprocess = next(values)
        return (first_at[0] - start) * 1000

    return first_column


def summary(times_ms: list[float]) -> dict:
    return {"median_ms": statistics.median(times_ms), "min_ms": min(times_ms), "max_ms": max(times_ms),
            "runs": len(times_ms)}


def row(section: str, case: str, what: str, stats: dict | None, **extra) -> dict:
    """One line of the results: a timed thing (`stats` from `measure`) or a note (`stats` None)."""
    return {"section": section, "case": case, "what": what, **(stats or {}), **extra}


def target(name: str, measured: float | None, limit: float, unit: str, note: str = "") -> dict:
    """A target from the issue: held when `measured <= limit` (None: could not be measured here)."""
    held = None if measured is None else measured <= limit
    return {"target": name, "measured": measured, "limit": limit, "unit": unit, "held": held, "note": note}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict:
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "os": platform.platform(),
            "python": sys.version.split()[0], "load_average_at_start": list(os.getloadavg())}


def versions() -> dict:
    """Version of each of PACKAGES and of every format's modules (None: not installed in this environment,
    e.g. a format whose runtime lives in the Android tools env)."""
    from workbench import formats

    dists = metadata.packages_distributions()
    found = {}
    for name in PACKAGES + formats.modules():
        try:
            found[name] = metadata.version(dists.get(name, [name])[0])
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def fmt_ms(value) -> str:
    if value is None:
        return "-"
    return f"{value / 1000:.2f} s" if value >= 1000 else f"{value:.1f} ms"
