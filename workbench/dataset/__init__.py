"""The streaming check of a whole folder or ImageFolder: every image through the PyTorch reference and each
format's runner (and each compressed variant), in batches, per-image figures written as they come to a
resumable store, then aggregated: figures per format, the worst images, class flips, accuracy against the
folders' labels. A local engine (processes) and a Ray Data engine give the same figures.

    from workbench.dataset import open_source, check_dataset
    result = session.check_dataset("val/", ["onnx"], out="run/")   # a DatasetResult
    result.table(); result.worst(5); result.flips(); result.to_pandas()

Nothing here imports Jupyter, Ray or pandas at import time.
"""

from __future__ import annotations

from .result import DatasetResult
from .run import check_dataset
from .source import ImageSource, Item, open_source

__all__ = ["DatasetResult", "ImageSource", "Item", "check_dataset", "open_source"]
