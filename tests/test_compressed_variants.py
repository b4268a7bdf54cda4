"""Compressed variants: every registered variant (Core ML, ONNX, and the Android formats': ExecuTorch, MNN,
LiteRT) built, run off macOS and compared with PyTorch on the sample images; calibration recorded and a
mis-calibration flagged; thresholds failing the CLI."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from workbench import formats
from workbench.preprocess import Preprocess
from workbench.session import Session
from workbench.tasks import ImageToImage
from workbench.zoo import SmallCNN, SuperResolutionNet

COREML = ["linear8", "linear8_block", "palettize8", "palettize6", "palettize4", "palettize2", "prune50", "int8"]
ONNX = ["int8_dynamic", "int8", "fp16"]
ANDROID = {"executorch": ["int8"], "mnn": ["int8_weights", "int4_weights"],
           "litert": ["int8_dynamic", "int8_weights", "int8"]}
VARIANTS = {"coreml": COREML, "onnx": ONNX, **ANDROID}

MODEL_PY = textwrap.dedent("""
    import torch
    from workbench.zoo import SmallCNN

    def build():
        torch.manual_seed(0)
        return SmallCNN(num_classes=4, width=4).eval()
""")


@pytest.fixture(scope="module")
def classifier(samples):
    torch.manual_seed(0)
    model = SmallCNN(num_classes=4, width=4).eval()
    return Session(model, samples, preprocess=Preprocess.preset("imagenet", size=(32, 32)), task="classification")


@pytest.fixture(scope="module")
def report(classifier, tmp_path_factory):
    return classifier.check(["onnx", "coreml"], tmp_path_factory.mktemp("variants"),
                            compress={"coreml": COREML, "onnx": ONNX})


@pytest.fixture(scope="module")
def android(samples, tmp_path_factory):
    """The Android formats and all their variants, built once (an ExecuTorch conversion is 10-60 s). The net
    is wider than `classifier` so that its weights, not the file's framing, make up most of each file."""
    torch.manual_seed(0)
    model = SmallCNN(num_classes=4, width=32).eval()
    session = Session(model, samples, preprocess=Preprocess.preset("imagenet", size=(32, 32)), task="classification")
    yield session.check(list(ANDROID), tmp_path_factory.mktemp("android"), compress=ANDROID)
    session.close()


@pytest.fixture
def report_of(request):
    """The report that built `fmt`'s variants."""
    return lambda fmt: request.getfixturevalue("android" if fmt in ANDROID else "report")


@pytest.fixture(scope="module")
def miscalibrated(classifier, tmp_path_factory):
    return classifier.check(["onnx", "coreml"], tmp_path_factory.mktemp("miscalibrated"),
                            compress={"coreml": ["int8"], "onnx": ["int8"]},
                            calibration_preprocess=Preprocess.preset("raw", size=(32, 32)))


def test_formats_declare_their_variants():
    declared = {n: list(f.variants) for n, f in formats.registry().items() if f.variants and n != "coreai"}
    assert declared == VARIANTS, "a variant missing here is not built by test_every_variant_runs_here..."
    assert "ncnn2table" in formats.get("ncnn").notes and "ncnn2int8" in formats.get("ncnn").notes, \
        "ncnn says why it has no int8"
    with pytest.raises(Exception, match="Core ML has no compressed variant 'int4'; its variants: linear8"):
        formats.get("coreml").check_variants(["int4"])


def test_every_declared_variant_resolves_to_a_function():
    for fmt in formats.registry().values():
        for name, ref in fmt.variants.items():
            assert callable(fmt._load(ref)), f"{fmt.name} variant {name}: {ref} is not a function"
    for fmt in ("coreml", "onnx", "executorch", "litert", "mnn"):
        calibrating = [v for v in formats.get(fmt).variants if formats.get(fmt).calibrates(v)]
        assert calibrating == ([] if fmt == "mnn" else ["int8"]), fmt


