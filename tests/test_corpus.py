"""The corpus of bad inputs (issue 5): every case through the library and through `workbench check`.

Each case writes real files into tmp_path from code and returns how the library is called on them, the
`workbench check` arguments that reach the same code, and the regex that both the WorkbenchError and the
CLI's one error line must match: the thing involved and the fix. Cases the unit tests already cover in
more detail (tests/test_models.py, tests/test_images.py, tests/test_preprocess.py) are here once more so
that the CLI side of each is checked too; their builders are reused. Then what the table cannot hold: a
disk that fills during export, odd but valid images, bounded memory on a decompression bomb, and
property-based image loading.
"""

import errno
import functools
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from test_images import png_header

from conftest import SAMPLES, tiny_classifier
from workbench import Preprocess, WorkbenchError, load_images, load_model
from workbench.cli import main
from workbench.images import load_image
from workbench.session import Session
from workbench.tasks import read_labels

# A user's model definition file: factories that work, and each way a model can be wrong.
NET_PY = textwrap.dedent("""
    import torch
    from torch import nn


    class Net(nn.Module):
        def __init__(self, channels=3):
            super().__init__()
            self.conv = nn.Conv2d(channels, 4, 3, padding=1)
            self.fc = nn.Linear(4, 5)

        def forward(self, x):
            return self.fc(self.conv(x).mean((2, 3)))


    class Raises(nn.Module):
        def forward(self, x):
            raise ValueError("no branch for this input")


    class Text(nn.Module):
        def forward(self, x):
            return "cat"


    def make():
        torch.manual_seed(0)
        return Net()


    def gray():
        return Net(channels=1)


    def fixed_size():
        return nn.Sequential(nn.Conv2d(3, 2, 3, padding=1), nn.Flatten(), nn.Linear(2 * 32 * 32, 5))


    def broken():
        raise RuntimeError("needs a GPU")


    def forward_raises():
        return Raises()


    def returns_text():
        return Text()
""")


@dataclass(frozen=True)
class Call:
    """The library call and the `workbench check` arguments that meet the same bad input."""

    api: Callable[[], object]
    argv: list[str]


CASES: dict[str, tuple[Callable[[Path], Call], str]] = {}


def case(match: str):
    """Register a corpus case: a builder writing its files into a folder, and the regex its error matches."""

    def register(build):
        CASES[build.__name__] = (build, match)
        return build

    return register


def net(tmp: Path, factory: str = "make") -> str:
    path = tmp / "net.py"
    if not path.exists():
        path.write_text(NET_PY)
    return f"{path}:{factory}"


def model_file(path: Path, *cli) -> Call:
    return Call(lambda: load_model(path), ["check", str(path), *cli])


def session_of(model: str, *cli, **kw) -> Call:
    kw.setdefault("size", (32, 32))
    size = [str(v) for v in kw["size"]]
    return Call(lambda: Session(model, SAMPLES, **kw), ["check", model, "--size", *size, *cli])


def images_of(model: str, images: Path) -> Call:
    return Call(lambda: load_images(images), ["check", model, "--images", str(images), "--size", "32", "32"])


# -- real files to damage ------------------------------------------------------------------------------------
def onnx_bytes() -> bytes:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.linspace(-1, 1, 16, dtype=np.float32).reshape(4, 4), "W")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "W"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], [weight])
    model = helper.make_model(graph)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def onnx_with_external_data(path: Path, location: str) -> Path:
    """The ONNX model with its weight moved out to `location`, as onnx.save(..., save_as_external_data) does."""
    import onnx
    from onnx import TensorProto

    model = onnx.load_from_string(onnx_bytes())
    tensor = model.graph.initializer[0]
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    tensor.external_data.add(key="location", value=location)
    path.write_bytes(model.SerializeToString())
    return path


