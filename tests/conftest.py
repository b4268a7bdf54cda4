import logging
import os
import platform
import warnings
from pathlib import Path

# Each xdist worker computes on its share of the cores, and so do the processes it starts (notebook kernels, the
# tools env): two workers on this 2-core machine each ran torch's OpenMP pool at 2 threads, and four spinning
# threads on two cores made notebook 04's widget build 80 s instead of 21. Set before torch is imported.
if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
    os.environ.setdefault("OMP_NUM_THREADS",
                          str(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))))

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_images"

warnings.filterwarnings("ignore", category=FutureWarning)
# A bug in a widget callback (an exception other than WorkbenchError) is raised, not only shown in the widget's
# error area: tests see it (workbench/widgets/view.py, _ErrorArea).
os.environ.setdefault("WORKBENCH_RAISE_CALLBACK_BUGS", "1")


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)


@pytest.fixture(autouse=True)
def widget_bugs():
    """Fails a test in which a widget callback hit a bug: the widget logs it (workbench.widgets.view), and
    ipywidgets swallows what a button's handler raises. A test that makes a bug on purpose empties the list."""
    handler = _Records()
    logger = logging.getLogger("workbench.widgets")
    logger.addHandler(handler)
    yield handler.records
    logger.removeHandler(handler)
    if handler.records:
        pytest.fail("a widget callback hit a bug:\n" + "\n".join(
            logging.Formatter().format(r) for r in handler.records), pytrace=False)


@pytest.fixture(scope="session")
def samples() -> Path:
    return SAMPLES


@pytest.fixture
def seed():
    torch.manual_seed(0)
    np.random.seed(0)


# The heavy end-to-end runs, longest first: under `--dist loadfile` a worker takes a whole file, so a file that runs
# for minutes must start first or it finishes alone at the end; each notebook is a unit of its own.
HEAVY = ["tests/test_notebooks.py::", "tests/test_browser.py", "tests/test_browser_dataset.py",
         "tests/test_graph_browser.py"]


def _heavy_rank(nodeid: str) -> int:
    return next((i for i, prefix in enumerate(HEAVY) if nodeid.startswith(prefix)), len(HEAVY))


def pytest_collection_modifyitems(config, items):
    items.sort(key=lambda item: _heavy_rank(item.nodeid))  # stable: each file keeps its own order
    if platform.system() == "Darwin":
        return
    skip = pytest.mark.skip(reason="Core ML's own predict runs only on macOS")
    for item in items:
        if "macos" in item.keywords:
            item.add_marker(skip)


def pytest_xdist_make_scheduler(config, log):
    from xdist.scheduler import LoadFileScheduling

    class HeavyFirst(LoadFileScheduling):
        """Files as units in collection order (heavy first, as sorted above), each notebook a unit of its own."""

        def _split_scope(self, nodeid):
            return nodeid if nodeid.startswith(HEAVY[0]) else super()._split_scope(nodeid)

    config.option.loadscopereorder = False
    return HeavyFirst(config, log)


def tiny_classifier(num_classes=4, in_channels=3):
    torch.manual_seed(0)
    from workbench.zoo import SmallCNN

    return SmallCNN(num_classes=num_classes, in_channels=in_channels, width=4).eval()
