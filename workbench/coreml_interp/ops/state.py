"""Model state (ops/defs/iOS18/states.py `read_state`, and coremltools' dialect op `coreml_update_state`).

A stateful program's state inputs are fed `State` boxes (`CoreMLInterpreter.make_state()` holds one
per declared state); read_state returns the box's tensor and coreml_update_state replaces it and returns
the new value, so the state carries over from one predict to the next.
"""

from __future__ import annotations

import torch

from ..registry import op
from ._util import tensor


class State:
    """One state's current tensor."""

    __slots__ = ("value",)

    def __init__(self, value: torch.Tensor):
        self.value = value

    def __repr__(self):
        return f"State({tuple(self.value.shape)})"


@op("read_state", since=18)
def read_state(input):
    return input.value


@op("coreml_update_state", since=18)
def coreml_update_state(state, value):
    state.value = tensor(value)
    return state.value
