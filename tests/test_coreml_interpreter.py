"""CoreMLInterpreter: MLModel.predict's API, saved packages, neural networks, the runner and the locator.

Models are tiny and built in code; full-size parity is in test_coreml_models.py, single ops in
tests/coreml_interp/.
"""

import copy
import logging
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from workbench import CoreMLInterpreter, ImageToImage, Preprocess, WorkbenchError
from workbench.coreml_interp.divergence import locate
from workbench.session import Session
from workbench.zoo import PitfallNet, SmallCNN, SuperResolutionNet

ct = pytest.importorskip("coremltools")
logging.getLogger("coremltools").setLevel(logging.ERROR)


def _convert(module, shape, *, image=None, precision="fp32", target="iOS16", **kwargs):
    torch.manual_seed(0)
    traced = torch.jit.trace(module.eval(), torch.rand(shape))
    inputs = [image or ct.TensorType(name="x", shape=shape)]
    kw = dict(inputs=inputs, minimum_deployment_target=getattr(ct.target, target), **kwargs)
    if target not in ("iOS13", "iOS14"):
        kw["compute_precision"] = ct.precision.FLOAT32 if precision == "fp32" else ct.precision.FLOAT16
    else:
        kw["convert_to"] = "neuralnetwork"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return traced, ct.convert(traced, **kw)


def _net(channels=3):
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(channels, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                               torch.nn.Conv2d(4, 2, 3, stride=2), torch.nn.Sigmoid()).eval()


def _photo(size=(16, 12), mode="RGB", seed=0):
    rng = np.random.default_rng(seed)
    channels = 1 if mode == "L" else 3
    arr = rng.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    return Image.fromarray(arr[..., 0] if channels == 1 else arr, mode)


def test_multiarray_input_matches_torch():
    net = _net()
    _, mlmodel = _convert(net, (1, 3, 12, 16))
    x = np.random.default_rng(0).normal(size=(1, 3, 12, 16)).astype(np.float32)
    interp = CoreMLInterpreter(mlmodel)
    (name,) = interp.output_names
    out = interp.predict({"x": x})
    assert set(out) == {name}
    assert isinstance(out[name], np.ndarray) and out[name].dtype == np.float32
    np.testing.assert_allclose(out[name], net(torch.from_numpy(x)).detach().numpy(), atol=1e-5, rtol=0)
    assert interp.label == "Core ML interpreter (ML program, fp32)"


@pytest.mark.parametrize("layout", ["RGB", "BGR"])
def test_image_input_applies_scale_bias_and_channel_order(layout):
    net = _net()
    image = ct.ImageType(name="image", shape=(1, 3, 12, 16), scale=1 / 255, bias=[0.1, -0.2, 0.3],
                         color_layout=getattr(ct.colorlayout, layout))
    _, mlmodel = _convert(net, (1, 3, 12, 16), image=image)
    photo = _photo()
    arr = np.asarray(photo, np.float32).transpose(2, 0, 1)[None]
    if layout == "BGR":
        arr = arr[:, ::-1]
    x = arr / 255 + np.array([0.1, -0.2, 0.3], np.float32).reshape(1, 3, 1, 1)
    out = CoreMLInterpreter(mlmodel).predict({"image": photo})
    np.testing.assert_allclose(next(iter(out.values())), net(torch.from_numpy(x.copy())).detach().numpy(),
                               atol=1e-5, rtol=0)


def test_saved_mlpackage_gives_the_in_memory_outputs(tmp_path):
    for precision in ("fp32", "fp16"):
        _, mlmodel = _convert(_net(), (1, 3, 12, 16), precision=precision)
        path = tmp_path / f"net_{precision}.mlpackage"
        mlmodel.save(str(path))
        x = np.random.default_rng(1).normal(size=(1, 3, 12, 16)).astype(np.float32)
        a = CoreMLInterpreter(mlmodel).predict({"x": x})
        b = CoreMLInterpreter(path).predict({"x": x})
        assert a.keys() == b.keys()
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])
        assert CoreMLInterpreter(str(path)).declared_precision == precision