def coreml_models(folder: Path) -> tuple[Path, Path]:
    """A real ML program .mlpackage (its weights in weights/weight.bin) and a neural network .mlmodel."""
    import coremltools as ct
    from coremltools.converters.mil import Builder as mb

    from workbench.formats.base import quiet

    weight = np.linspace(-1, 1, 4 * 3 * 3 * 3, dtype=np.float32).reshape(4, 3, 3, 3)

    def program():
        @mb.program(input_specs=[mb.TensorSpec(shape=(1, 3, 8, 8))])
        def conv(x):
            return mb.conv(x=x, weight=weight, name="y")
        return conv

    with quiet("coremltools"):
        package, legacy = folder / "m.mlpackage", folder / "m.mlmodel"
        ct.convert(program(), convert_to="mlprogram").save(str(package))
        ct.convert(program(), convert_to="neuralnetwork").save(str(legacy))
    return package, legacy


_CONVERTED = tempfile.TemporaryDirectory(prefix="corpus-coreml-")  # removed at exit


@functools.cache
def converted_coreml() -> tuple[Path, Path]:
    return coreml_models(Path(_CONVERTED.name))


def coreml_copy(tmp: Path, kind: str) -> Path:
    """A fresh copy of the converted Core ML model of `kind` ("mlpackage" or "mlmodel") in `tmp`."""
    src = converted_coreml()[0 if kind == "mlpackage" else 1]
    dest = tmp / f"damaged.{kind}"
    (shutil.copytree if src.is_dir() else shutil.copy)(src, dest)
    return dest


WEIGHTS = "Data/com.apple.CoreML/weights"
SPEC = "Data/com.apple.CoreML/model.mlmodel"


def torchscript_bytes() -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # "torch.jit is deprecated": still what apps load
        torch.jit.save(torch.jit.trace(torch.nn.Linear(4, 2).eval(), torch.zeros(1, 4)), buffer)
    return buffer.getvalue()


# -- model files ---------------------------------------------------------------------------------------------
@case(r"model file .*ghost\.onnx does not exist \(relative to .*\); check the path")
def missing_onnx(tmp):
    return model_file(tmp / "ghost.onnx")


@case(r"model file .*ghost\.mlpackage does not exist \(relative to .*\); check the path")
def missing_mlpackage(tmp):
    return model_file(tmp / "ghost.mlpackage")


@case(r"empty\.onnx is empty \(0 bytes\); the download or save did not finish: get or export it again")
def empty_onnx(tmp):
    (tmp / "empty.onnx").write_bytes(b"")
    return model_file(tmp / "empty.onnx")


@case(r"empty\.mlmodel is empty \(0 bytes\).*export it again")
def empty_mlmodel(tmp):
    (tmp / "empty.mlmodel").write_bytes(b"")
    return model_file(tmp / "empty.mlmodel")


@case(r"empty\.pt is empty \(0 bytes\).*export it again")
def empty_pt(tmp):
    (tmp / "empty.pt").write_bytes(b"")
    return model_file(tmp / "empty.pt")


