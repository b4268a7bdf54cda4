"""MIL op kernels, one family per module (mirroring coremltools' ops/defs). Importing registers them."""

from . import (  # noqa: F401
               activation,
               classify,
               compression,
               control_flow,
               conv,
               elementwise,
               image_resizing,
               linear,
               normalization,
               pool,
               quantization,
               random,
               recurrent,
               reduction,
               scatter_gather,
               state,
               tensor,
               transformers,
)