def test_fp16_program_rounds_and_fp32_option_removes_the_rounding():
    net = _net()
    _, mlmodel = _convert(net, (1, 3, 12, 16), precision="fp16")
    x = np.random.default_rng(2).normal(size=(1, 3, 12, 16)).astype(np.float32)
    ref = net(torch.from_numpy(x)).detach().numpy()
    declared = CoreMLInterpreter(mlmodel)
    fp32 = CoreMLInterpreter(mlmodel, compute_precision="fp32")
    a = next(iter(declared.predict({"x": x}).values())).astype(np.float32)
    b = next(iter(fp32.predict({"x": x}).values())).astype(np.float32)
    assert declared.label.endswith("fp16)") and fp32.label.endswith("fp32)")
    # fp16 keeps 11 significant bits: a sigmoid output in (0, 1) is within 2**-11 after rounding; the error
    # of three rounded layers stays well inside 1e-2
    np.testing.assert_allclose(a, ref, atol=1e-2, rtol=0)
    assert np.abs(a - ref).max() > 0  # the rounding is really there
    # without the activations' rounding only the fp16 weights remain: closer to PyTorch than as declared
    assert np.abs(b - ref).max() < np.abs(a - ref).max()
    assert (np.asarray(a, np.float16).astype(np.float32) == a).all()


def test_classifier_gives_label_and_probability_dict():
    torch.manual_seed(0)
    net = SmallCNN(num_classes=3, in_channels=3, width=4).eval()
    labels = ["cat", "dog", "fish"]
    traced = torch.jit.trace(torch.nn.Sequential(net, torch.nn.Softmax(dim=-1)).eval(), torch.rand(1, 3, 16, 16))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mlmodel = ct.convert(traced, inputs=[ct.ImageType(name="image", shape=(1, 3, 16, 16), scale=1 / 255)],
                             classifier_config=ct.ClassifierConfig(labels), minimum_deployment_target=ct.target.iOS16,
                             compute_precision=ct.precision.FLOAT32)
    photo = _photo((16, 16))
    out = CoreMLInterpreter(mlmodel).predict({"image": photo})
    label_name, probs_name = CoreMLInterpreter(mlmodel).output_names
    probs = out[probs_name]
    assert isinstance(probs, dict) and list(probs) == labels
    x = torch.from_numpy(np.asarray(photo, np.float32).transpose(2, 0, 1)[None] / 255)
    expected = torch.softmax(net(x), -1)[0].detach().numpy()
    np.testing.assert_allclose([probs[k] for k in labels], expected, atol=1e-6, rtol=0)
    assert out[label_name] == labels[int(expected.argmax())]


def test_image_output_is_a_pil_image_or_the_float_array():
    class Gray(torch.nn.Module):
        def forward(self, x):
            return (x.mean(1, keepdim=True) * 255).clamp(0, 255)

    image = ct.ImageType(name="image", shape=(1, 3, 12, 16), scale=1 / 255)
    _, mlmodel = _convert(Gray(), (1, 3, 12, 16), image=image,
                          outputs=[ct.ImageType(name="out", color_layout=ct.colorlayout.GRAYSCALE)])
    photo = _photo()
    interp = CoreMLInterpreter(mlmodel)
    pil = interp.predict({"image": photo})["out"]
    raw = interp.predict({"image": photo}, image_outputs="array")["out"]
    assert isinstance(pil, Image.Image) and pil.mode == "L" and pil.size == (16, 12)
    expected = np.asarray(photo, np.float32).mean(-1)
    np.testing.assert_allclose(raw[0, 0], expected, atol=1e-3, rtol=0)
    np.testing.assert_array_equal(np.asarray(pil), np.clip(np.round(raw[0, 0]), 0, 255).astype(np.uint8))


def test_wrong_inputs_say_what_was_expected():
    image = ct.ImageType(name="image", shape=(1, 3, 12, 16), scale=1 / 255)
    _, mlmodel = _convert(_net(), (1, 3, 12, 16), image=image)
    interp = CoreMLInterpreter(mlmodel)
    with pytest.raises(WorkbenchError, match=r"unknown input 'img'.*missing input 'image'.*RGB PIL image 16x12"):
        interp.predict({"img": _photo()})
    with pytest.raises(WorkbenchError, match=r"takes a RGB PIL image 16x12; got 20x20: resize it"):
        interp.predict({"image": _photo((20, 20))})
    with pytest.raises(WorkbenchError, match=r"takes a RGB PIL image 16x12, not a ndarray"):
        interp.predict({"image": np.zeros((1, 3, 12, 16), np.float32)})
    _, arrays = _convert(_net(), (1, 3, 12, 16))
    with pytest.raises(WorkbenchError, match=r"input 'x' takes shape \(1, 3, 12, 16\); got \(1, 3, 12, 15\)"):
        CoreMLInterpreter(arrays).predict({"x": np.zeros((1, 3, 12, 15), np.float32)})
    with pytest.raises(WorkbenchError, match="compute_precision must be None"):
        CoreMLInterpreter(arrays, compute_precision="int8")
    with pytest.raises(WorkbenchError, match="no Core ML model at"):
        CoreMLInterpreter("/nonexistent/model.mlpackage")


