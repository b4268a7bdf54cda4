"""The mobile-conversion workbench: a PyTorch image model beside its Core ML, ONNX and TorchScript
conversions, on real images, with the preprocessing you will ship.

The core (this package minus `widgets`) imports without Jupyter; heavy packages (coremltools,
onnxruntime, netron, matplotlib) load when first used.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .compare import Comparison, Tolerance, compare
from .errors import ConversionError, RuntimeUnavailable, WorkbenchError
from .images import load_image, load_images
from .models import LoadedModel, load_model
from .preprocess import Preprocess
from .tasks import Classification, ImageToImage, Segmentation, make_task

__all__ = [
    "CoreMLInterpreter",
    "Classification", "Comparison", "ConversionError", "ImageToImage", "LoadedModel", "Preprocess",
    "RuntimeUnavailable", "Segmentation", "Session", "Tolerance", "Workbench", "WorkbenchError",
    "compare", "load_image", "load_images", "load_model", "make_task",
]


def __getattr__(name):  # the widget and the session pull in more; import them on first use
    if name == "Workbench":
        from .widgets import Workbench

        return Workbench
    if name == "CoreMLInterpreter":
        from .coreml_interp import CoreMLInterpreter

        return CoreMLInterpreter
    if name == "Session":
        from .session import Session

        return Session
    raise AttributeError(f"module 'workbench' has no attribute {name!r}")
