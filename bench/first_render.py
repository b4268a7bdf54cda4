"""(d) First render: notebook 05's workbench, as Run All shows it.

A fresh kernel (nbclient, cwd notebooks/) runs notebook 05's cells up to and including the one that builds
and displays `Workbench(loaded, images="../sample_images")`. Measured from that cell's execute_input to its
execute_reply: the widget is built (reference outputs, the three conversions, the first comparison and
picture) and its view has been sent to the front end; the browser's own drawing (a few widgets and one JPEG)
is not included. Also: the whole notebook up to there (imports, model load), and a second Workbench built
in the same, now warm, kernel (what the first-use imports cost).
"""

from __future__ import annotations

import datetime

from .common import NOTEBOOKS, row, summary, target

SECTION = "d"
NOTEBOOK = NOTEBOOKS / "05_imagenet_normalization.ipynb"
WARM = """import time
start = time.perf_counter()
again = Workbench(loaded, images="../sample_images")
print(f"warm: {time.perf_counter() - start:.6f}")
again.close()"""


def _stamp(cell, key) -> datetime.datetime:
    return datetime.datetime.fromisoformat(cell.metadata.execution[key].replace("Z", "+00:00"))


def once() -> tuple[float, float, float]:
    """(the Workbench cell, the notebook up to it, a warm rebuild), in ms."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOK, as_version=4)
    index = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code" and "Workbench(" in c.source
                 and "import" not in c.source)
    nb.cells = nb.cells[:index + 1] + [nbformat.v4.new_code_cell(WARM)]
    NotebookClient(nb, timeout=900, kernel_name="python3", record_timing=True,
                   resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    cell, code = nb.cells[index], [c for c in nb.cells if c.cell_type == "code"]
    errors = [o for c in code for o in c.outputs if o.output_type == "error"]
    if errors:
        raise RuntimeError(f"notebook 05 failed: {errors[0].ename}: {errors[0].evalue}")
    if not any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in cell.outputs):
        raise RuntimeError("notebook 05's Workbench cell displayed no widget")
    widget = (_stamp(cell, "shell.execute_reply") - _stamp(cell, "iopub.execute_input")).total_seconds()
    upto = (_stamp(cell, "shell.execute_reply") - _stamp(code[0], "iopub.execute_input")).total_seconds()
    warm = float(next(o.text for o in nb.cells[-1].outputs if o.get("name") == "stdout").split()[-1])
    return widget * 1000, upto * 1000, warm * 1000


def run(settings) -> tuple[list[dict], list[dict]]:
    found = [once() for _ in range(max(1, settings.slow_runs - 1))]  # a minute each: two are enough
    case = "05 mobilenet_v2, 8 images"
    first = summary([f[0] for f in found])
    rows = [row(SECTION, case, "Workbench cell in a fresh kernel (built and displayed)", first),
            row(SECTION, case, "notebook from its first cell to the displayed Workbench",
                summary([f[1] for f in found])),
            row(SECTION, case, "a second Workbench in the same, warm kernel", summary([f[2] for f in found]))]
    return rows, [target("first render <= 10 s (notebook 05's Workbench cell)", first["median_ms"] / 1000, 10, "s")]