@pytest.mark.parametrize("fmt,variant", [(f, v) for f, names in VARIANTS.items() for v in names])
def test_every_variant_runs_here_and_reports_figures(report_of, fmt, variant):
    report = report_of(fmt)
    result = report.formats[fmt].variants[variant]
    assert result.error is None, result.error
    figures = result.to_dict()
    assert figures["passed"] is None, "a variant with no threshold reports figures only"
    assert figures["size_bytes"] > 0 and figures["size_ratio"] > 0
    assert np.isfinite(figures["max_abs"]) and figures["cosine"] > 0.9, figures
    assert 0 <= figures["top1_agreement"] <= 1
    assert (figures["calibration"] is not None) == (variant == "int8"), "only what calibrates records a calibration"
    assert result.artifact.path.exists() and result.artifact.path != report.formats[fmt].artifact.path
    assert report.passed, "variants without thresholds do not fail the check"


def test_weight_compression_makes_the_file_smaller(report):
    variants = report.formats["coreml"].variants
    for name in ("linear8", "linear8_block", "palettize4", "palettize2"):
        assert variants[name].size_ratio < 1, (name, variants[name].size_ratio)
    assert variants["palettize2"].size_bytes < variants["palettize4"].size_bytes
    assert report.formats["onnx"].variants["int8_dynamic"].size_ratio < 1


def test_android_variants_are_about_4x_smaller_and_agree(android):
    for fmt, names in ANDROID.items():
        for name in names:
            v = android.formats[fmt].variants[name]
            int4 = name.startswith("int4")
            assert v.size_ratio < (0.2 if int4 else 0.4), (fmt, name, v.size_ratio)
            figures = v.comparison.worst()
            assert figures["top1_agreement"] >= 7 / 8 and figures["psnr"] > (15 if int4 else 25), (fmt, name, figures)
    mnn = android.formats["mnn"].variants
    assert mnn["int4_weights"].comparison.worst()["psnr"] < mnn["int8_weights"].comparison.worst()["psnr"]


@pytest.mark.parametrize("fmt", ["executorch", "litert"])
def test_android_calibration_is_recorded_in_the_report_and_the_notes(android, fmt):
    result = android.formats[fmt].variants["int8"]
    assert result.calibration["images"] == android.images and result.calibration["warning"] is None
    assert result.calibration["preprocess"].startswith("imagenet: Normalize")
    assert f"calibrated on {len(android.images)} images ({', '.join(android.images)})" in result.artifact.notes[0]
    assert result.calibration["preprocess"] in result.artifact.notes[0]


def test_palettize2_is_worse_than_palettize8(report):
    v = report.formats["coreml"].variants
    p8, p2 = v["palettize8"].comparison.worst(), v["palettize2"].comparison.worst()
    assert p2["psnr"] < p8["psnr"] - 10, (p2["psnr"], p8["psnr"])
    assert p2["max_abs"] > p8["max_abs"]


@pytest.mark.parametrize("fmt", ["coreml", "onnx"])
def test_calibration_is_recorded_in_the_report_and_the_file(report, fmt):
    result = report.formats[fmt].variants["int8"]
    names = [i.name for i in report_images(report)]
    assert result.calibration["images"] == names
    assert result.calibration["preprocess"].startswith("imagenet: Normalize")
    assert result.calibration["warning"] is None
    meta = file_metadata(result.artifact.path)
    assert meta["workbench.compression"] == "int8"
    recorded = json.loads(meta["workbench.calibration"])
    assert recorded["images"] == names and recorded["preprocess_dict"]["name"] == "imagenet"


@pytest.mark.parametrize("fmt", ["coreml", "onnx"])
def test_a_miscalibrated_int8_is_flagged_and_worse(report, miscalibrated, fmt):
    good = report.formats[fmt].variants["int8"]
    bad = miscalibrated.formats[fmt].variants["int8"]
    warning = next(n for n in bad.artifact.notes if n.startswith("calibrated with"))
    assert "raw: x * [1, 1, 1]" in warning and "imagenet: Normalize" in warning, warning
    assert bad.calibration["warning"] == warning
    assert not any(n.startswith("calibrated with") for n in good.artifact.notes)
    g, b = good.comparison.worst(), bad.comparison.worst()
    assert b["psnr"] < g["psnr"] - 10 and b["max_abs"] > 5 * g["max_abs"], (g, b)


