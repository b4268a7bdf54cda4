"""Models nobody here wrote (issue 14), reproduced small: a tanh generator, multi-output heads, names.

Each test builds its model in code and fails on the workbench before issue 14: image outputs were taken to
be in (0, 1) whatever the model gave, the first output was always the main one, and artifacts were named
after the file the model came from.
"""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from torch import nn

from workbench.errors import WorkbenchError
from workbench.preprocess import Preprocess
from workbench.session import Reference, Session
from workbench.tasks import Classification, ImageToImage, final_activations
from workbench.zoo import UnetGenerator

HALF = Preprocess.preset("half", size=(32, 32))


def unet():
    torch.manual_seed(0)
    return UnetGenerator(num_downs=3, ngf=4).eval()


class TwoHeads(nn.Module):
    """A classifier head and a sigmoid mask head on one trunk: (logits, mask)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.trunk = nn.Conv2d(3, 4, 3, padding=1)
        self.cls = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 5))
        self.mask = nn.Conv2d(4, 1, 1)

    def forward(self, x):
        f = torch.relu(self.trunk(x))
        return self.cls(f), torch.sigmoid(self.mask(f))


# -- 1. image output ranges ------------------------------------------------------------------------------

def test_tanh_generator_range_is_read_from_its_final_tanh(samples):
    ref = Reference(unet(), samples, preprocess=HALF, task="image")
    assert ref.task.output_range == (-1.0, 1.0)
    assert any("read from the model's final tanh" in n for n in ref.notes)
    assert ref.task.deprocess == pytest.approx((127.5, 127.5))  # (y + 1) * 127.5, not y * 255


def test_declared_range_the_output_leaves_is_an_error_naming_the_range_that_fits(samples):
    with pytest.raises(WorkbenchError, match=r"ranges from -0\.\d+ to 0\.\d+ .*outside \(0, 1\).*\(-1, 1\) fits: "
                                             r"declare it with --output-range -1 1"):
        Reference(unet(), samples, preprocess=HALF, task=ImageToImage(output_range=(0, 1)))


def test_an_output_no_standard_range_fits_says_so():
    values = np.linspace(-3, 7, 1000)
    from workbench.tasks import check_output_range

    with pytest.raises(WorkbenchError, match=r"None of \(0, 1\), \(-1, 1\), \(0, 255\) fits.*--task generic"):
        check_output_range("out", values, (0, 1), "declared")


def test_a_small_overshoot_is_clipped_with_a_note_not_silently():
    from workbench.tasks import check_output_range

    values = np.concatenate([np.linspace(0, 1, 990), np.full(10, 1.05)])  # 1% just above 1
    note = check_output_range("out", values, (0, 1), "declared")
    assert note is not None and "1.0% of its values" in note and "clipped" in note
    assert check_output_range("out", np.linspace(0, 1, 10), (0, 1), "declared") is None


@pytest.mark.parametrize("last,expected", [
    (nn.Tanh(), ("tanh", (-1.0, 1.0))), (nn.Sigmoid(), ("sigmoid", (0.0, 1.0))),
    (nn.Hardtanh(0.0, 6.0), ("hardtanh", (0.0, 6.0))), (nn.ReLU(), ("relu", None))])
def test_final_activation_is_read_from_one_forward(last, expected):
    model = nn.Sequential(nn.Conv2d(3, 3, 1), last).eval()
    assert final_activations(model, torch.rand(1, 3, 8, 8)) == {"output": expected}


def test_cli_tanh_generator_passes_with_its_range_and_refuses_a_wrong_one(tmp_path, samples):
    args = [sys.executable, "-m", "workbench", "check", "workbench/zoo.py:UnetGenerator", "--preset", "half",
            "--size", "32", "32", "--images", str(samples), "--to", "torchscript"]
    ok = subprocess.run(args + ["--task", "image", "--json", "--out", str(tmp_path)], capture_output=True, text=True,
                        timeout=300)
    assert ok.returncode == 0, ok.stderr
    doc = json.loads(ok.stdout)
    assert any("range (-1.0, 1.0) read from the model's final tanh" in n for n in doc["notes"])
    assert (tmp_path / "UnetGenerator.pt").is_file()  # named after the factory, not zoo.py
    wrong = subprocess.run(args + ["--output-range", "0", "1"], capture_output=True, text=True, timeout=300)
    assert wrong.returncode == 2 and "(-1, 1) fits: declare it with --output-range -1 1" in wrong.stderr
    usage = subprocess.run(args + ["--output-range", "0", "1", "--task", "classification"], capture_output=True,
                           text=True, timeout=300)
    assert usage.returncode == 2 and "does not go with --task classification" in usage.stderr


# -- 7. main output, per-output tasks, names -----------------------------------------------------------

@pytest.mark.parametrize("output", ["output_1", 1, "1"])
def test_main_output_by_name_or_index_comes_first(samples, output):
    ref = Reference(TwoHeads(), samples, preprocess=HALF, output=output)
    assert list(ref.outputs) == ["output_1", "output_0"]
    assert isinstance(ref.task, ImageToImage) and ref.task.output == "output_1"
    assert ref.task.output_range == (0.0, 1.0)  # read from the mask head's sigmoid
    assert ref.tasks["output_0"].name == "generic"


def test_unknown_output_names_the_outputs(samples):
    with pytest.raises(WorkbenchError, match=r"no output 'mask'; its outputs are \['output_0', 'output_1'\]"):
        Reference(TwoHeads(), samples, preprocess=HALF, output="mask")
    with pytest.raises(WorkbenchError, match=r"output 5 is out of range: the model has 2 outputs"):
        Reference(TwoHeads(), samples, preprocess=HALF, output=5)


def test_per_output_tasks_check_every_image_range(samples):
    ref = Reference(TwoHeads(), samples, preprocess=HALF,
                    task={"output_0": Classification(), "output_1": "image"})
    assert isinstance(ref.task, Classification) and ref.task.output == "output_0"
    assert ref.tasks["output_1"].output_range == (0.0, 1.0)
    # a declaration the final activation contradicts (all values inside it, so no error) is pointed out
    ref = Reference(TwoHeads(), samples, preprocess=HALF, task={"output_1": ImageToImage(output_range=(-1, 1))})
    assert any("declared range (-1.0, 1.0), but the model's final sigmoid gives (0.0, 1.0)" in n for n in ref.notes)


def test_main_output_not_first_exports_in_the_reference_order(samples, tmp_path):
    session = Session(TwoHeads(), samples, preprocess=HALF, output="output_1")
    report = session.check(["onnx", "torchscript"], tmp_path)
    assert report.passed, {k: (v.error, v.comparison and v.comparison.failures) for k, v in report.formats.items()}
    assert report.formats["onnx"].artifact.output_names == ("output_1", "output_0")
    assert session.run("onnx")["output_1"].shape == session.outputs["output_1"].shape


def test_artifacts_are_named_after_the_model_not_its_file(samples, tmp_path):
    assert Reference(unet(), samples, preprocess=HALF).name == "UnetGenerator"
    py = tmp_path / "some_file.py"
    py.write_text(textwrap.dedent("""
        import torch
        def mobile_thing():
            return torch.nn.Conv2d(3, 2, 1)
    """))
    assert Reference(f"{py}:mobile_thing", samples, preprocess=HALF).name == "mobile_thing"


# -- 3. conversion errors name the op, and suggest only fixes shown to work -----------------------------

class FunctionalPReLU(nn.Module):
    """F.prelu with per-channel alpha after a Linear: no nn.PReLU for the workbench's fix to rewrite."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.dense = nn.Linear(3 * 8 * 8, 6)
        self.alpha = nn.Parameter(torch.linspace(0.1, 0.6, 6))

    def forward(self, x):
        return nn.functional.prelu(self.dense(x.flatten(1)), self.alpha)


