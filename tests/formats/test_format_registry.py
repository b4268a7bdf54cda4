"""The format registry: every format declares its parts, and a new format appears everywhere by itself."""

import importlib
import json
import sys
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from conftest import SAMPLES, tiny_classifier
from workbench import Preprocess, WorkbenchError, formats
from workbench.formats import Format

HERE = Path(__file__).parent


@pytest.mark.parametrize("name", sorted(formats.registry()))
def test_every_format_declares_its_exporter_runner_validator_and_has_a_test_file(name):
    fmt = formats.get(name)
    for part in ("exporter", "runner", "validator") + (("locator",) if fmt.locator else ()):
        assert callable(fmt._load(getattr(fmt, part))), f"{name}: {part} {getattr(fmt, part)!r} does not resolve"
    assert fmt.suffixes and all(s.startswith(".") for s in fmt.suffixes)
    assert fmt.default_precision in fmt.precisions
    assert fmt.title and fmt.runtime
    assert (HERE / f"test_{name}.py").is_file(), f"format {name!r} has no tests/formats/test_{name}.py"


def test_format_folders_import_nothing_heavy():
    """Declarations are read at start-up: a format's runtime loads only when it is used."""
    import subprocess
    import sys

    code = ("import sys, workbench.formats as f; heavy = f.modules(); print(len(heavy)); "
            "print([m for m in heavy if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    declared, loaded = out.split("\n", 1)
    assert int(declared) >= 8 and loaded.strip() == "[]"  # every format's converter or runtime (Format.modules)


def test_registering_a_name_twice_is_refused():
    fmt = formats.get("onnx")
    with pytest.raises(RuntimeError, match="registered twice"):
        formats.register(Format(name="onnx", title="x", runtime="x", suffixes=(".x",), package="x"))
    assert formats.get("onnx") is fmt


def test_unknown_names_and_options_are_refused_with_what_exists():
    with pytest.raises(WorkbenchError, match="unknown format 'onyx'; choose from onnx, coreml, torchscript"):
        formats.get("onyx")
    with pytest.raises(WorkbenchError, match="Core ML has no export option 'precison'; its options: target"):
        formats.get("coreml").check_export_options({"precison": "fp32"})
    with pytest.raises(WorkbenchError, match="compute_precision='fp8': choose one of"):
        formats.get("coreml").check_runtime_options({"compute_precision": "fp8"})


# -- a format that exists only in a temporary folder: it must appear everywhere, with no other file changed ------
COPY_FORMAT = {
    "__init__.py": """
from workbench.formats import Format, Option, register

FORMAT = register(Format(
    name="copy", title="Copy", runtime="copy runtime", suffixes=(".copy",), package=__name__,
    exporter=".parts:export", runner=".parts:runner", validator=".parts:validate", files=".parts:files",
    netron=".parts:netron", floor=".parts:floor", bench=".parts:bench", order=99,
    export_options=(Option("level", 1, "how hard to copy", (1, 2), flag="--level", panel=True),),
    runtime_options=(Option("threads", 1, "copy threads", flag="--threads"),)))
""",
    "parts.py": """
# A TorchScript file inside a folder NAME.copy, and a sidecar NAME.copy.json beside it: two files on disk.
import dataclasses
import json
from pathlib import Path

from workbench.files import atomic_output
from workbench.formats import get


def files(path, options=None):
    return [path, path.with_name(path.name + ".json")]


def netron(path):
    return path / "model.pt"


def export(spec, path, *, level=1, overwrite=False):
    folder, sidecar = files(path)
    with atomic_output(folder, overwrite=overwrite) as tmp:
        tmp.mkdir()
        inner = get("torchscript").export(spec, tmp / "model.pt")
    with atomic_output(sidecar, overwrite=overwrite) as tmp:
        tmp.write_text(json.dumps({"level": level}))
    return dataclasses.replace(inner, format="copy", path=folder)


def runner(artifact, threads=1):
    inner = get("torchscript").make_runner(dataclasses.replace(artifact, format="torchscript",
                                                               path=artifact.path / "model.pt"))
    inner.label = f"copy runtime ({threads} threads)"
    return inner


def validate(path):
    return get("torchscript").validate(path / "model.pt")


def floor(artifact, x, pixels=None, stack=None):
    import torch

    module = torch.jit.load(str(artifact.path / "model.pt"))
    return lambda: module(torch.from_numpy(x))


def bench(settings):
    return [{"section": "b", "case": "copy", "what": f"copied, quick={settings.quick}"}], []
""",
}


@pytest.fixture
def copy_format(tmp_path_factory, monkeypatch):
    """A format package written to a temporary folder and imported: nothing in the workbench names it."""
    root = tmp_path_factory.mktemp("plugin")
    (root / "wbcopy").mkdir()
    for name, text in COPY_FORMAT.items():
        (root / "wbcopy" / name).write_text(text.lstrip())
    monkeypatch.syspath_prepend(str(root))
    fmt = importlib.import_module("wbcopy").FORMAT
    yield fmt
    formats.unregister("copy")
    for name in [m for m in sys.modules if m == "wbcopy" or m.startswith("wbcopy.")]:
        del sys.modules[name]


def test_a_format_in_a_folder_of_its_own_appears_in_the_cli(copy_format, tmp_path, capsys):
    from workbench.cli import main

    with pytest.raises(SystemExit):
        main(["check", "--help"])
    assert "--level" in capsys.readouterr().out.replace("\n", " ")  # its flag, with its help
    assert main(["check", "x", "--to", "help"]) == 2
    assert "copy (Copy, .copy)" in capsys.readouterr().err
    assert main(["check", "x", "--to", ""]) == 2  # no format at all is a usage error, not a parity FAIL
    err = capsys.readouterr().err
    assert "--to names no format; the registered formats are: onnx (ONNX, .onnx)" in err and err.count("\n") == 1
    assert main(["check", "x", "--to", "onnx,onyx"]) == 2
    assert "unknown format 'onyx'" in capsys.readouterr().err
    model = tmp_path / "net.py"
    model.write_text("from workbench.zoo import SmallCNN\n"
                     "def make():\n    import torch; torch.manual_seed(0); return SmallCNN(num_classes=3, width=4)\n")
    common = [f"{model}:make", "--images", str(SAMPLES), "--size", "16", "16", "--preset", "unit", "--task",
              "classification", "--json"]
    assert main(["check", *common, "--to", "onnx", "--level", "2"]) == 2  # a flag no chosen format takes
    assert "--level applies to Copy; none of them is checked (--to onnx)" in capsys.readouterr().err
    code = main(["check", *common, "--to", "onnx,copy", "--out", str(tmp_path / "out"), "--level", "2",
                 "--threads", "3"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and report["formats"]["copy"]["passed"] is True
    written = Path(report["formats"]["copy"]["path"])
    assert written.suffix == ".copy" and written.is_dir()
    assert json.loads(written.with_name(written.name + ".json").read_text()) == {"level": 2}  # the flag reached it
    assert report["formats"]["copy"]["runtime"] == "copy runtime (3 threads)"  # a shared flag reaches each format
    assert "--level 2: applied to Copy; ONNX has no such option" in report["notes"]


def test_a_format_in_a_folder_of_its_own_appears_in_the_widget_sizes_graph_and_bench(copy_format, tmp_path):
    from bench.android import android
    from workbench import Workbench
    from workbench.graph import GraphServer, model_file

    w = Workbench(tiny_classifier(), SAMPLES, preprocess=Preprocess.preset("unit", size=(16, 16)),
                  task="classification", formats=("onnx", "copy"))
    try:
        assert w.status["copy"] == "ok" and w.comparison["copy"].passed
        assert "Copy" in w.shown()["metrics"] and "Copy" in [label for label, _ in w.control("graph").options]
        assert w.control("export:copy").value and w.control("live:copy").value
        # Export: its panel option, shown while it is ticked; its two files written and checked for clashes
        assert w.export_options()["copy"] == {"level": 1}
        w.control("export:onnx").value = False
        w.control("folder").value = str(tmp_path / "out")
        w._export_option_controls["copy"]["level"].value = 2
        w.control("export").click()
        folder = tmp_path / "out" / f"{w.session.name}.copy"
        sidecar = folder.with_name(folder.name + ".json")
        assert folder.is_dir() and json.loads(sidecar.read_text()) == {"level": 2}, w.shown()["errors"]
        (folder / "model.pt").rename(tmp_path / "aside.pt")
        import shutil

        shutil.rmtree(folder)  # the sidecar alone stays: Export must still refuse to replace it
        w.control("export").click()
        assert f"{sidecar} already exists" in w.shown()["written"] and not folder.exists()
        w.control("export:copy").value = False
        assert w._export_option_rows["copy"].layout.display == "none"
        # sizes: both files; the graph: the file the format names inside its folder
        artifact = w.live.artifacts["copy"]
        sidecar = artifact.path.with_name(artifact.path.name + ".json")
        size = (artifact.path / "model.pt").stat().st_size + sidecar.stat().st_size
        assert formats.size_on_disk(artifact.path) == size
        assert model_file(artifact.path) == artifact.path / "model.pt"
        with GraphServer() as server:  # Netron is served the file its format names
            page = urllib.parse.unquote(urllib.parse.unquote(server.page(artifact.path).removeprefix("?url=")))
            with urllib.request.urlopen(server.local_url() + page, timeout=10) as served:
                assert page.endswith("/model.pt") and served.read() == (artifact.path / "model.pt").read_bytes()
        # the bench: its bare call, and the non-default section takes it
        x = w.preprocess.apply(w.session.pixels)
        assert copy_format.bare_call(artifact, x)() is not None and "copy" in android()
        from bench.common import Settings
        from bench.formats import benches

        assert benches()["copy"](Settings.make(True, tmp_path)) == (
            [{"section": "b", "case": "copy", "what": "copied, quick=True"}], [])
    finally:
        w.close()