def test_thresholds_fail_a_variant_and_name_it(classifier, tmp_path):
    result = classifier.check(["coreml"], tmp_path, compress={"coreml": ["palettize2"]},
                              thresholds={"min_psnr": 40.0})
    variant = result.formats["coreml"].variants["palettize2"]
    assert variant.passed is False and not result.passed
    assert variant.failures[0].startswith("coreml palettize2: PSNR ") and "< min_psnr 40" in variant.failures[0]
    assert result.formats["coreml"].passed, "the uncompressed artifact is above 40 dB"


def test_unknown_variant_or_threshold_is_refused_before_any_work(classifier, tmp_path):
    with pytest.raises(Exception, match="ONNX has no compressed variant 'palettize4'; its variants: int8_dynamic"):
        classifier.check(["onnx"], tmp_path, compress={"onnx": ["palettize4"]})
    with pytest.raises(Exception, match="unknown threshold 'min_top5'"):
        classifier.check(["onnx"], tmp_path, thresholds={"min_top5": 0.5})
    assert not list(tmp_path.iterdir())


def test_an_image_model_reports_figures(samples, tmp_path):
    torch.manual_seed(0)
    model = SuperResolutionNet(upscale_factor=2).eval()
    session = Session(model, samples, preprocess=Preprocess.preset("gray", size=(16, 16)),
                      task=ImageToImage(output_range=(-1, 1)))
    report = session.check(["onnx", "coreml"], tmp_path,
                           compress={"coreml": ["palettize4", "int8"], "onnx": ["int8"]})
    for fmt, name in (("coreml", "palettize4"), ("coreml", "int8"), ("onnx", "int8")):
        v = report.formats[fmt].variants[name]
        assert v.error is None, v.error
        assert np.isfinite(v.comparison.worst()["psnr"]) and v.comparison.worst()["psnr"] > 15
    assert report.formats["coreml"].variants["palettize4"].size_ratio < 1


# -- the command line --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def model_py(tmp_path_factory):
    path = tmp_path_factory.mktemp("m") / "net.py"
    path.write_text(MODEL_PY)
    return f"{path}:build"


def run(*args):
    return subprocess.run([sys.executable, "-m", "workbench", *args], capture_output=True, text=True, timeout=600)


def test_cli_json_has_each_variant_under_its_format(model_py, samples, tmp_path):
    proc = run("check", model_py, "--images", str(samples), "--to", "onnx", "--compress",
               "coreml:palettize4,onnx:int8", "--preset", "imagenet", "--size", "32", "32", "--task",
               "classification", "--out", str(tmp_path), "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    p4 = doc["formats"]["coreml"]["variants"]["palettize4"]
    assert p4["size_ratio"] < 1 and p4["passed"] is None and p4["path"].endswith("build.palettize4.mlpackage")
    assert {"max_abs", "psnr", "cosine", "top1_agreement", "notes", "calibration", "error"} <= set(p4)
    assert doc["formats"]["onnx"]["variants"]["int8"]["calibration"]["images"] == doc["images"]


def test_cli_threshold_fails_with_exit_1_naming_the_variant(model_py, samples, tmp_path):
    proc = run("check", model_py, "--images", str(samples), "--to", "onnx", "--compress", "onnx:int8",
               "--preset", "imagenet", "--size", "32", "32", "--task", "classification", "--out", str(tmp_path),
               "--min-top1", "1.01")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "onnx int8: top-1 agreement 1 < min_top1 1.01" in proc.stdout
    lines = proc.stdout.splitlines()
    assert any(line.startswith("  int8 ") and "FAIL" in line for line in lines), proc.stdout


def test_cli_unknown_variant_is_a_usage_error_listing_them(model_py):
    proc = run("check", model_py, "--compress", "coreml:int4")
    assert proc.returncode == 2
    assert "unknown variant 'coreml:int4'" in proc.stderr and "coreml: linear8, linear8_block" in proc.stderr
    assert "onnx: int8_dynamic, int8, fp16" in proc.stderr


def report_images(report):
    return [type("Image", (), {"name": n}) for n in report.images]


def file_metadata(path) -> dict:
    if str(path).endswith(".onnx"):
        import onnx

        return {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    import coremltools as ct

    return dict(ct.models.MLModel(str(path), skip_model_load=True).user_defined_metadata)