def test_conversion_error_names_the_op_from_the_converter_frames(tmp_path):
    pytest.importorskip("coremltools")
    from workbench.errors import ConversionError
    from workbench.formats.base import ExportSpec
    from workbench.formats.coreml.export import export_coreml

    spec = ExportSpec(module=FunctionalPReLU().eval(), input_shape=(1, 3, 8, 8), output_names=("output",),
                      source="FunctionalPReLU")
    with pytest.raises(ConversionError) as info:
        export_coreml(spec, tmp_path / "m.mlpackage")
    text = str(info.value)
    # coremltools' text ("prelu op: rank 3 or rank 5 input ...") quotes no op: the frames name it
    assert "failed at op 'prelu'" in text and "x[:, :, None, None]" in text, text
    assert "method='export' fails the same way" in text  # never suggested as a fix here


def test_numpy_24_error_suggests_the_bound_and_export():
    from workbench.diagnose import conversion_error

    err = conversion_error("Core ML", TypeError("only 0-dimensional arrays can be converted to Python scalars"))
    assert "install numpy<2.4" in str(err) and "--method export" in str(err)


# -- 6. timm models and their preprocessing ------------------------------------------------------------

def test_bicubic_resize_is_pillows_bicubic(samples):
    from PIL import Image

    from workbench.images import fit_image, load_image

    img = load_image(next(p for p in sorted(samples.iterdir()) if p.suffix == ".jpg"))
    got = fit_image(img, (40, 40), "stretch", interpolation="bicubic")
    np.testing.assert_array_equal(got, np.asarray(img.resize((40, 40), Image.BICUBIC, reducing_gap=None)))
    assert not np.array_equal(got, fit_image(img, (40, 40), "stretch"))  # bilinear differs


