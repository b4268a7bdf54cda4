"""Exporters: formats, atomic writes, overwrite refusal, conversion diagnostics, Core ML specifics."""

import os
import signal
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

from conftest import tiny_classifier
from workbench import ConversionError, Preprocess, WorkbenchError
from workbench.diagnose import conversion_error
from workbench.files import atomic_output
from workbench.session import Session


@pytest.fixture(scope="module")
def session(samples):
    return Session(tiny_classifier(), samples, preprocess=Preprocess.preset("imagenet", size=(32, 32)),
                   task="classification", labels=["a", "b", "c", "d"])


def coreml_spec(path):
    import coremltools as ct

    return ct.utils.load_spec(str(path))


def test_existing_artifact_is_not_overwritten_unless_asked(session, tmp_path):
    path = tmp_path / "m.onnx"
    path.write_bytes(b"old")
    with pytest.raises(WorkbenchError, match=r"m\.onnx already exists; pass overwrite=True"):
        session.export("onnx", path)
    assert path.read_bytes() == b"old"
    session.export("onnx", path, overwrite=True)
    assert path.stat().st_size > 1000


def test_mlpackage_directory_is_replaced_whole(session, tmp_path):
    path = tmp_path / "m.mlpackage"
    session.export("coreml", path)
    first = sorted(p.relative_to(path) for p in path.rglob("*"))
    session.export("coreml", path, overwrite=True, precision="fp32")
    assert sorted(p.relative_to(path) for p in path.rglob("*")) == first
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary files left behind"