def test_unknown_op_names_the_op_and_opset():
    from workbench.coreml_interp.registry import kernel

    with pytest.raises(WorkbenchError, match=r"does not implement MIL op 'fancy_op' \(opset iOS17\)"):
        kernel("fancy_op", "iOS17")


@pytest.mark.parametrize("target", ["iOS13", "iOS14"])
def test_neural_network_with_scaler_matches_torch(target, tmp_path):
    net = _net()
    image = ct.ImageType(name="image", shape=(1, 3, 12, 16), scale=1 / 127.5, bias=[-1.0, -0.5, 0.25],
                         color_layout=ct.colorlayout.BGR)
    _, mlmodel = _convert(net, (1, 3, 12, 16), image=image, target=target)
    path = tmp_path / "net.mlmodel"
    mlmodel.save(str(path))
    interp = CoreMLInterpreter(path)
    assert interp.kind == "neuralNetwork" and "neural network" in interp.label
    photo = _photo()
    bgr = np.asarray(photo, np.float32)[..., ::-1].transpose(2, 0, 1)[None]
    x = bgr / 127.5 + np.array([-1.0, -0.5, 0.25], np.float32).reshape(1, 3, 1, 1)
    out = next(iter(interp.predict({"image": photo}).values()))
    np.testing.assert_allclose(out, net(torch.from_numpy(x.copy())).detach().numpy(), atol=1e-5, rtol=0)


def test_neural_network_reveals_nearest_upsampling_turned_bilinear():
    """coremltools' neural-network backend replaces nearest upsampling by a non-integer factor with bilinear
    align_corners=True (a warning at conversion). The ML program keeps nearest. The interpreter shows both."""
    torch.manual_seed(0)
    model = PitfallNet(upsample="nearest", ceil_mode=True).eval()
    session = Session(model, _sample_images(), preprocess=Preprocess.preset("unit", size=(63, 63)), task="image")
    session.export("coreml", target="iOS16", precision="fp32")
    program = session.compare("coreml", session.run("coreml"))
    session.export("coreml", target="iOS14")
    network = session.compare("coreml", session.run("coreml"))
    assert program.passed, program.failures
    assert not network.passed
    assert 1e-3 < network.worst()["max_abs"] < 0.2


def _sample_images():
    from workbench.images import SAMPLE_IMAGES

    return sorted(SAMPLE_IMAGES.glob("*.jpg"))[:2]


def test_runner_runs_the_interpreter_and_labels_it():
    torch.manual_seed(0)
    sr = SuperResolutionNet(upscale_factor=3).eval()
    # random weights: the output spans (-1, 1), and a range it leaves is an error (issue 14)
    session = Session(sr, _sample_images(), preprocess=Preprocess.preset("gray", size=(24, 24)),
                      task=ImageToImage(output_range=(-1, 1)))
    report = session.check(["coreml"], options={"coreml": {"precision": "fp32"}})
    result = report.formats["coreml"]
    assert result.passed, (result.error, result.comparison and result.comparison.failures)
    assert result.label == "Core ML interpreter (ML program, fp32)"
    assert result.comparison.worst()["max_abs"] < 1e-5


