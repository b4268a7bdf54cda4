"""ops/state.py: a stateful (iOS18) model keeps its state across predict calls, per make_state()."""

import coremltools as ct
import numpy as np
import pytest
import torch
from _mil import assert_close

from workbench.coreml_interp import CoreMLInterpreter
from workbench.errors import WorkbenchError


class Accumulator(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("accumulator", torch.zeros(2, dtype=torch.float16))

    def forward(self, x):
        self.accumulator += x
        return self.accumulator * self.accumulator


@pytest.fixture(scope="module")
def model():
    traced = torch.jit.trace(Accumulator().eval(), torch.tensor([1.0, 2.0]))
    return ct.convert(traced, inputs=[ct.TensorType(shape=(2,), name="x")], outputs=[ct.TensorType(name="y")],
                      states=[ct.StateType(wrapped_type=ct.TensorType(shape=(2,)), name="accumulator")],
                      minimum_deployment_target=ct.target.iOS18)


def test_state_carries_over_between_predictions(model, tmp_path):
    path = tmp_path / "state.mlpackage"
    model.save(str(path))
    for interp in (CoreMLInterpreter(model), CoreMLInterpreter(path)):
        state = interp.make_state()
        xs = [np.array([1.0, 2.0], np.float32), np.array([0.5, -1.0], np.float32), np.array([2.0, 0.25], np.float32)]
        total = np.zeros(2)
        for x in xs:
            total += x
            out = interp.predict({"x": x}, state=state)["y"]
            assert_close(out, total ** 2, 1e-3, 1e-3, "y = (sum of the inputs so far) ** 2")  # fp16 program
        assert_close(state.read("accumulator"), total, 1e-3, 0)
        fresh = interp.make_state()
        assert_close(interp.predict({"x": xs[0]}, state=fresh)["y"], xs[0] ** 2, 1e-3, 1e-3, "a new state starts at 0")
        assert_close(state.read("accumulator"), total, 1e-3, 0, "the first state is untouched")


def test_stateful_predict_without_a_state_says_what_to_pass(model):
    interp = CoreMLInterpreter(model)
    with pytest.raises(WorkbenchError,
                       match=r"is stateful \(states 'accumulator'\): pass state=interpreter.make_state"):
        interp.predict({"x": np.ones(2, np.float32)})


def test_make_state_on_a_stateless_model_is_refused():
    from _mil import convert, mb, program

    interp = CoreMLInterpreter(convert(program(lambda x: mb.relu(x=x), np.ones(2, np.float32))))
    with pytest.raises(WorkbenchError, match="declares no state; make_state is for stateful"):
        interp.make_state()