def test_failed_write_leaves_nothing(tmp_path):
    dest = tmp_path / "model.onnx"
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_output(dest) as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_sigkill_mid_write_never_leaves_a_partial_artifact(tmp_path):
    dest = tmp_path / "model.onnx"
    dest.write_bytes(b"old artifact")
    script = textwrap.dedent(f"""
        import os, signal
        from pathlib import Path
        from workbench.files import atomic_output
        with atomic_output(Path({str(dest)!r}), overwrite=True) as tmp:
            tmp.write_bytes(b"half of the new")
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True)
    assert proc.returncode == -signal.SIGKILL
    assert dest.read_bytes() == b"old artifact"
    # The next export clears the killed one's hidden temporary file.
    with atomic_output(dest, overwrite=True) as tmp:
        tmp.write_bytes(b"new artifact")
    assert dest.read_bytes() == b"new artifact"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


def test_unwritable_output_folder_is_a_clear_error(session, tmp_path):
    if os.geteuid() == 0:
        target = "/proc/workbench-out/m.onnx"  # root can write anywhere else
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        target = str(locked / "m.onnx")
    with pytest.raises(WorkbenchError, match="output folder"):
        session.export("onnx", target)


def test_coreml_bakes_per_channel_std_and_can_approximate(session, tmp_path):
    baked = session.export("coreml", tmp_path / "baked.mlpackage")
    assert any("baked" in n for n in baked.notes)
    assert baked.preprocess == session.training_preprocess
    spec = coreml_spec(baked.path)
    assert spec.description.metadata.userDefined["workbench.normalization"] == "baked into the graph"
    approx = session.export("coreml", tmp_path / "approx.mlpackage", normalization="imagetype")
    assert approx.preprocess.scale[0] == approx.preprocess.scale[2]  # one scalar, as ImageType has
    assert any("not exact" in n for n in approx.notes)


def test_coreml_precision_shows_as_casts(session, tmp_path):
    fp16 = str(coreml_spec(session.export("coreml", tmp_path / "h.mlpackage", precision="fp16").path))
    fp32 = str(coreml_spec(session.export("coreml", tmp_path / "f.mlpackage", precision="fp32").path))
    assert fp16.count('"fp16"') > 0 and fp32.count('"fp16"') == 0


def test_coreml_metadata(session, tmp_path):
    art = session.export("coreml", tmp_path / "m.mlpackage", author="me", description="tiny")
    spec = coreml_spec(art.path)
    assert spec.description.metadata.author == "me"
    assert spec.description.metadata.shortDescription == "tiny"
    assert "Normalize" in spec.description.input[0].shortDescription
    assert art.output_names == ("classLabel", "classLabel_probs")


def test_torchscript_optimized_for_mobile_still_matches(session, tmp_path):
    import torch.backends.xnnpack

    if not torch.backends.xnnpack.enabled:
        with pytest.raises(WorkbenchError, match="needs a torch build with XNNPACK"):
            session.export("torchscript", tmp_path / "m.pt", optimize=True)
        assert not (tmp_path / "m.pt").exists()
        return
    art = session.export("torchscript", tmp_path / "m.pt", optimize=True)
    assert any("optimized" in n for n in art.notes)
    comparison = session.compare("torchscript", session.run("torchscript"))
    assert comparison.passed, comparison.failures


def test_trace_warns_about_data_dependent_control_flow(samples):
    class Branchy(nn.Module):
        def forward(self, x):
            return x * 2 if x.mean() > 0 else x

    s = Session(Branchy(), samples, preprocess=Preprocess.preset("unit", size=(8, 8)), task="generic")
    art = s.export("torchscript")
    assert any("data-dependent control flow" in n for n in art.notes)


def test_unsupported_op_names_the_op_and_the_fix(samples, tmp_path):
    class Bicubic(nn.Module):
        def forward(self, x):
            return nn.functional.interpolate(x, scale_factor=2, mode="bicubic")

    s = Session(Bicubic(), samples, preprocess=Preprocess.preset("unit", size=(8, 8)), task="image")
    with pytest.raises(ConversionError, match=r"op 'upsample_bicubic2d'.*Fix: .*mode='nearest'"):
        s.export("coreml", tmp_path / "b.mlpackage")
    assert not (tmp_path / "b.mlpackage").exists()
    report = s.check(("onnx", "coreml"), tmp_path / "r")
    assert report.formats["onnx"].passed and "upsample_bicubic2d" in report.formats["coreml"].error
    assert report.passed is False


@pytest.mark.parametrize("message, expected", [
    ("max_pool2d with ceil_mode=True is not supported", "ceil_mode=False"),
    ("Could not guard on data-dependent expression", "data-dependent control flow"),
    ("PyTorch convert function for op 'weird_op' not implemented.", "no rule for 'weird_op'"),
])
def test_diagnosis_of_known_failures(message, expected):
    error = conversion_error("Core ML", RuntimeError(message))
    assert expected in str(error) and isinstance(error, WorkbenchError)


def test_output_names_follow_dict_outputs(samples, tmp_path):
    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 2, 1)

        def forward(self, x):
            y = self.conv(x)
            return {"out": y, "aux": y * 2}

    torch.manual_seed(0)
    s = Session(Two().eval(), samples, preprocess=Preprocess.preset("unit", size=(8, 8)), task="segmentation")
    assert list(s.outputs) == ["out", "aux"]
    for fmt in ("onnx", "torchscript"):
        art = s.export(fmt, tmp_path / f"two.{fmt}")
        assert art.output_names == ("out", "aux")
        assert list(s.run(fmt)) == ["out", "aux"]
        assert s.compare(fmt, s.run(fmt)).passed


class Noisy(nn.Module):
    def forward(self, x):
        return x + torch.rand_like(x)


@pytest.mark.parametrize("fmt", ["torchscript", "coreml"])
def test_check_trace_is_torchs_own_check_and_can_be_skipped(samples, fmt):
    s = Session(Noisy(), samples, preprocess=Preprocess.preset("unit", size=(8, 8)), task="generic")
    checked = s.export(fmt)
    assert any("does not match" in n and "random" in n for n in checked.notes), checked.notes
    unchecked = s.export(fmt, check_trace=False)
    assert not any(n.startswith("trace warning") for n in unchecked.notes), unchecked.notes
    if fmt == "torchscript":  # without torch's check, the comparison on the sample images still catches it
        assert not s.compare(fmt, s.run(fmt)).passed


def test_skipping_the_check_keeps_the_control_flow_warning(samples):
    class Branchy(nn.Module):
        def forward(self, x):
            return x * 2 if x.mean() > 0 else x

    s = Session(Branchy(), samples, preprocess=Preprocess.preset("unit", size=(8, 8)), task="generic")
    art = s.export("torchscript", check_trace=False)
    assert any("data-dependent control flow" in n for n in art.notes)


def test_an_exception_inside_an_exporter_or_runner_is_a_result_not_a_crash(samples):
    """Not a WorkbenchError (a RuntimeError from torch.jit.save, an exporter's bug): the format fails with one
    line naming it and the cause, and the other formats go on."""

    class Swish(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * torch.sigmoid(x)

    class MemoryEfficientSwish(nn.Module):
        def forward(self, x):
            return Swish.apply(x)

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), MemoryEfficientSwish(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    s = Session(model, samples, preprocess=Preprocess.preset("unit", size=(16, 16)), task="generic")
    report = s.check(["torchscript", "onnx"])
    ts = report.formats["torchscript"]
    assert ts.passed is False and ts.error.startswith("TorchScript export failed: RuntimeError: ")
    assert "\n" not in ts.error and "Swish (called by MemoryEfficientSwish '1')" in ts.error
    assert "Traceback" in ts.traceback and "traceback" not in ts.to_dict()
    assert report.formats["onnx"].passed is True
