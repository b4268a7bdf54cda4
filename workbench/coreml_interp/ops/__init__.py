"""MIL op kernels, one family per module (mirroring coremltools' ops/defs). Importing registers them."""

from . import (activation, classify, compression, conv, elementwise, image_resizing, linear,  # noqa: F401
               normalization, pool, quantization, recurrent, reduction, scatter_gather, tensor,
               transformers)
