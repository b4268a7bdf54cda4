"""Single-op Core ML programs for the kernel tests: build with the MIL builder, convert, interpret.

`run_op("relu", lambda x: mb.relu(x=x), x)` builds a program whose inputs are the given arrays, converts
it with `ct.convert` (fp32, no graph passes, so the op under test survives as written), runs it through
`CoreMLInterpreter`, asserts that the op really ran (a const-folded op would pass vacuously) and that
each output has the shape MIL's type inference declared, and returns the outputs.

`mil_value(fn, *arrays)` evaluates the same op on constants with coremltools' own `value_inference`
(numpy code in coremltools, independent of the torch kernels): a second reference where one exists.
"""

from __future__ import annotations

import contextlib
import types as pytypes

import coremltools as ct
import numpy as np
from coremltools.converters import _converters_entry
from coremltools.converters.mil import Builder as mb
from coremltools.converters.mil.mil import types
from coremltools.converters.mil.mil.types.symbolic import any_symbolic

from workbench.coreml_interp import CoreMLInterpreter

IOS15, IOS16, IOS17 = ct.target.iOS15, ct.target.iOS16, ct.target.iOS17
FP32, FP16 = ct.precision.FLOAT32, ct.precision.FLOAT16
_DTYPES = {np.dtype(np.float32): types.fp32, np.dtype(np.float16): types.fp16, np.dtype(np.int32): types.int32}


@contextlib.contextmanager
def _without_gc():
    # ct.convert ends with gc.collect(), ~0.2 s with torch loaded and 95% of a single-op test's time;
    # collecting is memory hygiene only, so skip it while converting these tiny programs.
    saved = _converters_entry.gc
    _converters_entry.gc = pytypes.SimpleNamespace(collect=lambda *a: 0)
    try:
        yield
    finally:
        _converters_entry.gc = saved


def program(fn, *inputs: np.ndarray, opset=IOS16):
    """A MIL program whose inputs have the arrays' shapes and dtypes (named after fn's parameters)."""
    specs = [mb.TensorSpec(shape=a.shape, dtype=_DTYPES[a.dtype]) for a in inputs]
    return mb.program(input_specs=specs, opset_version=opset)(fn)


def convert(prog, *, opset=IOS16, precision=FP32, passes=None, **kwargs) -> ct.models.MLModel:
    """`ct.convert` to an ML program; by default with no graph passes, so no op is folded or fused."""
    with _without_gc():
        return ct.convert(prog, convert_to="mlprogram", compute_precision=precision,
                          minimum_deployment_target=opset,
                          pass_pipeline=ct.PassPipeline.EMPTY if passes is None else passes, **kwargs)


def op_types(model) -> list[str]:
    return [o.op_type for o in model._mil_program.functions["main"].operations]


def run_model(model, op_type: str, *inputs, compute_precision=None):
    """Interpret `model` on `inputs` (in the order of its inputs); one output, or a list of them."""
    assert op_type in op_types(model), f"{op_type} is not in the converted program: {op_types(model)}"
    fn = model._mil_program.functions["main"]
    ran = []
    out = CoreMLInterpreter(model, compute_precision=compute_precision).predict(
        dict(zip(fn.inputs, inputs)), observe=lambda kind, name, outputs: ran.append(kind))
    assert op_type in ran, f"{op_type} did not run (folded into a constant?); the interpreter ran {ran}"
    results = []
    for var in fn.outputs:
        value = out[var.name]
        if types.is_tensor(var.sym_type) and not any_symbolic(var.shape):
            declared = tuple(int(d) for d in var.shape)
            assert np.shape(value) == declared, (
                f"{op_type} output {var.name!r}: the interpreter gave shape {np.shape(value)}, MIL type "
                f"inference declares {declared}")
        results.append(value)
    return results[0] if len(results) == 1 else results


def run_op(op_type: str, fn, *inputs: np.ndarray, opset=IOS16, precision=FP32, compute_precision=None):
    """Build `fn` over program inputs shaped like `inputs`, convert, interpret; asserts `op_type` ran."""
    model = convert(program(fn, *inputs, opset=opset), opset=opset, precision=precision)
    return run_model(model, op_type, *inputs, compute_precision=compute_precision)


def mil_value(fn, *arrays, opset=IOS16):
    """coremltools' value_inference of `fn` applied to the arrays as constants (one value or a list)."""
    values = []

    @mb.program(input_specs=[mb.TensorSpec(shape=(1,))], opset_version=opset)
    def prog(unused):
        out = fn(*[mb.const(val=a) for a in arrays])
        outs = out if isinstance(out, (list, tuple)) else [out]
        for o in outs:
            assert o.val is not None, f"{o.op.op_type} has no value_inference for these inputs"
            values.append(np.asarray(o.val))
        return unused

    del prog
    return values[0] if len(values) == 1 else values


def rand(*shape, low=-2.0, high=2.0, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(low, high, shape).astype(np.float32)


def assert_close(actual, expected, atol=1e-5, rtol=1e-5, what=""):
    np.testing.assert_allclose(np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64),
                               atol=atol, rtol=rtol, err_msg=what)


def same(out, expected, what=""):
    """Data movement only: exact."""
    np.testing.assert_array_equal(out, expected, err_msg=what)


def check_exact(op_type, build, *inputs, expected=None, opset=IOS16):
    """Run the one-op program; compare exactly with `expected` (numpy) and with coremltools' value_inference."""
    out = run_op(op_type, build, *inputs, opset=opset)
    if expected is not None:
        same(out, expected, f"{op_type} against numpy")
    reference = mil_value(build, *inputs, opset=opset)
    if isinstance(out, list):
        assert len(out) == len(reference)
        for i, (a, b) in enumerate(zip(out, reference)):
            same(a, b, f"{op_type} output {i} against value_inference")
    else:
        same(out, reference, f"{op_type} against value_inference")
    return out
