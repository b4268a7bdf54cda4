"""MIL op kernels, one family per module (mirroring coremltools' ops/defs). Importing registers them."""

from . import (activation, classify, conv, elementwise, image_resizing, linear, normalization,  # noqa: F401
               pool, reduction, tensor)
