"""ops/control_flow.py: cond and while_loop run their nested blocks (reading outer values, nested in each
other, after a save and reload), and lists written in loops."""

import numpy as np
import pytest
from _mil import IOS16, assert_close, convert, mb, program, rand, run_model, run_op

from workbench.coreml_interp import CoreMLInterpreter


def _cond(x):
    pred = mb.greater(x=mb.reduce_sum(x=x), y=0.0)
    # both branches read x from outside their block
    return mb.cond(pred=pred, _true_fn=lambda: mb.mul(x=x, y=2.0), _false_fn=lambda: mb.sub(x=x, y=1.0))


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_cond_takes_the_branch_the_predicate_picks(sign):
    x = np.abs(rand(2, 3)) * sign
    out = run_op("cond", _cond, x)
    assert_close(out, x * 2.0 if sign > 0 else x - 1.0, 0, 0)


def test_cond_with_two_outputs_and_a_constant_branch_output():
    x = rand(3)

    def build(x):
        pred = mb.greater(x=mb.reduce_max(x=x), y=10.0)  # false for these values
        return mb.cond(pred=pred, _true_fn=lambda: (mb.relu(x=x), mb.const(val=np.float32(1.0))),
                       _false_fn=lambda: (mb.tanh(x=x), mb.const(val=np.float32(-1.0))))

    a, b = run_op("cond", build, x)
    assert_close(a, np.tanh(x), 1e-6, 1e-6)
    assert_close(b, -1.0, 0, 0)


def _power_loop(x):
    """acc = x ** 3 + x ** 2 + x + 1 by Horner's rule: three turns of the loop, x read from outside."""
    def test(i, acc):
        return mb.less(x=i, y=np.int32(3))

    def body(i, acc):
        return mb.add(x=i, y=np.int32(1)), mb.add(x=mb.mul(x=acc, y=x), y=1.0)

    _, acc = mb.while_loop(_cond=test, _body=body, loop_vars=(np.int32(0), mb.fill_like(ref_tensor=x, value=1.0)))
    return acc


def test_while_loop_runs_until_the_condition_fails():
    x = rand(2, 3, low=-1, high=1)
    ran = []
    model = convert(program(_power_loop, x))
    out = CoreMLInterpreter(model).predict({"x": x}, observe=lambda kind, name, outs: ran.append(kind))
    assert_close(out[next(iter(out))], x ** 3 + x ** 2 + x + 1, 1e-6, 1e-6)
    assert ran.count("less") == 4 and ran.count("mul") == 3, "three turns, four tests, seen by the observer"


def test_while_loop_with_a_cond_inside_and_a_saved_package(tmp_path):
    x = rand(4, low=-1, high=1)

    def build(x):
        def test(i, acc):
            return mb.less(x=i, y=np.int32(4))

        def body(i, acc):
            even = mb.equal(x=mb.mod(x=i, y=np.int32(2)), y=np.int32(0))
            step = mb.cond(pred=even, _true_fn=lambda: mb.add(x=acc, y=x), _false_fn=lambda: mb.mul(x=acc, y=x))
            return mb.add(x=i, y=np.int32(1)), step

        return mb.while_loop(_cond=test, _body=body, loop_vars=(np.int32(0), x))[1]

    model = convert(program(build, x))
    expected = x.astype(np.float64)
    for i in range(4):
        expected = expected + x if i % 2 == 0 else expected * x
    assert_close(run_model(model, "while_loop", x), expected, 1e-6, 1e-6)
    path = tmp_path / "loop.mlpackage"
    model.save(str(path))
    out = CoreMLInterpreter(path).predict({"x": x})
    assert_close(next(iter(out.values())), expected, 1e-6, 1e-6, "loaded from the saved package")


def test_lists_written_in_a_loop_then_gathered():
    x = rand(3)

    def build(x):
        ls = mb.make_list(init_length=0, elem_shape=[mb.const(val=np.int32(3))], dtype="fp32", dynamic_length=True)

        def test(i, ls):
            return mb.less(x=i, y=np.int32(4))

        def body(i, ls):
            value = mb.mul(x=x, y=mb.cast(x=i, dtype="fp32"))
            return mb.add(x=i, y=np.int32(1)), mb.list_write(ls=ls, index=i, value=value)

        _, ls = mb.while_loop(_cond=test, _body=body, loop_vars=(np.int32(0), ls))
        gathered = mb.list_gather(ls=ls, indices=np.array([3, 0, 2], np.int32))
        ls = mb.list_scatter(ls=ls, indices=np.array([1], np.int32), value=mb.expand_dims(x=x, axes=[0]))
        length = mb.cast(x=mb.list_length(ls=ls), dtype="fp32")
        return gathered, mb.add(x=mb.list_read(ls=ls, index=np.int32(1)), y=length)

    model = convert(program(build, x))
    ran = []
    CoreMLInterpreter(model).predict({"x": x}, observe=lambda kind, name, outs: ran.append(kind))
    assert ran.count("list_write") == 4, "list_write ran in each turn of the loop"
    gathered, read = run_model(model, "list_gather", x)
    assert_close(gathered, np.stack([3 * x, 0 * x, 2 * x]), 1e-6, 1e-6)
    assert_close(read, x + 4, 1e-6, 1e-6, "list_scatter replaced element 1; the list has 4 elements")


def test_a_fixed_length_list_refuses_an_index_past_its_end():
    from workbench.coreml_interp.registry import kernel
    from workbench.errors import WorkbenchError

    ls = kernel("make_list")(elem_shape=[2], init_length=2, dynamic_length=False)
    ls2 = kernel("list_write")(ls=ls, index=1, value=np.ones(2, np.float32))
    assert_close(kernel("list_read")(ls=ls2, index=0), [0, 0], 0, 0, "never written: zeros")
    assert_close(kernel("list_read")(ls=ls, index=1), [0, 0], 0, 0, "list_write left its input unchanged")
    with pytest.raises(WorkbenchError, match=r"list index 2 out of range for a fixed-length list of 2"):
        kernel("list_write")(ls=ls, index=2, value=np.ones(2, np.float32))


def test_a_torch_loop_converted_to_while_loop_matches_torch():
    import coremltools as ct
    import torch

    class Loop(torch.nn.Module):
        def forward(self, x):
            for _ in range(3):
                x = torch.tanh(x) * 1.5 + 0.1
            return x

    scripted = torch.jit.script(Loop())
    x = rand(3, 2)
    model = ct.convert(scripted, inputs=[ct.TensorType(name="x", shape=x.shape)], convert_to="mlprogram",
                       minimum_deployment_target=IOS16, compute_precision=ct.precision.FLOAT32)
    out = CoreMLInterpreter(model).predict({"x": x})
    assert_close(next(iter(out.values())), Loop()(torch.from_numpy(x)).numpy(), 1e-6, 1e-6)