def test_cli_timm_random_weights_with_crop_pct_and_interpolation(tmp_path, samples):
    pytest.importorskip("timm")
    proc = subprocess.run([sys.executable, "-m", "workbench", "check", "timm:test_vit", "--weights", "none",
                           "--crop-pct", "0.8", "--interpolation", "bilinear", "--images", str(samples),
                           "--to", "torchscript", "--out", str(tmp_path), "--json"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    pre = doc.get("training_preprocess") or doc["preprocess"]
    assert pre["size"] == [160, 160] and pre["resize"] == 200 and pre["interpolation"] == "bilinear"
    assert pre["mean"] == [0.5, 0.5, 0.5]  # from the model's pretrained_cfg
    assert any("random weights" in n for n in doc["notes"]) and (tmp_path / "test_vit.pt").is_file()


# -- 2. a bounded dependency set --------------------------------------------------------------------------

def test_constraints_bound_numpy_below_the_coremltools_break():
    from pathlib import Path

    from packaging.requirements import Requirement

    lines = (Path(__file__).resolve().parents[1] / "constraints.txt").read_text().splitlines()
    numpy_req = next(Requirement(x) for x in lines if x.strip() and not x.startswith("#") and x.startswith("numpy"))
    assert "2.3.5" in numpy_req.specifier and "2.4.0" not in numpy_req.specifier


# -- 4. fp16 overflow, as random-init MobileOne's logits (about 1e15) -------------------------------------

def test_fp16_overflow_is_named_in_the_check_of_a_classifier(samples, tmp_path):
    pytest.importorskip("coremltools")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(4, 3)).eval()
    with torch.no_grad():
        model[4].weight.mul_(1e7)  # logits ~1e5: past fp16's 65504
    session = Session(model, samples, preprocess=Preprocess.preset("unit", size=(16, 16)), task="classification",
                      labels=["a", "b", "c"])
    assert np.abs(session.outputs["output"]).max() > 65504
    result = session.check(["coreml"], tmp_path).formats["coreml"]
    assert result.passed is False
    # the Core ML classifier gives probabilities, finite in the reference: the overflow is in the model's logits
    assert any("fp16 overflow (the model's 'output' reaches" in f for f in result.comparison.failures), \
        result.comparison.failures
    assert result.divergence and "fp16 overflow: op" in result.divergence, result.divergence


def test_a_regression_output_overshooting_on_many_pixels_by_little_is_clipped_with_a_note():
    """A trained super-resolution net at 224x224: 2.1% of its values outside (0, 1), by at most 0.07."""
    from workbench.tasks import check_output_range

    values = np.concatenate([np.linspace(0, 1, 900), np.full(50, -0.047), np.full(50, 1.068)])  # 10% outside
    note = check_output_range("out", values, (0, 1), "declared")
    assert note is not None and "10.0% of its values" in note and "clipped" in note