def test_locator_names_the_first_layer_that_differs():
    """The converted program is the model; the PyTorch side has its third conv changed: that conv is named."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(*[m for _ in range(4) for m in (torch.nn.Conv2d(3, 3, 3, padding=1), torch.nn.ReLU())])
    traced, mlmodel = _convert(net, (1, 3, 12, 16))
    x = np.random.default_rng(3).normal(size=(1, 3, 12, 16)).astype(np.float32)
    interp = CoreMLInterpreter(mlmodel)

    same = locate(traced, torch.from_numpy(x), interp, {"x": x})
    assert same.first is None and same.matched >= 6, same.describe()

    other = copy.deepcopy(net)  # the converted weights may share memory with the module's
    with torch.no_grad():
        other[4].weight[0, 0, 1, 1] += 0.5
    changed = torch.jit.trace(other, torch.from_numpy(x))
    found = locate(changed, torch.from_numpy(x), interp, {"x": x})
    assert found.first is not None, found.describe()
    assert found.first.op_type == "conv" and found.first.index == 4, found.describe()
    assert found.last_good.index == 3
    text = found.describe()
    assert "first divergence at op 5: conv" in text and "Core ML: (1, 3, 12, 16)" in text and "PyTorch:" in text


class _InplaceResidual(torch.nn.Module):
    """timm MobileOne's pattern: ``out = scale_out; out += conv_out; relu(inplace=True)``."""

    def __init__(self):
        super().__init__()
        self.scale, self.conv = torch.nn.Conv2d(3, 3, 1), torch.nn.Conv2d(3, 3, 3, padding=1)
        self.act, self.head = torch.nn.ReLU(inplace=True), torch.nn.Conv2d(3, 2, 3, padding=1)

    def forward(self, x):
        out = self.scale(x)
        out += self.conv(x)
        return self.head(self.act(out))


def test_locator_records_values_before_later_in_place_ops_change_them():
    """Without a copy, the 1x1 conv's value was read after `+=` and relu_ overwrote it: a false divergence."""
    traced, mlmodel = _convert(_InplaceResidual(), (1, 3, 8, 8))
    x = np.random.default_rng(1).normal(size=(1, 3, 8, 8)).astype(np.float32)
    found = locate(traced, torch.from_numpy(x), CoreMLInterpreter(mlmodel), {"x": x})
    assert found.first is None and found.matched >= 4, found.describe()


def _overflowing():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.ReLU(), torch.nn.Conv2d(4, 4, 1), torch.nn.ReLU(),
                              torch.nn.Conv2d(4, 2, 1))
    with torch.no_grad():
        net[0].weight.mul_(300)
        net[2].weight.mul_(3000)  # ~1e6 after this conv: past fp16's 65504, as random-init MobileOne's logits
    return net.eval()


def test_locator_names_fp16_overflow_and_the_first_op_past_65504():
    net = _overflowing()
    traced, mlmodel = _convert(net, (1, 3, 8, 8), precision="fp16")
    x = np.random.default_rng(2).normal(size=(1, 3, 8, 8)).astype(np.float32)
    found = locate(traced, torch.from_numpy(x), CoreMLInterpreter(mlmodel), {"x": x})
    values = net[:3](torch.from_numpy(x)).abs().max()
    assert values > 65504 and net[:1](torch.from_numpy(x)).abs().max() < 65504
    assert found.overflow is not None and found.overflow.op_type == "conv", found.describe()
    assert found.first_inf is not None and found.first_inf[0] >= found.overflow.index
    text = found.describe()
    assert "fp16 overflow: op" in text and "exceeds fp16's range" in text and "--precision fp32" in text


def test_compare_names_fp16_overflow_when_the_reference_passes_65504():
    from workbench.compare import compare

    ref = {"out": np.array([[1e5, 2.0, -3.0]], np.float32)}
    result = compare(ref, {"out": np.array([[np.inf, 2.0, -3.0]], np.float32)})
    assert result.failures and "fp16 overflow (the reference reaches 1e+05, beyond fp16's 65504)" in result.failures[0]
    small = compare({"out": np.array([[1.0, 2.0]], np.float32)}, {"out": np.array([[np.nan, 2.0]], np.float32)})
    assert "non-finite values" in small.failures[0] and "overflow" not in small.failures[0]


def test_locator_skips_a_same_named_value_in_another_layout():
    """coremltools can move a permute across an op and keep the op's name (timm edgenext's channels-last add):
    the values are the same numbers in another layout, not a divergence."""
    from types import SimpleNamespace

    from workbench.coreml_interp.divergence import mil_name, torch_values

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.ReLU()).eval()
    x = torch.randn(1, 3, 5, 6)
    traced = torch.jit.trace(net, x)
    name, value = next((k, v) for k, v in torch_values(traced, x).items() if v.shape == (1, 4, 5, 6))
    channels_last = value.permute(0, 2, 3, 1).contiguous()  # same numel, other layout

    class Fake:
        program = SimpleNamespace(steps=[SimpleNamespace(outputs=[(mil_name(name), None)])])

        def predict(self, feed, observe, image_outputs):
            observe("add", mil_name(name), [channels_last])

    found = locate(traced, x, Fake(), {})
    assert found.first is None and found.matched == 0, found.describe()
