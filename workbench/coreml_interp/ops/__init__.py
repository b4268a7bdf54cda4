"""MIL op kernels, one family per module (mirroring coremltools' ops/defs). Importing registers them."""

from . import (activation, classify, compression, control_flow, conv, elementwise,  # noqa: F401
               image_resizing, linear, normalization, pool, quantization, random, recurrent,
               reduction, scatter_gather, state, tensor, transformers)
