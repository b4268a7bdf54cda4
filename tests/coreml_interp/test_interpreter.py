"""interpreter.py: model-level behaviour beyond single ops (multifunction ML programs)."""

import coremltools as ct
import numpy as np
import pytest
from _mil import assert_close, mb

from workbench.coreml_interp import CoreMLInterpreter
from workbench.errors import WorkbenchError


def test_a_multifunction_model_runs_the_function_asked_for(tmp_path):
    """iOS18 multifunction packages: the default function, or function_name= as MLModel takes it."""
    x = np.array([[-1.0, 2.0, -3.0]], np.float32)
    for name, build in [("a", lambda x: mb.relu(x=x)), ("b", lambda x: mb.mul(x=x, y=2.0))]:
        prog = mb.program(input_specs=[mb.TensorSpec(shape=x.shape)], opset_version=ct.target.iOS18)(build)
        ct.convert(prog, convert_to="mlprogram", minimum_deployment_target=ct.target.iOS18).save(
            str(tmp_path / f"{name}.mlpackage"))
    desc = ct.utils.MultiFunctionDescriptor()
    desc.add_function(str(tmp_path / "a.mlpackage"), src_function_name="main", target_function_name="relu_fn")
    desc.add_function(str(tmp_path / "b.mlpackage"), src_function_name="main", target_function_name="double_fn")
    desc.default_function_name = "relu_fn"
    path = tmp_path / "both.mlpackage"
    ct.utils.save_multifunction(desc, str(path))
    assert_close(next(iter(CoreMLInterpreter(path).predict({"x": x}).values())), np.maximum(x, 0), 0, 0)
    double = CoreMLInterpreter(path, function_name="double_fn")
    assert_close(next(iter(double.predict({"x": x}).values())), 2 * x, 0, 0)
    loaded = ct.models.MLModel(str(path), skip_model_load=True, function_name="double_fn")
    assert_close(next(iter(CoreMLInterpreter(loaded).predict({"x": x}).values())), 2 * x, 0, 0)
    with pytest.raises(WorkbenchError, match=r"has no function 'nope'; its functions: relu_fn, double_fn"):
        CoreMLInterpreter(path, function_name="nope")


def test_fp16_rounding_is_skipped_only_where_it_cannot_change_a_value(monkeypatch):
    """Ops that only move, pick or clamp their fp16 inputs' values (relu, reshape, max_pool...) give fp16-exact
    outputs; the compiler skips their rounding, and the outputs are those of rounding everything."""
    from _mil import FP16, convert, program, rand

    from workbench.coreml_interp import program as compiled

    x = rand(1, 2, 6, 6)
    w = rand(3, 2, 3, 3, seed=1)

    def build(x):
        y = mb.relu(x=mb.conv(x=x, weight=w))
        return mb.reshape(x=mb.max_pool(x=y, kernel_sizes=[2, 2], strides=[2, 2], pad_type="valid"), shape=[1, -1])

    model = convert(program(build, x), precision=FP16, passes=ct.PassPipeline.DEFAULT)  # casts to fp16
    interp = CoreMLInterpreter(model)
    rounded = {s.op_type: any(h for _, h in s.outputs) for s in interp.program.steps}
    assert rounded["conv"], rounded
    assert not rounded["relu"] and not rounded["max_pool"] and not rounded["reshape"], rounded
    monkeypatch.setattr(compiled, "_SELECTS_VALUES", set())
    every = CoreMLInterpreter(model)
    assert all(h for s in every.program.steps for _, h in s.outputs if s.op_type in ("relu", "max_pool")), \
        "with the set emptied every fp16 output is rounded"
    a, b = interp.predict({"x": x}), every.predict({"x": x})
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
