"""Run the benchmarks: `python -m bench.run [--quick] [--sections abcdefghi] [--out bench/results.json]`.

Prints one table per section and the targets, and writes every figure (medians, run counts, the machine,
package versions, the load average before and after) to the results file. `--markdown` prints the tables
of an existing results file for the README instead of running anything.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import logging
import os
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

from workbench import formats

from .common import ROOT, Settings, machine, row, versions
from .report import markdown, text

SECTIONS = {"a": "refresh", "b": "formats", "c": "export", "d": "first_render", "e": "startup", "f": "android",
            "g": "variants", "h": "dataset", "i": "dataset_widget"}
TITLES = {"a": "(a) refresh vs floor vs full reconversion", "b": "(b) each format's own figures (Format.bench)",
          "c": "(c) export vs the bare converter calls", "d": "(d) first render of notebook 05's workbench",
          "e": "(e) import time and peak memory",
          "f": "(f) formats outside the default set: refresh vs floor",
          "g": "(g) compressed variants: refresh vs floor",
          "h": "(h) dataset check: memory, throughput, workers",
          "i": "(i) the widget while a dataset runs"}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer runs and models: for developing the bench")
    parser.add_argument("--sections", default="abcdefghi", help="which sections, e.g. 'ae' (default: all)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results.json")
    parser.add_argument("--markdown", action="store_true", help="print the README tables of --out and exit")
    args = parser.parse_args(argv)
    if args.markdown:
        print(markdown(json.loads(args.out.read_text())))
        return 0

    warnings.filterwarnings("ignore")
    for module in formats.modules():  # converters' notices ("torch > 2.7 untested") would bury the tables
        logging.getLogger(module).setLevel(logging.ERROR)
    chosen = [s for s in args.sections.replace(",", "") if s in SECTIONS]
    started = time.perf_counter()
    results = {"started": datetime.datetime.now().isoformat(timespec="seconds"), "machine": machine(),
               "packages": versions(), "settings": {"quick": args.quick}, "sections": {}, "targets": []}
    with tempfile.TemporaryDirectory(prefix="workbench-bench-") as tmp:
        settings = Settings.make(args.quick, Path(tmp))
        results["settings"].update(runs=settings.runs, slow_runs=settings.slow_runs)
        for key in chosen:
            print(f"== {TITLES[key]}", file=sys.stderr, flush=True)
            t0 = time.perf_counter()
            module = importlib.import_module(f".{SECTIONS[key]}", __package__)
            try:
                rows, targets = module.run(settings)
            except Exception as exc:  # one broken section must not lose the others' figures
                traceback.print_exc()
                rows, targets = [row(key, "-", f"section failed: {type(exc).__name__}: {exc}", None)], []
            results["sections"][key] = {"title": TITLES[key], "doc": (module.__doc__ or "").strip(),
                                        "rows": rows, "seconds": round(time.perf_counter() - t0, 1)}
            results["targets"] += targets
            print(text({"sections": {key: results["sections"][key]}, "targets": targets}), flush=True)
    results["machine"]["load_average_at_end"] = list(os.getloadavg())
    results["duration_s"] = round(time.perf_counter() - started, 1)
    print(text(results, targets_only=True))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out} ({results['duration_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
