"""int()/bool() of a traced shape, e.g. ``int(H * W)`` in timm's mobilevit and efficientvit and torchvision's
swin_t/maxvit_t.

coremltools 9.0 casts the folded value with ``int(x.val)``; x.val is a one-element array, and numpy 2.4 no
longer converts those to Python scalars: "only 0-dimensional arrays can be converted to Python scalars"
(numpy < 2.4 still does, with a DeprecationWarning). The fix takes the array's one element.
"""

from __future__ import annotations

import numpy as np

from . import op_fix


@op_fix("int_of_shape", gap="only 0-dimensional arrays can be converted to Python scalars",
        note="int() of a traced shape folded from its one-element array (coremltools 9.0 fails on it under "
             "numpy >= 2.4)", ops=("int", "bool"))
def convert(context, node, original) -> bool:
    """Convert `node` with coremltools' own cast, its constant input made 0-dimensional first; True when the
    input needed it."""
    from coremltools.converters.mil import Builder as mb

    value = context[node.inputs[0]]
    folded = value.val if value.can_be_folded_to_const() else None
    if isinstance(folded, np.ndarray) and folded.ndim > 0 and folded.size == 1 and not _casts(folded):
        kind = bool if "bool" in node.kind.lower() else int
        context.add(mb.const(val=kind(folded.reshape(())), name=node.name), node.name)
        return True
    original(context, node)
    return False


def _casts(array: np.ndarray) -> bool:
    """Whether this numpy still turns a one-element array into a Python scalar (before 2.4 it does, with a
    DeprecationWarning): then coremltools' own cast works and the fix is not needed."""
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            int(array)
    except TypeError:
        return False
    return True
