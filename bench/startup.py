"""(e) Import time of `workbench` beyond `import torch`, and peak memory of a `workbench check` run.

Each import is timed in a fresh interpreter (`import torch`, then `import workbench`, then the widget's
module), which also reports which heavy packages the import pulled in. The check is
`workbench check torchvision:mobilenet_v2 --weights none` (the default formats) in a subprocess;
its peak resident memory is the child's own `ru_maxrss` (os.wait4).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from workbench import formats

from .common import ROOT, row, summary, target

SECTION = "e"
# What must load only when first used: the widget's own heavy packages, and every format's converter and runtime.
HEAVY = ("netron", "matplotlib", "ipywidgets") + formats.modules()
PROBE = """
import json, sys, time
t0 = time.perf_counter()
import torch
t1 = time.perf_counter()
import workbench
t2 = time.perf_counter()
from workbench import Workbench
t3 = time.perf_counter()
heavy = {HEAVY!r}
print(json.dumps({{"torch": t1 - t0, "workbench": t2 - t1, "widget": t3 - t2,
                  "after_import": [m for m in heavy if m in {{k.split('.')[0] for k in sys.modules}}]}}))
"""


def imports(runs: int) -> list[dict]:
    code = PROBE.format(HEAVY=HEAVY)
    found = []
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
        found.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return found


def check_peak(out: Path) -> tuple[float, float, int]:
    """(wall seconds, max RSS in MB, exit code) of one `workbench check` subprocess."""
    exe = Path(sys.executable).with_name("workbench")
    cmd = [str(exe), "check", "torchvision:mobilenet_v2", "--weights", "none", "--out", str(out), "--overwrite"]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return time.perf_counter() - start, usage.ru_maxrss / 1024, proc.returncode  # Linux: KB


def run(settings) -> tuple[list[dict], list[dict]]:
    rows, targets = [], []
    found = imports(settings.runs)
    loaded = sorted({m for f in found for m in f["after_import"]})
    for key, what in (("torch", "import torch"), ("workbench", "import workbench, after torch"),
                      ("widget", "from workbench import Workbench, after workbench")):
        stats = summary([f[key] * 1000 for f in found])
        note = ""
        if key == "widget":
            note = f"heavy packages loaded by then: {', '.join(loaded) or 'none'}"
        rows.append(row(SECTION, "fresh interpreter", what, stats, note=note))
    beyond = summary([f["workbench"] * 1000 for f in found])["median_ms"]
    eager = [m for m in HEAVY if m != "ipywidgets" and m in loaded]
    targets.append(target("import workbench <= 1.0 s beyond torch", beyond / 1000, 1.0, "s",
                          f"imported eagerly: {', '.join(eager)}" if eager else
                          "the formats' converters and runtimes, netron and matplotlib load when first used"))

    checks = [check_peak(settings.workdir / "check") for _ in range(1 if settings.quick else 2)]
    walls = summary([c[0] * 1000 for c in checks])
    peak = max(c[1] for c in checks)
    rows.append(row(SECTION, "torchvision:mobilenet_v2, 3 formats", "workbench check (subprocess)", walls,
                    max_rss_mb=peak, note=f"exit {checks[-1][2]}"))
    return rows, targets
