"""Control flow and lists (ops/defs/iOS15/control_flow.py): cond, while_loop, make_list and list_*.

`cond` and `while_loop` carry nested blocks. Their kernels here are factories: the program compiler
compiles each block into a sub-program and calls the factory with them; the kernel it returns runs the
branch, or the loop, on the values the blocks read from outside (passed in as `capture:<name>`
arguments) with the run's precision and observer. (`select` lives in tensor.py, beside the other
elementwise choices.)

A MIL list is a value: list_write and list_scatter return a new list and leave their input unchanged.
Elements never written read as zeros of the declared element shape; a dynamic-length list grows when
written past its end, a fixed-length one refuses.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ...errors import WorkbenchError
from ..program import CAPTURE, RUN, Program
from ..registry import op
from ._util import ints, scalar, tensor


def _captures(*programs: Program) -> list[str]:
    names: list[str] = []
    for prog in programs:
        for name in prog.inputs:
            if name not in prog.params and name not in names:
                names.append(name)
    return names


def _outer(captured: dict) -> dict:
    return {k[len(CAPTURE):]: v for k, v in captured.items()}


@op("cond")
def cond(then: Program, otherwise: Program):
    """The kernel of one cond op: run `then` or `otherwise` by `pred`, return the branch's outputs."""

    def run_cond(pred, **captured):
        fp16, observe = RUN.get()
        branch = then if bool(scalar(pred)) else otherwise
        out = branch.run(_outer(captured), fp16=fp16, observe=observe)
        return tuple(out[n] for n in branch.outputs)

    run_cond.captures = _captures(then, otherwise)
    return run_cond


cond.takes_blocks = True


@op("while_loop")
def while_loop(test: Program, body: Program):
    """The kernel of one while_loop op: while `test` gives True on the loop variables, replace them by
    `body`'s outputs; return their final values."""

    def run_while(loop_vars, **captured):
        fp16, observe = RUN.get()
        outer = _outer(captured)
        values = list(loop_vars)
        while True:
            flag = test.run({**outer, **dict(zip(test.params, values))}, fp16=fp16, observe=observe)
            if not bool(scalar(flag[test.outputs[0]])):
                return tuple(values)
            out = body.run({**outer, **dict(zip(body.params, values))}, fp16=fp16, observe=observe)
            values = [out[n] for n in body.outputs]

    run_while.captures = _captures(test, body)
    return run_while


while_loop.takes_blocks = True


_DTYPES = {"fp32": torch.float32, "fp16": torch.float32, "int32": torch.int32, "bool": torch.bool}


@dataclass(frozen=True)
class TensorList:
    """A MIL list value: its elements (None where never written), element shape and dtype, growable or not."""

    items: tuple
    elem_shape: tuple
    dtype: torch.dtype
    dynamic: bool

    def read(self, i: int) -> torch.Tensor:
        i = self._index(i, write=False)
        item = self.items[i] if i < len(self.items) else None
        return item if item is not None else torch.zeros(self.elem_shape, dtype=self.dtype)

    def written(self, writes: list) -> TensorList:
        items = list(self.items)
        for i, value in writes:
            i = self._index(i, write=True)
            if i >= len(items):
                items += [None] * (i + 1 - len(items))
            items[i] = value
        return TensorList(tuple(items), self.elem_shape, self.dtype, self.dynamic)

    def _index(self, i: int, write: bool) -> int:
        n = len(self.items)
        if i < 0:
            i += n
        if i < 0 or (i >= n and not (write and self.dynamic)):
            raise WorkbenchError(f"MIL list index {i} out of range for a {'dynamic' if self.dynamic else 'fixed'}"
                                 f"-length list of {n} elements")
        return i


@op("make_list")
def make_list(elem_shape, init_length=1, dynamic_length=True, dtype="fp32"):
    shape = []
    for d in elem_shape:
        if isinstance(d, str):
            raise WorkbenchError(f"make_list with a symbolic element shape ({d!r}): the interpreter needs the "
                                 "element shape known when the model is loaded")
        shape.append(int(scalar(d)))
    n = int(scalar(init_length))
    dtype = _DTYPES.get(scalar(dtype), torch.float32)
    return TensorList((None,) * n, tuple(shape), dtype, bool(scalar(dynamic_length)))


@op("list_length")
def list_length(ls):
    return torch.tensor(len(ls.items), dtype=torch.int32)


@op("list_write")
def list_write(ls, index, value):
    return ls.written([(int(scalar(index)), tensor(value))])


@op("list_read")
def list_read(ls, index):
    return ls.read(int(scalar(index)))


@op("list_gather")
def list_gather(ls, indices):
    """The elements at `indices`, stacked on a new first axis."""
    return torch.stack([ls.read(i) for i in ints(indices)])


@op("list_scatter")
def list_scatter(ls, indices, value):
    """A new list with value[k] written at indices[k]."""
    value = tensor(value)
    return ls.written([(i, value[k]) for k, i in enumerate(ints(indices))])
