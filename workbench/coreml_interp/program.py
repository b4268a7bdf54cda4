"""A MIL function compiled once into a flat list of steps, then run on feeds.

Compiling resolves each op's kernel and converts its constants to tensors once, so a run is a loop of
kernel calls. Intermediates are freed after their last use, unless an observer wants to see every op.

Precision: as declared, every tensor the program declares fp16 is rounded to fp16 after its op runs
(kernels compute in fp32 from fp16-exact inputs and round their result, the way a GPU with fp32
accumulation would); `fp32` skips that rounding, so only the weights stored in fp16 keep their rounding.
This is a reference semantics, not a bit-exact model of the Neural Engine or GPU.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import WorkbenchError
from .registry import kernel

Observer = Callable[[str, str, tuple], None]  # (op type, op name, outputs)
RUN: ContextVar = ContextVar("coreml_interp_run", default=(True, None))  # (fp16, observe) of the running program


@dataclass
class Step:
    op_type: str
    name: str
    fn: Callable
    static: dict
    dynamic: list  # [(argument, var name or [var names])]
    outputs: list  # [(var name, round to fp16)]
    frees: list = field(default_factory=list)


@dataclass
class Program:
    """Steps plus the names of the inputs and outputs (and their declared MIL dtypes)."""

    steps: list
    inputs: dict  # name -> dtype string ("fp32", "fp16", "int32", ...)
    outputs: list
    opset: str = ""
    constants: dict = field(default_factory=dict)  # constants that list inputs mix with run-time tensors
    nested: bool = False  # has control flow, whose kernels read the run's options from RUN
    params: list = field(default_factory=list)  # a nested block's own inputs (loop variables), first in `inputs`

    def run(self, feeds: dict, *, fp16: bool = True, observe: Observer | None = None) -> dict:
        if self.nested:
            token = RUN.set((fp16, observe))
            try:
                return self._run(feeds, fp16, observe)
            finally:
                RUN.reset(token)
        return self._run(feeds, fp16, observe)

    @property
    def computes_fp16(self) -> bool:
        """Whether running as declared rounds anything to fp16: an output declared fp16, or a step that runs a
        program of its own (a pipeline's sub-model) that does."""
        return any(half or getattr(s.fn, "computes_fp16", False) for s in self.steps for _, half in s.outputs)

    def _run(self, feeds: dict, fp16: bool, observe: Observer | None) -> dict:
        env = dict(self.constants)
        for name, dtype in self.inputs.items():
            value = feeds[name]
            env[name] = value.half().float() if fp16 and dtype == "fp16" and value.is_floating_point() else value
        with torch.inference_mode():
            for step in self.steps:
                kwargs = dict(step.static)
                for arg, ref in step.dynamic:
                    kwargs[arg] = [env[r] for r in ref] if isinstance(ref, list) else env[ref]
                try:
                    result = step.fn(**kwargs)
                except WorkbenchError:
                    raise
                except Exception as exc:
                    shapes = {a: tuple(v.shape) for a, v in kwargs.items() if isinstance(v, torch.Tensor)}
                    raise WorkbenchError(
                        f"MIL op {step.op_type} {step.name!r} failed on inputs {shapes}: {type(exc).__name__}: "
                        f"{str(exc).splitlines()[0] if str(exc) else ''}") from exc
                if not isinstance(result, tuple):
                    result = (result,)
                for (name, half), value in zip(step.outputs, result):
                    if half and fp16 and isinstance(value, torch.Tensor) and value.is_floating_point():
                        value = value.half().float()
                    env[name] = value
                if observe is not None:
                    observe(step.op_type, step.name, tuple(env[n] for n, _ in step.outputs))
                else:
                    for name in step.frees:
                        env.pop(name, None)
        return {name: env[name] for name in self.outputs}


def dtype_name(var) -> str:
    """The MIL dtype of a tensor var ("fp32", "int32", ...); "list" and "state" for those types."""
    from coremltools.converters.mil.mil import types

    if types.is_list(var.sym_type):
        return "list"
    if types.is_state(var.sym_type):
        return "state"
    try:
        return types.builtin_to_string(var.dtype)
    except KeyError:  # a builtin MIL has no name for: its class name still tells the dtypes apart
        return str(var.dtype)


# ops whose every output element is one of their input elements (or an fp16 constant they clamp to), so an
# fp16 output of fp16 inputs is already fp16-exact
_SELECTS_VALUES = {
    "identity", "reshape", "transpose", "squeeze", "expand_dims", "flatten2d", "slice_by_index", "slice_by_size",
    "concat", "split", "stack", "tile", "reverse", "pad", "gather", "gather_along_axis", "gather_nd", "crop",
    "depth_to_space", "space_to_depth", "pixel_shuffle", "pixel_unshuffle", "upsample_nearest_neighbor",
    "resize_nearest_neighbor", "relu", "relu6", "clip", "threshold", "max_pool", "reduce_max", "reduce_min",
    "maximum", "minimum", "select", "abs", "sign", "floor", "ceil",
}

# ops the compiler runs once when all their inputs are constants (constexpr_* ops always are)
_FOLD_ON_CONSTANTS = {"dequantize", "quantize"}


def _as_tuple(result):
    return result if isinstance(result, tuple) else (result,)


def _fold(operation, fn, static):
    try:
        return fn(**static)
    except WorkbenchError:
        raise
    except Exception as exc:
        raise WorkbenchError(f"MIL op {operation.op_type} {operation.name!r} failed to decompress its constants: "
                             f"{type(exc).__name__}: {exc}; the model may be malformed, re-export it") from exc


def constant(value):
    """A MIL constant as the kernels take it: float arrays as float32 tensors, everything else as is."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "f":  # a copy: ct.convert's constants can share memory with the torch module
            return torch.from_numpy(np.array(value, dtype=np.float32, copy=True))
        if value.dtype.kind in "iub" and value.ndim > 0:
            return value
        return value.item() if value.ndim == 0 else value
    if isinstance(value, np.generic):
        return value.item()
    return value


def from_mil(program, function: str = "main") -> Program:
    """Compile a coremltools MIL `Program` (from ct.convert, or loaded from an .mlpackage)."""
    try:
        fn = program.functions[function]
    except KeyError:
        raise WorkbenchError(f"the Core ML program has no function {function!r}; it has "
                             f"{', '.join(program.functions)}") from None
    version = getattr(fn, "opset_version", None)
    opset = getattr(version, "name", None) or (str(version) if version is not None else "")
    compiler = _Compiler(opset)
    output_names = [v.name for v in fn.outputs]
    steps, mixed = compiler.block(fn.operations, output_names)
    inputs = {name: dtype_name(var) for name, var in fn.inputs.items()}
    return Program(steps, inputs, output_names, opset, mixed, nested=compiler.nested)


class _Compiler:
    """Turns MIL blocks into steps; ops with nested blocks (cond, while_loop) become one step whose kernel
    runs the blocks compiled into sub-programs. Constants are shared by every block (MIL names are unique)."""

    def __init__(self, opset: str):
        self.opset = opset
        self.consts: dict[str, object] = {}
        self.nested = False

    def block(self, operations, output_names: list[str]) -> tuple[list[Step], dict]:
        consts, mixed = self.consts, {}
        steps: list[Step] = []
        for operation in operations:
            outs = list(operation.outputs)
            if operation.op_type == "const" or (outs and all(v.val is not None for v in outs)
                                                and operation.op_type not in _NEVER_FOLD):
                for v in outs:
                    consts[v.name] = constant(v.val)
                continue
            if getattr(operation, "blocks", None):
                fn_ = self.control_flow(operation)
                self.nested = True
            else:
                fn_ = kernel(operation.op_type, self.opset)
            static, dynamic = {}, []
            for arg, var in operation.inputs.items():
                if arg.startswith("_"):  # control flow's Python functions and existing blocks: compiled above
                    continue
                if isinstance(var, (tuple, list)):
                    if all(v.name in consts or v.val is not None for v in var):
                        static[arg] = [consts.get(v.name, constant(v.val)) for v in var]
                    else:  # a list mixing constants and run-time tensors (concat([x, const])): seed the constants
                        for v in var:
                            if v.name not in consts and v.val is not None:
                                consts[v.name] = constant(v.val)
                            if v.name in consts:
                                mixed[v.name] = consts[v.name]
                        dynamic.append((arg, [v.name for v in var]))
                elif var.name in consts:
                    static[arg] = consts[var.name]
                elif var.val is not None and var.op is not None and var.op.op_type == "const":
                    static[arg] = consts.setdefault(var.name, constant(var.val))
                else:
                    dynamic.append((arg, var.name))
            if getattr(fn_, "captures", None):
                dynamic += [(f"{CAPTURE}{name}", name) for name in fn_.captures]
            # ops whose outputs are their fp16 inputs' values (moved, chosen or clamped to fp16 constants) need
            # no rounding: their inputs were rounded already
            exact = operation.op_type in _SELECTS_VALUES
            outputs = [(v.name, _is_fp16(v) and not exact) for v in outs]
            if operation.op_type.startswith("constexpr_") or (not dynamic and operation.op_type in _FOLD_ON_CONSTANTS):
                # compressed weights: decompressed once here, so runs cost what an uncompressed model costs
                if dynamic:
                    raise WorkbenchError(f"MIL op {operation.op_type} {operation.name!r} takes run-time inputs "
                                         f"({', '.join(a for a, _ in dynamic)}); constexpr ops take constants only: "
                                         "the model is malformed, re-export it")
                for (name, half), value in zip(outputs, _as_tuple(_fold(operation, fn_, static))):
                    consts[name] = value.half().float() if half and isinstance(value, torch.Tensor) else value
                continue
            steps.append(Step(operation.op_type, operation.name, fn_, static, dynamic, outputs))
        for name in output_names:
            if name in consts:  # an output that is a constant: give it a step so runs return it
                value = consts[name]
                steps.append(Step("const", name, lambda value=value: value, {}, [], [(name, False)]))
        _plan_frees(steps, set(output_names) | set(mixed))
        return steps, mixed

    def sub_program(self, block) -> Program:
        """A nested block as a Program whose inputs are its own inputs (loop variables) and the outer values
        it reads (its captures, in `inputs` after the block inputs)."""
        outputs = [v.name for v in block.outputs]
        steps, mixed = self.block(block.operations, outputs)
        params = [v.name for v in block.inputs]
        produced = set(params) | set(mixed) | {n for s in steps for n, _ in s.outputs}
        captures = []
        for step in steps:
            for _, ref in step.dynamic:
                for name in ref if isinstance(ref, list) else [ref]:
                    if name not in produced and name not in captures:
                        captures.append(name)
        captures += [n for n in outputs if n not in produced and n not in captures]  # outer values passed through
        inputs = {name: "" for name in params + captures}
        return Program(steps, inputs, outputs, self.opset, mixed, nested=True, params=params)

    def control_flow(self, operation):
        """The kernel of an op with nested blocks: its registered factory, given the compiled blocks."""
        factory = kernel(operation.op_type, self.opset)
        if not getattr(factory, "takes_blocks", False):
            raise WorkbenchError(f"MIL op {operation.op_type} {operation.name!r} has nested blocks, which its kernel "
                                 "does not run; the interpreter runs the blocks of cond and while_loop")
        return factory(*[self.sub_program(b) for b in operation.blocks])


CAPTURE = "capture:"  # prefix of a control-flow step's arguments that carry outer values into its blocks
_NEVER_FOLD = {"read_state", "coreml_update_state"}  # side effects on the state: run even with known values


def _is_fp16(var) -> bool:
    from coremltools.converters.mil.mil import types

    if types.is_list(var.sym_type) or types.is_state(var.sym_type):
        return False  # lists and states hold tensors that their own ops round
    return var.dtype == types.fp16


def _plan_frees(steps: list[Step], keep: set) -> None:
    last = {}
    for i, step in enumerate(steps):
        for _, ref in step.dynamic:
            for name in ref if isinstance(ref, list) else [ref]:
                last[name] = i
    for name, i in last.items():
        if name not in keep:
            steps[i].frees.append(name)
