"""`workbench check` as users run it: a real subprocess, exit codes 0/1/2, --json figures."""

import json
import subprocess
import sys
import textwrap

import pytest

MODEL_PY = textwrap.dedent("""
    import torch
    from torch import nn

    def build():
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1),
                             nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5))
""")


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "workbench", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=600)


@pytest.fixture(scope="module")
def model_py(tmp_path_factory):
    path = tmp_path_factory.mktemp("m") / "net.py"
    path.write_text(MODEL_PY)
    return f"{path}:build"


def test_check_passes_with_json_figures(model_py, tmp_path, samples):
    proc = run("check", model_py, "--images", str(samples), "--to", "onnx,coreml,torchscript",
               "--preset", "imagenet", "--size", "32", "32", "--out", str(tmp_path), "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["passed"] is True
    onnx = doc["formats"]["onnx"]
    assert onnx["passed"] is True and onnx["max_abs"] <= 1e-4 * 1 + 1e-3
    assert {"max_abs", "mean_abs", "psnr", "cosine", "top1_agreement", "path"} <= set(onnx)
    assert onnx["top1_agreement"] == 1.0
    coreml = doc["formats"]["coreml"]
    # named after the model's factory function, not its file (net.py)
    assert (tmp_path / "build.mlpackage").is_dir() and coreml["path"].endswith("build.mlpackage")
    if sys.platform != "darwin":  # the Core ML interpreter runs the saved package
        assert coreml["passed"] is True and coreml["runtime"] == "Core ML interpreter (ML program, fp16)"
        assert coreml["top1_agreement"] == 1.0


def test_check_prints_a_table(model_py, samples):
    proc = run("check", model_py, "--images", str(samples), "--to", "onnx,torchscript", "--mean", "0.5", "0.5", "0.5",
               "--std", "0.5", "0.5", "0.5", "--size", "32", "32")
    assert proc.returncode == 0, proc.stderr
    assert "onnx        PASS" in proc.stdout and "parity: PASS" in proc.stdout


def test_parity_failure_exits_1(model_py, samples):
    # A zero tolerance: ONNX Runtime's float rounding differs from PyTorch's, so parity must fail.
    proc = run("check", model_py, "--images", str(samples), "--to", "onnx", "--preset", "unit", "--size", "32", "32",
               "--rtol", "0", "--json")
    assert proc.returncode == 1, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["passed"] is False and doc["formats"]["onnx"]["max_abs"] > 0
    assert "max abs" in doc["formats"]["onnx"]["failures"][0]


@pytest.mark.parametrize("args, message", [
    (["check", "missing.pt"], "missing.pt does not exist"),
    (["check", "torchvision:not_a_model", "--weights", "none"], "torchvision has no model 'not_a_model'"),
    (["check", "torchvision:resnet18", "--weights", "none", "--mean", "0.5"], "--mean needs --std"),
    (["check", "torchvision:resnet18", "--weights", "none", "--preset", "nope"], "unknown preset 'nope'"),
    (["check", "torchvision:resnet18", "--weights", "none", "--images", "/nonexistent"], "does not exist"),
    (["check"], "the following arguments are required: model"),
    (["frobnicate"], "invalid choice"),
])
def test_bad_input_exits_2_with_one_line(args, message):
    proc = run(*args)
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.startswith("workbench: error")]
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_labels_that_do_not_fit_the_model_exit_2(model_py, samples, tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("cat\ndog\n")
    proc = run("check", model_py, "--images", str(samples), "--labels", str(labels), "--size", "32", "32")
    assert proc.returncode == 2 and "2 labels for a model with 5 classes" in proc.stderr


@pytest.mark.slow
def test_mobilenet_v2_random_weights_reports_parity_offline(tmp_path):
    proc = run("check", "torchvision:mobilenet_v2", "--weights", "none", "--to", "onnx,coreml,torchscript",
               "--preset", "imagenet", "--out", str(tmp_path), "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert any("random weights" in n for n in doc["notes"])
    for fmt in ("onnx", "torchscript"):
        assert doc["formats"][fmt]["passed"] is True and doc["formats"][fmt]["top1_agreement"] == 1.0
    assert (tmp_path / "mobilenet_v2.mlpackage").is_dir()


def test_progress_goes_to_stderr_also_under_json(model_py, samples, monkeypatch):
    monkeypatch.setenv("WORKBENCH_PROGRESS_AFTER", "0")  # every step, however quick (by default: those of 5 s+)
    proc = run("check", model_py, "--images", str(samples), "--to", "torchscript", "--preset", "unit",
               "--size", "32", "32", "--json")
    assert proc.returncode == 0, proc.stderr
    json.loads(proc.stdout)  # stdout stays one JSON document
    steps = [line for line in proc.stderr.splitlines() if line.startswith("workbench: ")]
    assert any(s.startswith("workbench: exporting torchscript ... (") for s in steps), proc.stderr
    assert any(s.startswith("workbench: running torchscript ... (") for s in steps), proc.stderr
    assert steps[-1].startswith("workbench: done in ")


def test_a_long_step_is_reported_again():
    import io

    from workbench.cli import Progress

    out = io.StringIO()
    progress = Progress(out, every=0.0, after=0.0)  # every beat finds the step "long"
    progress.close()  # no background heartbeat: beat by hand
    progress("onnx", "export")
    progress.beat()
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("workbench: exporting onnx ... (")
    assert lines[1].startswith("workbench: still exporting onnx, ")


def test_a_shared_flag_reaches_every_chosen_format_that_has_it(model_py, tmp_path, samples, capsys):
    """--precision is each format's own option: it once reached Core ML only (`--precision fp16 --to mnn` was
    silently ignored). In process: main() as the console script calls it."""
    from workbench.cli import main

    common = [model_py, "--images", str(samples), "--preset", "unit", "--size", "32", "32", "--json"]
    code = main(["check", *common, "--to", "onnx,mnn", "--precision", "fp16", "--out", str(tmp_path)])
    doc = json.loads(capsys.readouterr().out)
    assert code in (0, 1) and doc["formats"]["mnn"]["precision"] == "fp16"
    assert doc["formats"]["onnx"]["precision"] == "fp32"
    assert "--precision fp16: applied to MNN; ONNX has no such option" in doc["notes"]
    assert main(["check", *common, "--to", "onnx,torchscript", "--precision", "fp16"]) == 2
    from workbench import formats

    having = [f.title for f in formats.registry().values() if any(o.flag == "--precision" for o in f.export_options)]
    assert having[:2] == ["Core ML", "Core AI"] and "MNN" in having  # every registered format with the flag
    assert f"--precision applies to {', '.join(having)}; none of them is checked" in capsys.readouterr().err


# A detector's eval forward as Ultralytics' YOLOv8 gives it: (predictions, {side outputs, one a list}); and a
# factory that prints its model summary, from Python and from C (fd 1), as model packages do.
SIDE_OUTPUT_PY = textwrap.dedent("""
    import os

    import torch
    from torch import nn

    class Head(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.conv = nn.Conv2d(3, 6, 3, stride=4)

        def forward(self, x):
            y = self.conv(x)
            return y.flatten(2), {"boxes": y[:, :4], "feats": [y, y]}

    def build():
        print("Head summary: 1 layer, 168 parameters")
        os.write(1, b"native: a line from C\\n")
        return Head()
""")

SWISH_PY = textwrap.dedent("""
    import torch
    from torch import nn

    class SwishImplementation(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * torch.sigmoid(x)

        @staticmethod
        def backward(ctx, grad):
            (x,) = ctx.saved_tensors
            s = torch.sigmoid(x)
            return grad * s * (1 + x * (1 - s))

    class MemoryEfficientSwish(nn.Module):
        def forward(self, x):
            return SwishImplementation.apply(x)

    def build():
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), MemoryEfficientSwish(), nn.AdaptiveAvgPool2d(1),
                             nn.Flatten(), nn.Linear(8, 5))
""")


def test_output_chooses_before_a_side_output_is_read_and_prints_stay_off_the_json(samples, tmp_path):
    """`--output 0` on a model whose output 1 is a dict holding a list once exited 2 ("output 'output_1' is a
    dict"); and the factory's summary landed on stdout before the JSON."""
    path = tmp_path / "head.py"
    path.write_text(SIDE_OUTPUT_PY)
    proc = run("check", f"{path}:build", "--images", str(samples), "--to", "onnx", "--size", "32", "32",
               "--output", "0", "--task", "generic", "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)  # the JSON alone: the prints went to stderr
    assert "Head summary" in proc.stderr and "native: a line from C" in proc.stderr
    assert any("output 'output_1' is a dict, not a tensor: left out" in n for n in doc["notes"]), doc["notes"]
    assert doc["formats"]["onnx"]["passed"] is True
    proc = run("check", f"{path}:build", "--images", str(samples), "--to", "onnx", "--size", "32", "32",
               "--output", "1")
    assert proc.returncode == 2 and "output 'output_1' is a dict, not a tensor" in proc.stderr, proc.stderr


def test_an_exporter_exception_is_one_line_naming_the_autograd_function(samples, tmp_path):
    """TorchScript cannot save a custom autograd.Function: once a 60-line traceback; now one line naming the
    format, the Function, the module calling it and the fix; the traceback only with --debug."""
    path = tmp_path / "swish.py"
    path.write_text(SWISH_PY)
    common = ["check", f"{path}:build", "--images", str(samples), "--to", "torchscript", "--size", "32", "32"]
    proc = run(*common)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    line = next(li for li in proc.stdout.splitlines() if "TorchScript export failed" in li)
    assert "RuntimeError: Could not export Python function call 'SwishImplementation'" in line
    assert "SwishImplementation (called by MemoryEfficientSwish '1')" in line and "x * torch.sigmoid(x)" in line
    proc = run(*common, "--debug")
    assert proc.returncode == 1 and "Traceback" in proc.stderr and "torch.jit.save" in proc.stderr


def test_what_a_factory_prints_stays_off_the_json(samples, tmp_path, capfd):
    """Ultralytics prints a model summary as it builds a model: under --json it once came before the JSON on
    stdout. Both what Python prints and what C writes to file descriptor 1 go to stderr now."""
    from workbench.cli import main

    path = tmp_path / "printing.py"
    path.write_text(MODEL_PY + textwrap.dedent("""
        def loud():
            import os
            print("Model summary: 4 layers")
            os.write(1, b"native: a line from C\\n")
            return build()
    """))
    code = main(["check", f"{path}:loud", "--images", str(samples), "--to", "torchscript", "--size", "32", "32",
                 "--json"])
    out, err = capfd.readouterr()
    assert code == 0 and json.loads(out)["passed"] is True, out
    assert "Model summary: 4 layers" in err and "native: a line from C" in err