@case(r"half\.onnx is not a valid ONNX model \(truncated or corrupt\?\).*Download or export it again")
def truncated_onnx(tmp):
    data = onnx_bytes()
    (tmp / "half.onnx").write_bytes(data[: len(data) // 2])
    return model_file(tmp / "half.onnx")


@case(r"noise\.onnx is not a valid ONNX model.*Download or export it again")
def corrupt_onnx(tmp):
    (tmp / "noise.onnx").write_bytes(np.random.default_rng(0).bytes(4096))
    return model_file(tmp / "noise.onnx")


@case(r"m\.onnx: tensor 'W' keeps its data at '\.\./secret', outside the model's folder .*refused.*"
      r"Put the data file next to the model")
def onnx_data_outside_its_folder(tmp):
    (tmp / "secret").write_bytes(np.ones(16, np.float32).tobytes())  # exists: refused for where, not what
    (tmp / "model").mkdir()
    return model_file(onnx_with_external_data(tmp / "model" / "m.onnx", "../secret"))


@case(r"m\.onnx: tensor 'W' keeps its data at '/.*secret', outside the model's folder .*refused")
def onnx_data_at_an_absolute_path(tmp):
    (tmp / "secret").write_bytes(np.ones(16, np.float32).tobytes())
    (tmp / "model").mkdir()
    return model_file(onnx_with_external_data(tmp / "model" / "m.onnx", str(tmp / "secret")))


@case(r"m\.onnx: tensor 'W' keeps its data at 'link\.bin', outside the model's folder")
def onnx_data_through_a_symlink(tmp):
    (tmp / "secret").write_bytes(np.ones(16, np.float32).tobytes())
    (tmp / "model").mkdir()
    (tmp / "model" / "link.bin").symlink_to(tmp / "secret")
    return model_file(onnx_with_external_data(tmp / "model" / "m.onnx", "link.bin"))


@case(r"m\.onnx: tensor 'W' keeps its data in 'm\.onnx\.data', which is missing from .*; copy that file "
      r"next to the model, or download or export the model again")
def onnx_data_file_missing(tmp):
    return model_file(onnx_with_external_data(tmp / "m.onnx", "m.onnx.data"))


@case(r"damaged\.mlpackage has no Manifest\.json, so it is not a complete Core ML package; copy the whole "
      r"\.mlpackage folder again, or export it again")
def mlpackage_without_manifest(tmp):
    path = coreml_copy(tmp, "mlpackage")
    (path / "Manifest.json").unlink()
    return model_file(path)


@case(r"damaged\.mlpackage is missing Data/com\.apple\.CoreML/weights \(listed in its Manifest\.json\); "
      r"copy the whole \.mlpackage folder again")
def mlpackage_without_weights(tmp):
    path = coreml_copy(tmp, "mlpackage")
    shutil.rmtree(path / WEIGHTS)
    return model_file(path)


@case(r"damaged\.mlpackage is missing its weights Data/com\.apple\.CoreML/weights/weight\.bin; copy the "
      r"whole \.mlpackage folder again")
def mlpackage_without_weight_bin(tmp):
    path = coreml_copy(tmp, "mlpackage")
    (path / WEIGHTS / "weight.bin").unlink()
    return model_file(path)


@case(r"damaged\.mlpackage: its weights Data/com\.apple\.CoreML/weights/weight\.bin are truncated or damaged "
      r"\(the blob at offset 64 is not all there\); copy the whole \.mlpackage folder again")
def mlpackage_with_truncated_weights(tmp):
    path = coreml_copy(tmp, "mlpackage")
    blob = path / WEIGHTS / "weight.bin"
    blob.write_bytes(blob.read_bytes()[:-1])
    return model_file(path)


@case(r"damaged\.mlpackage/Data/com\.apple\.CoreML/model\.mlmodel is not a readable Core ML model "
      r"\(truncated or corrupt\?\).*Download or export it again")
def mlpackage_with_truncated_spec(tmp):
    path = coreml_copy(tmp, "mlpackage")
    spec = path / SPEC
    spec.write_bytes(spec.read_bytes()[:-40])
    return model_file(path)


@case(r"zipped\.mlpackage is a file, but a \.mlpackage is a folder \(a zipped download\?\); unzip it")
def mlpackage_that_is_a_zip(tmp):
    with zipfile.ZipFile(tmp / "zipped.mlpackage", "w") as z:
        z.writestr("Manifest.json", "{}")
    return model_file(tmp / "zipped.mlpackage")


@case(r"damaged\.mlmodel is not a readable Core ML model \(truncated or corrupt\?\).*Download or export it again")
def truncated_mlmodel(tmp):
    path = coreml_copy(tmp, "mlmodel")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return model_file(path)


@case(r"notes\.mlmodel is not a readable Core ML model \(truncated or corrupt\?\)")
def text_named_mlmodel(tmp):
    (tmp / "notes.mlmodel").write_text("input: image\noutput: label\n")
    return model_file(tmp / "notes.mlmodel")


@case(r"cut\.pt is not a readable PyTorch file \(truncated or corrupt\?\).*Save or download it again")
def truncated_torchscript(tmp):
    data = torchscript_bytes()
    (tmp / "cut.pt").write_bytes(data[: len(data) // 2])
    return model_file(tmp / "cut.pt")


@case(r"bad\.pt is a TorchScript archive that failed to load \(truncated or corrupt\?\).*Save or download it "
      r"again")
def corrupt_torchscript(tmp):
    good = zipfile.ZipFile(io.BytesIO(torchscript_bytes()))
    with zipfile.ZipFile(tmp / "bad.pt", "w") as bad:
        for item in good.infolist():
            data = good.read(item)
            bad.writestr(item, b"\x80\x02garbage" if item.filename.endswith("data.pkl") else data)
    return model_file(tmp / "bad.pt")


@case(r"cut\.pth is not a readable PyTorch file \(truncated or corrupt\?\)")
def truncated_state_dict(tmp):
    buffer = io.BytesIO()
    torch.save(torch.nn.Linear(4, 2).state_dict(), buffer)
    (tmp / "cut.pth").write_bytes(buffer.getvalue()[:200])
    return Call(lambda: load_model(tmp / "cut.pth", factory=net(tmp)),
                ["check", str(tmp / "cut.pth"), "--factory", net(tmp)])


@case(r"the weights in .*other\.pth do not fit Net: missing: fc\.bias, fc\.weight; unexpected: head\.bias, "
      r"head\.weight\. Check that the factory builds the architecture")
def state_dict_that_does_not_fit(tmp):
    state = load_model(net(tmp)).module.state_dict()
    state = {k.replace("fc.", "head."): v for k, v in state.items()}
    torch.save(state, tmp / "other.pth")
    return Call(lambda: load_model(net(tmp), weights=tmp / "other.pth"),
                ["check", net(tmp), "--weights", str(tmp / "other.pth")])


@case(r"the factory .*net\.py:broken raised RuntimeError: needs a GPU")
def factory_that_raises(tmp):
    return Call(lambda: load_model(net(tmp, "broken")), ["check", net(tmp, "broken")])


@case(r"forward\(\) failed on input \(1, 3, 32, 32\): ValueError: no branch for this input\. Check the input "
      r"size and channels")
def forward_that_raises(tmp):
    return session_of(net(tmp, "forward_raises"))


@case(r"output 'output' is a str; the workbench reads tensors, tuples and dicts of tensors: return those from "
      r"forward\(\)")
def forward_returning_text(tmp):
    return session_of(net(tmp, "returns_text"))


@case(r"forward\(\) failed on input \(1, 3, 32, 32\): RuntimeError: .*to have 1 channels.*Check the input size "
      r"and channels")
def wrong_channel_count(tmp):
    return session_of(net(tmp, "gray"))


@case(r"forward\(\) failed on input \(1, 3, 16, 16\): RuntimeError: mat1 and mat2 shapes cannot be multiplied"
      r".*Check the input size and channels")
def wrong_input_size(tmp):
    return session_of(net(tmp, "fixed_size"), size=(16, 16))


# -- images --------------------------------------------------------------------------------------------------
@case(r"notes\.jpg is not an image Pillow can read.*use JPEG or PNG")
def text_named_jpg(tmp):
    (tmp / "notes.jpg").write_text("label,score\ncat,0.9\n")
    return images_of(net(tmp), tmp / "notes.jpg")


@case(r"empty\.jpg is empty \(0 bytes\); replace it with a JPEG or PNG")
def zero_byte_image(tmp):
    (tmp / "empty.jpg").write_bytes(b"")
    return images_of(net(tmp), tmp / "empty.jpg")


@case(r"half\.jpg is damaged or truncated.*re-save or replace it")
def truncated_jpeg(tmp):
    data = (SAMPLES / "coffee.jpg").read_bytes()
    (tmp / "half.jpg").write_bytes(data[: len(data) // 2])
    return images_of(net(tmp), tmp / "half.jpg")


@case(r"bomb\.png is above the 64 megapixel limit.*downscale it first")
def image_of_20000x20000(tmp):
    return images_of(net(tmp), png_header(tmp / "bomb.png", 20000, 20000))


@case(r"no readable image in .*photos; add JPEG or PNG photos")
def empty_image_folder(tmp):
    (tmp / "photos").mkdir()
    return images_of(net(tmp), tmp / "photos")


@case(r"no readable image in .*photos \(skipped empty\.jpg \(image .* is empty \(0 bytes\).*\); notes\.png "
      r"\(.*not an image Pillow can read.*\)\); add JPEG or PNG photos")
def folder_of_unreadable_images(tmp):
    (tmp / "photos").mkdir()
    (tmp / "photos" / "empty.jpg").write_bytes(b"")
    (tmp / "photos" / "notes.png").write_text("not a picture")
    return images_of(net(tmp), tmp / "photos")


# -- settings ------------------------------------------------------------------------------------------------
@case(r"2 labels for a model with 5 classes \(output 'output' shape \(5,\)\); the labels file needs one line "
      r"per class")
def labels_that_do_not_fit(tmp):
    (tmp / "labels.txt").write_text("cat\ndog\n")
    return session_of(net(tmp), "--labels", str(tmp / "labels.txt"), labels=["cat", "dog"])


@case(r"labels file .*labels\.txt is empty; write one class name per line")
def empty_labels_file(tmp):
    (tmp / "labels.txt").write_text("\n\n")
    return Call(lambda: read_labels(tmp / "labels.txt"),
                ["check", net(tmp), "--labels", str(tmp / "labels.txt"), "--size", "32", "32"])


def normalize(tmp, std):
    """Normalize(0.5, std): scale is 1/(255 std), so std nan, 0 and inf give a NaN, infinite and zero scale."""
    return Call(lambda: Preprocess.from_normalize([0.5] * 3, std),
                ["check", net(tmp), "--mean", "0.5", "0.5", "0.5", "--std", *map(str, std), "--size", "32", "32"])


@case(r"std \[nan, 0\.5, 0\.5\] must be finite and non-zero.*training Normalize")
def nan_scale(tmp):
    return normalize(tmp, [float("nan"), 0.5, 0.5])


@case(r"std \[0\.5, 0, 0\.5\] must be finite and non-zero.*training Normalize")
def infinite_scale(tmp):
    return normalize(tmp, [0.5, 0.0, 0.5])


@case(r"std \[inf, inf, inf\] must be finite and non-zero.*training Normalize")
def zero_scale(tmp):
    return normalize(tmp, [float("inf")] * 3)


@case(r"cannot create the output folder .*blocker/out: .*; choose another folder")
def output_folder_that_cannot_be_written(tmp):
    (tmp / "blocker").write_text("a file where the output folder should be")
    out = tmp / "blocker" / "out"
    return Call(lambda: Session(net(tmp), SAMPLES, size=(32, 32)).export("onnx", out / "m.onnx"),
                ["check", net(tmp), "--size", "32", "32", "--to", "onnx", "--out", str(out)])


# -- the table, through both doors ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", CASES)
def test_library_raises_an_error_naming_the_thing_and_the_fix(name, tmp_path):
    build, match = CASES[name]
    call = build(tmp_path)
    with pytest.raises(WorkbenchError, match=match):
        call.api()


@pytest.mark.parametrize("name", CASES)
def test_cli_exits_2_with_one_line_naming_the_thing_and_the_fix(name, tmp_path, capsys):
    build, match = CASES[name]
    call = build(tmp_path)
    code = main(call.argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("workbench: error: ") and err.count("\n") == 1, err
    assert re.search(match, err), err


@pytest.mark.parametrize("name", ["mlpackage_without_manifest", "onnx_data_outside_its_folder", "truncated_jpeg"])
def test_cli_process_prints_one_line_and_no_traceback(name, tmp_path):
    build, match = CASES[name]
    call = build(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "workbench", *call.argv], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and re.search(match, lines[0]), proc.stderr
    assert "Traceback" not in proc.stderr


# -- a disk that fills during export -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def session():
    return Session(tiny_classifier(), SAMPLES, preprocess=Preprocess.preset("imagenet", size=(32, 32)),
                   task="classification", labels=["a", "b", "c", "d"])


def fill_the_disk(monkeypatch, room: int = 100):
    """Every file an export writes gets `room` bytes on disk, then ENOSPC, as a full disk does. Patched where
    the exporters' bytes reach a file: Path.write_bytes (ONNX, TorchScript) and shutil.copyfile (coremltools
    copies its finished .mlpackage into place)."""

    def full(data: bytes, dest) -> None:
        with open(dest, "wb") as f:
            f.write(data[:room])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dest))

    monkeypatch.setattr(Path, "write_bytes", lambda self, data: full(bytes(data), self))
    monkeypatch.setattr(shutil, "copyfile", lambda src, dst, **kw: full(Path(src).read_bytes(), dst))


def contents(path: Path):
    if path.is_dir():
        return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}
    return path.read_bytes()


@pytest.mark.parametrize("fmt, name", [("onnx", "m.onnx"), ("torchscript", "m.pt"), ("coreml", "m.mlpackage")])
def test_disk_that_fills_during_export_says_so_and_keeps_the_old_artifact(session, tmp_path, monkeypatch, fmt,
                                                                        name):
    dest = tmp_path / name
    session.export(fmt, dest)
    old = contents(dest)
    fill_the_disk(monkeypatch)

    with pytest.raises(WorkbenchError, match=rf"writing .*{re.escape(name)} failed: the disk is full \(.*No space "
                       r"left on device.*\); free some space or choose another output folder\. Nothing was "
                       r"replaced"):
        session.export(fmt, dest, overwrite=True)

    assert contents(dest) == old
    assert [p.name for p in tmp_path.iterdir()] == [name], "a partial file was left behind"


def test_cli_stops_on_a_full_disk_and_keeps_the_old_artifacts(tmp_path, monkeypatch, capsys):
    # The disk fills while exporting: bad input for the whole run (exit 2, one line naming the file and
    # the fix), and the artifacts of the last run stay whole.
    argv = ["check", net(tmp_path), "--size", "32", "32", "--to", "onnx,torchscript", "--out", str(tmp_path / "out"),
            "--json"]
    assert main(argv) == 0
    old = {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()}
    capsys.readouterr()
    fill_the_disk(monkeypatch)

    code = main(argv + ["--overwrite"])

    out, err = capsys.readouterr()
    assert code == 2 and out == "", out
    assert len(err.splitlines()) == 1 and "the disk is full" in err and "free some space" in err, err
    assert {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()} == old


# -- odd but valid images load, through both doors ------------------------------------------------------------
def odd_images(folder: Path) -> list[str]:
    """CMYK, 16-bit, palette, RGBA, grayscale, EXIF-rotated and animated images, and one broken file."""
    folder.mkdir()
    rgb = Image.fromarray(np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8))
    rgb.convert("CMYK").save(folder / "cmyk.jpg")
    Image.fromarray((np.arange(24 * 32, dtype=np.uint16) * 80).reshape(24, 32)).save(folder / "deep.png")
    rgb.convert("P").save(folder / "palette.png")
    rgb.convert("RGBA").save(folder / "rgba.png")
    rgb.convert("L").save(folder / "gray.png")
    exif = Image.Exif()
    exif[0x0112] = 6
    rgb.save(folder / "rotated.jpg", exif=exif)
    rgb.save(folder / "anim.gif", save_all=True, append_images=[rgb.rotate(90)], duration=50)
    (folder / "broken.png").write_bytes(b"")
    return ["anim", "cmyk", "deep", "gray", "palette", "rgba", "rotated"]


def test_odd_but_valid_images_load_and_the_cli_uses_them(tmp_path, capsys):
    names = odd_images(tmp_path / "photos")

    with pytest.warns(UserWarning, match=r"broken\.png \(image .* is empty"):
        images = load_images(tmp_path / "photos")
    assert [s.name for s in images] == names
    assert all(s.image.mode == "RGB" for s in images)
    assert {s.name: s.image.size for s in images}["rotated"] == (24, 32)  # upright: EXIF applied

    code = main(["check", net(tmp_path), "--images", str(tmp_path / "photos"), "--size", "32", "32",
                 "--to", "torchscript", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert json.loads(out)["images"] == names


# -- a decompression bomb is refused before it is decoded ------------------------------------------------------
@pytest.mark.parametrize("width, height", [(20000, 20000), (9000, 8000)])
def test_image_above_the_limit_is_refused_in_bounded_memory(tmp_path, width, height):
    path = png_header(tmp_path / "big.png", width, height)
    script = textwrap.dedent(f"""
        import resource
        from workbench.errors import WorkbenchError
        from workbench.images import load_image
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        try:
            load_image({str(path)!r})
        except WorkbenchError as exc:
            print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before, exc)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    grown, _, message = proc.stdout.partition(" ")
    assert re.search(r"big\.png .*limit.*downscale it first", message), proc.stdout + proc.stderr
    # Decoding would take width*height bytes at least (400 MB, 72 MB); ru_maxrss is KiB on Linux, bytes on macOS.
    kib = int(grown) / (1024 if sys.platform == "darwin" else 1)
    assert kib < 20 * 1024, f"loading grew the peak memory by {kib / 1024:.0f} MiB"


# -- property: any file gives an image or a WorkbenchError, nothing else ---------------------------------------
FORMATS = {"png": "PNG", "jpg": "JPEG", "gif": "GIF", "bmp": "BMP", "tif": "TIFF", "webp": "WEBP"}
# (mode, formats that store it): what cameras, scanners and editors write
MODES = [("1", "png bmp tif"), ("L", "png jpg gif bmp tif webp"), ("LA", "png tif"), ("P", "png gif bmp tif"),
         ("RGB", "png jpg bmp tif webp"), ("RGBA", "png tif webp"), ("CMYK", "jpg tif"), ("YCbCr", "jpg tif"),
         ("I;16", "png tif"), ("I", "tif"), ("F", "tif"), ("LAB", "tif")]


def image_of(mode: str, width: int, height: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    if mode == "I;16":
        return Image.fromarray(rng.integers(0, 65536, (height, width), dtype=np.uint16))
    if mode in ("I", "F"):
        return Image.fromarray(rng.integers(-5, 70000, (height, width)).astype("int32" if mode == "I" else "float32"))
    rgb = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    return rgb.convert(mode)


@st.composite
def image_files(draw):
    mode, suffixes = draw(st.sampled_from(MODES))
    suffix = draw(st.sampled_from(suffixes.split()))
    size = draw(st.integers(1, 48)), draw(st.integers(1, 48))
    return mode, suffix, size, draw(st.integers(0, 2**16))


def loads_or_refuses(path: Path):
    """load_image's contract: an upright 8-bit RGB image, or a WorkbenchError naming the file."""
    try:
        img = load_image(path)
    except WorkbenchError as exc:
        assert path.name in str(exc)
        return None
    assert img.mode == "RGB" and min(img.size) >= 1
    return img


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(image_files())
def test_property_any_mode_and_size_loads_as_rgb_of_that_size(spec):
    mode, suffix, size, seed = spec
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"x.{suffix}"
        image_of(mode, *size, seed).save(path, FORMATS[suffix])
        img = loads_or_refuses(path)
    assert img is not None, f"a valid {mode} {suffix} of {size} was refused"
    assert img.size == size


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow warns as it reads damaged TIFF tags
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(image_files(), st.data())
def test_property_damaged_image_files_give_an_image_or_a_workbench_error(spec, data):
    mode, suffix, size, seed = spec
    buffer = io.BytesIO()
    image_of(mode, *size, seed).save(buffer, FORMATS[suffix])
    raw = bytearray(buffer.getvalue())
    cut = data.draw(st.integers(0, len(raw)), label="cut")
    flips = data.draw(st.lists(st.tuples(st.integers(0, len(raw) - 1), st.integers(0, 255)), max_size=8),
                      label="flips")
    for at, value in flips:
        raw[at] = value
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"damaged.{suffix}"
        path.write_bytes(bytes(raw[:cut] if data.draw(st.booleans(), label="truncate") else raw))
        loads_or_refuses(path)


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow warns as it reads damaged TIFF tags
@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=4096), st.sampled_from(sorted(FORMATS)))
def test_property_random_bytes_give_an_image_or_a_workbench_error(payload, suffix):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"random.{suffix}"
        path.write_bytes(payload)
        loads_or_refuses(path)
