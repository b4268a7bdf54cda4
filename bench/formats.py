"""(b) Each format's own figures: what only that format has to measure, declared as `Format.bench` in its folder
(e.g. an interpreter per image against PyTorch eager; each format's bench.py says what it times).
A format without one adds nothing here; one whose bench fails is reported and the others still run.
"""

from __future__ import annotations

import traceback

from .common import row

SECTION = "b"


def benches() -> dict:
    """format name -> its `(settings) -> (rows, targets)`, for every registered format that declares one."""
    from workbench import formats

    return {name: fn for name, fmt in formats.registry().items() if (fn := fmt.own_bench()) is not None}


def run(settings) -> tuple[list[dict], list[dict]]:
    rows, targets = [], []
    for name, bench in benches().items():
        try:
            r, t = bench(settings)
        except Exception as exc:  # one format's bench must not lose the others' figures
            traceback.print_exc()
            r, t = [row(SECTION, name, f"{name}'s bench failed: {type(exc).__name__}: {exc}", None)], []
        rows += r
        targets += t
    return rows, targets
