"""Core AI: exported by Apple's coreai-torch, run by Apple's Core AI runtime (its Linux build), compared op by op
by Apple's comparator, compressed by Apple's coreai-opt in the tools env; its files checked when loaded."""

import contextlib
import dataclasses
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from formatkit import (
    FP32,
    SAMPLES,
    recording_convert,
    session_fixture,
    spread,
    super_resolution_session,
    tiny_classifier,
    watched,
    watched_export,
)

from workbench import Preprocess, WorkbenchError, formats, load_model
from workbench.formats.common import tools_env as tools
from workbench.formats.coreai import compress
from workbench.formats.coreai.files import files
from workbench.formats.coreai.floor import floor
from workbench.formats.coreai.graph import netron_file, program_text
from workbench.formats.coreai.validate import HASH, PROGRAM, metadata
from workbench.session import Session
from workbench.zoo import SmallCNN

FP16 = 1e-2  # of the reference's range
VARIANTS = ["int8_weights", "int4_weights", "palettize8", "palettize4"]


session = session_fixture()


@pytest.fixture(scope="module")
def baked(session, tmp_path_factory):
    """One export with the session's preprocessing inside, watched for processes and connections."""
    artifact, events = watched_export(session, "coreai", tmp_path_factory.mktemp("baked") / "m.aimodel")
    return artifact, events


@pytest.fixture(scope="module")
def half(tmp_path_factory):
    """An fp16 export of a labelled 3-class classifier."""
    s = Session(tiny_classifier(num_classes=3), SAMPLES, preprocess=Preprocess.preset("imagenet", size=(32, 32)),
                task="classification", labels=["cat", "dog", "bird"])
    artifact = s.export("coreai", tmp_path_factory.mktemp("half") / "h.aimodel", precision="fp16")
    yield s, artifact
    s.close()


def test_baked_export_matches_pytorch_and_refuses_another_preprocessing(session, baked):
    artifact, _ = baked
    assert artifact.format == "coreai" and artifact.precision == "fp32"
    assert artifact.preprocess == session.training_preprocess
    assert sorted(p.name for p in artifact.path.iterdir()) == ["main.hash", "main.mlirb", "metadata.json"]
    outputs = session.run("coreai")
    assert session.compare("coreai", outputs).passed
    assert spread(session, outputs) <= FP32, f"Core AI fp32 off by {spread(session, outputs):.2e} of the range"
    assert session.runner("coreai").label.startswith("Core AI 1.0.0b3 (Apple's runtime")
    with pytest.raises(WorkbenchError, match="preprocessing built in .*re-export it"):
        session.run("coreai", Preprocess.preset("half", size=(48, 48)))


def test_the_preprocessing_in_the_graph_is_applied_to_the_pixels(session, baked):
    """The asset takes 0-255 pixels and normalizes them itself: its output on raw pixels is the model's on the
    normalized tensor, and far from the model's on the raw pixels."""
    runner = session.runner("coreai")
    pixels = session.pixels[:2].astype(np.float32)
    got = np.concatenate([runner.call(pixels[i:i + 1])[0] for i in range(2)])
    with torch.no_grad():
        normalized = session.model.module(torch.from_numpy(session.training_preprocess.apply(pixels))).numpy()
        raw = session.model.module(torch.from_numpy(pixels)).numpy()
    np.testing.assert_allclose(got, normalized, atol=1e-4 * np.ptp(normalized))
    assert np.abs(got - raw).max() > 100 * np.abs(got - normalized).max()
    assert "preprocessing in the graph" in " ".join(baked[0].notes)


def test_the_asset_is_compiled_once_per_runner_not_per_call(session, baked):
    runner = session.runner("coreai")
    session.run("coreai")
    session.run("coreai")
    assert runner.active and runner.compiles == 1


def test_live_export_takes_the_tensor_and_the_preprocessing_given_at_run(session, tmp_path):
    live = Session(tiny_classifier(), SAMPLES, preprocess=session.training_preprocess, task="classification")
    artifact = live.export("coreai", tmp_path / "live.aimodel", bake=False)
    assert artifact.preprocess is None and "preprocess" not in json.dumps(metadata(artifact.path))
    assert spread(live, live.run("coreai", session.training_preprocess)) <= FP32
    with pytest.raises(WorkbenchError, match="takes the model's input tensor"):
        live.run("coreai")
    live.close()


def test_labels_preprocessing_and_precision_are_in_the_metadata(session, baked, half):
    meta = metadata(baked[0].path)
    assert json.loads(meta["workbench.preprocess"])["name"] == "imagenet"
    assert meta["workbench.precision"] == "fp32" and meta["workbench.task"] == "classification"
    assert meta["workbench.source"] == session.model.source
    assert metadata(half[1].path)["workbench.labels"] == ["cat", "dog", "bird"]


def test_fp16_is_a_labelled_choice_within_the_fp16_tolerance(half):
    s, artifact = half
    assert artifact.precision == "fp16"
    assert any(n.startswith("fp16: weights and compute in Float16") for n in artifact.notes)
    assert metadata(artifact.path)["workbench.precision"] == "fp16"
    outputs = s.run("coreai")
    assert s.runner("coreai").label.endswith("(fp16)")
    assert s.compare("coreai", outputs).passed  # against fp16's tolerance
    off = spread(s, outputs)
    assert 1e-6 < off <= FP16, f"fp16 off by {off:.2e}: above fp16's tolerance, or not fp16 at all"
    with pytest.raises(WorkbenchError, match="Core AI export option precision='int8': choose one of fp32, fp16"):
        s.export("coreai", Path(artifact.path).with_name("x.aimodel"), precision="int8")


def test_export_and_run_open_no_connection_and_start_no_process(session, baked):
    _, events = baked
    assert events == [], events
    fresh = formats.runner_for(baked[0])
    try:
        _, events = watched(fresh.run, session.pixels)
    finally:
        fresh.deactivate()
    assert events == [], events


OFFLINE_SCRIPT = """
import sys
from pathlib import Path

import torch

from workbench import Preprocess
from workbench.session import Session
from workbench.zoo import SmallCNN

torch.manual_seed(0)
s = Session(SmallCNN(num_classes=4, width=4).eval(), sys.argv[2], preprocess=Preprocess.preset("imagenet",
            size=(24, 24)), task="classification")
s.export("coreai", Path(sys.argv[1]) / "m.aimodel")
print("parity", s.compare("coreai", s.run("coreai")).passed, "diverges", s.locate("coreai").first is not None)
"""


@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace to see the native runtime's system calls")
def test_conversion_runtime_and_comparator_send_nothing_off_the_machine_even_from_native_code(tmp_path):
    """Apple's converter, runtime and comparator are native code (C++, Swift) that Python's audit hooks do not
    see: the kernel's view instead. A fresh process exports, runs and locates under strace (every thread): no
    connection but the C library's local name-service socket, no datagram to an address, no program started but
    the C library's ldconfig (ctypes' library lookup)."""
    import os
    import sys

    (tmp_path / "offline.py").write_text(OFFLINE_SCRIPT)
    log = tmp_path / "strace.log"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.run(["strace", "-f", "-qq", "-e", "trace=connect,sendto,sendmsg,execve", "-o", str(log),
                           sys.executable, str(tmp_path / "offline.py"), str(tmp_path), str(SAMPLES)],
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "parity True diverges False" in proc.stdout, proc.stdout
    calls = [line.split(None, 1)[1] for line in log.read_text().splitlines() if " " in line]
    connects = [c for c in calls if c.startswith("connect(")]
    assert all('sa_family=AF_UNIX, sun_path="/var/run/nscd/socket"' in c for c in connects), connects
    sent = [c for c in calls if c.startswith(("sendto(", "sendmsg(")) and "resumed" not in c]
    assert all(", NULL, 0)" in c for c in sent if c.startswith("sendto(")), sent  # on a connected local socket
    assert not [c for c in sent if c.startswith("sendmsg(") and "msg_name=NULL" not in c and "msg_namelen=0" not in c]
    started = [c.split('"')[1] for c in calls if c.startswith("execve(")]
    assert started[0] == sys.executable and set(map(os.path.basename, started[1:])) <= {"ldconfig"}, started


# -- files ------------------------------------------------------------------------------------------------
def test_a_truncated_program_is_refused_when_loaded_and_when_run(session, baked, tmp_path):
    artifact, _ = baked
    assert load_model(str(artifact.path)).kind == "coreai" and formats.for_file(artifact.path) is formats.get("coreai")
    cut = tmp_path / "cut.aimodel"
    cut.mkdir()
    for f in artifact.path.iterdir():
        (cut / f.name).write_bytes(f.read_bytes())
    (cut / PROGRAM).write_bytes((artifact.path / PROGRAM).read_bytes()[:-200])
    with pytest.raises(WorkbenchError, match=r"cut\.aimodel/main\.mlirb is truncated or damaged: its SHA-256"):
        load_model(str(cut))
    with pytest.raises(WorkbenchError, match=re.escape(cut.name)):
        formats.runner_for(dataclasses.replace(artifact, path=cut)).run(session.pixels)


def test_foreign_or_incomplete_assets_are_refused_naming_what_is_wrong(baked, tmp_path):
    artifact, _ = baked
    (tmp_path / "zip.aimodel").write_bytes(b"PK\x03\x04 a zipped download")
    with pytest.raises(WorkbenchError, match=r"zip\.aimodel is a file, but a Core AI \.aimodel is a folder"):
        load_model(str(tmp_path / "zip.aimodel"))
    other = tmp_path / "other.aimodel"
    other.mkdir()
    (other / "Manifest.json").write_text("{}")  # an .mlpackage renamed
    with pytest.raises(WorkbenchError, match=r"other\.aimodel has no main\.mlirb \(it holds Manifest\.json\)"):
        load_model(str(other))
    (other / PROGRAM).write_bytes(b"\x08\x01junk that is not bytecode")
    with pytest.raises(WorkbenchError, match="is not MLIR bytecode"):
        load_model(str(other))
    # bytes with the bytecode signature and a matching hash: Apple's reader is the last word
    import hashlib

    junk = b"ML\xefR" + bytes(range(200))
    (other / PROGRAM).write_bytes(junk)
    (other / HASH).write_bytes(hashlib.sha256(junk).digest())
    (other / "metadata.json").write_text((artifact.path / "metadata.json").read_text())
    with pytest.raises(WorkbenchError, match=r"Core AI cannot read .*other\.aimodel \(truncated or corrupt\?\)"):
        load_model(str(other))
    (other / "metadata.json").write_text("{not json")
    with pytest.raises(WorkbenchError, match=r"metadata\.json is damaged"):
        load_model(str(other))


def test_an_existing_asset_is_kept_unless_overwrite(session, baked):
    with pytest.raises(WorkbenchError, match="already exists; pass overwrite=True"):
        formats.export(session.spec(), "coreai", baked[0].path)
    assert not list(baked[0].path.parent.glob(".*partial*"))


# -- the hooks: files, graph view, floor ----------------------------------------------------------------------
def test_files_are_the_folder_whatever_the_options(baked):
    path = baked[0].path
    assert files(path) == [path] == files(path, {"precision": "fp16"})  # its contents are inside it: sizes sum it


def test_the_format_declares_its_hooks_where_the_contract_has_them(baked):
    fmt = formats.get("coreai")
    assert (fmt.files, fmt.netron, fmt.floor) == (".files:files", ".graph:netron_file", ".floor:floor")
    assert fmt.export_options[0].flag == "--precision" and fmt.export_options[0].panel
    assert fmt.artifact_files(baked[0].path) == [baked[0].path]
    assert fmt.size_on_disk(baked[0].path) == sum(p.stat().st_size for p in baked[0].path.iterdir())
    with pytest.raises(WorkbenchError, match="Netron 9.3.3 cannot read a Core AI program"):
        fmt.graph_file(baked[0].path)


def test_netron_cannot_read_the_program_so_the_graph_is_its_text(baked, tmp_path):
    path = baked[0].path
    with pytest.raises(WorkbenchError, match=r"Netron 9\.3\.3 cannot read a Core AI program .*program_text"):
        netron_file(path)
    with pytest.raises(WorkbenchError, match=r"missing\.aimodel does not exist"):
        netron_file(tmp_path / "missing.aimodel")
    text = program_text(path)
    assert text.startswith("module {") and "coreai.graph @main" in text and 'coreai.name = "image"' in text
    assert "coreai.conv" in text or "coreai.convolution" in text, text[:2000]
    assert len(text) < 20_000 and "{-#" not in text  # weights elided: the program, not its bytes


NETRON_MLIR = """
import * as fs from 'fs';
import * as base from './base.js';
import * as text from './text.js';
import { ModelFactory } from './mlir.js';
const file = process.argv[2];
const data = new Uint8Array(fs.readFileSync(file));
const stream = new base.BinaryStream(data);
const context = {
  identifier: file.split('/').pop(), stream, type: null,
  set(type) { this.type = type; return type; },
  async read(kind) {
    stream.seek(0);
    if (kind === 'text') return text.Reader.open(stream, 0x10000);
    if (kind === 'text.decoder') return text.Decoder.open(stream);
    return base.BinaryReader.open(data);
  },
  async asset(name) { return fs.readFileSync(name, 'utf-8'); },
};
const factory = new ModelFactory();
try {
  console.log('match', await factory.match(context));
  const model = await factory.open(context);
  console.log('opened', model.format);
} catch (e) { console.log('error', e.message); }
"""


@pytest.mark.skipif(shutil.which("node") is None, reason="needs Node.js to run Netron's own MLIR reader")
def test_netrons_own_mlir_reader_refuses_the_program_and_its_text(baked, tmp_path):
    """What netron_file says, checked with the pinned Netron's reader itself (mlir.js, run in Node)."""
    import netron

    here = Path(netron.__file__).parent
    for name in ("mlir.js", "base.js", "text.js", "mlir-metadata.json"):
        shutil.copy(here / name, tmp_path / name)
    (tmp_path / "package.json").write_text('{"type": "module"}')
    (tmp_path / "read.mjs").write_text(NETRON_MLIR)
    (tmp_path / "main.mlir").write_text(program_text(baked[0].path))
    said = {}
    for file in (baked[0].path / PROGRAM, tmp_path / "main.mlir"):
        said[file.suffix] = subprocess.run(["node", "read.mjs", str(file)], cwd=tmp_path, capture_output=True,
                                           text=True, timeout=60).stdout.split("\n")
    assert said[".mlirb"][:2] == ["match mlir.binary", "error Dialect 'aicode' is unknown."], said
    assert said[".mlir"][0] == "match mlir.text" and "Unsupported dialect 'coreai'" in said[".mlir"][1], said


def test_the_floor_is_the_bare_runtime_on_preprocessed_inputs(session, baked):
    artifact, _ = baked
    inputs = session.runner("coreai").inputs(session.pixels, None)
    with contextlib.ExitStack() as stack:
        call = floor(artifact, inputs, session.pixels, stack)
        results = call()
        assert call.runner.active and call.runner.compiles == 1
    assert not call.runner.active  # the stack closed it
    got = np.concatenate([r[artifact.output_names[0]].numpy() for r in results])
    np.testing.assert_allclose(got, session.run("coreai")[artifact.output_names[0]], rtol=0, atol=0)


# -- the locator -------------------------------------------------------------------------------------------
def test_the_locator_is_the_formats_and_finds_nothing_in_a_good_export(session, baked):
    divergence = session.locate(fmt="coreai")
    assert divergence.first is None and divergence.matched >= 5 and divergence.total > divergence.matched
    assert "none diverges beyond tolerance" in divergence.describe()


def test_the_locator_names_a_broken_layer_its_module_and_source_line(monkeypatch, tmp_path):
    """A converter bug made on purpose: the ReLU of module features.6 lowered as abs. Apple's comparator, through
    the locator, names that op, its module and the line of the model's forward that calls it."""
    from coreai._compiler.dialects import coreai as ops
    from coreai_torch import _aten_to_core as lowering

    relu = lowering._aten_to_core_resolver["relu.default"]

    def broken(values_map, node, loc):
        stack = list((node.meta.get("nn_module_stack") or {}).values())
        if stack and stack[-1][0].endswith("features.6"):
            return ops.abs_(lowering._get_operand(values_map, node, 0))
        return relu(values_map, node, loc)

    monkeypatch.setitem(lowering._aten_to_core_resolver, "relu.default", broken)
    s = Session(tiny_classifier(), SAMPLES, preprocess=Preprocess.preset("imagenet", size=(24, 24)),
                task="classification")
    report = s.check(["coreai"], tmp_path)
    result = report.formats["coreai"]
    assert result.error is None and not result.passed
    d = s.locate(fmt="coreai")
    assert d.first.torch == "features.6" and d.first.op == "aten.relu.default"
    assert re.search(r"workbench/zoo\.py:\d+ in forward: return self\.classifier", d.first.source), d.first.source
    assert "coreai.abs" in d.first.output and d.first.error > d.first.limit
    assert d.last_good.torch == "features.3"  # the max pool before it agreed
    assert "first divergence at op" in result.divergence and "(PyTorch 'features.6')" in result.divergence
    s.close()


def test_the_locator_needs_the_program_of_this_session(session, baked):
    loaded = dataclasses.replace(baked[0], traced=None)
    with pytest.raises(WorkbenchError, match="was not exported in this session"):
        formats.get("coreai").locate(loaded, session.runner("coreai"), session.pixels[:1])


# -- the command line ----------------------------------------------------------------------------------------
NET_PY = """
import torch
from torch import nn

def build():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(8, 5))
"""


def test_check_from_the_shell_reports_core_ml_beside_core_ai(tmp_path):
    """`workbench check ... --to coreml,coreai` as a user runs it: a real subprocess, both formats in its JSON,
    --precision reaching both, the table naming Apple's runtime."""
    import sys

    (tmp_path / "net.py").write_text(NET_PY)
    common = [sys.executable, "-m", "workbench", "check", f"{tmp_path / 'net.py'}:build", "--images", str(SAMPLES),
              "--preset", "imagenet", "--size", "32", "32", "--to", "coreml,coreai", "--out", str(tmp_path / "out")]
    proc = subprocess.run([*common, "--precision", "fp32", "--json"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["passed"] is True and list(doc["formats"]) == ["coreml", "coreai"]
    coreai = doc["formats"]["coreai"]
    assert coreai["passed"] is True and coreai["precision"] == doc["formats"]["coreml"]["precision"] == "fp32"
    assert coreai["runtime"].startswith("Core AI 1.0.0b3 (Apple's runtime, Linux)"), coreai["runtime"]
    assert coreai["path"].endswith("build.aimodel") and (Path(coreai["path"]) / PROGRAM).is_file()
    assert coreai["top1_agreement"] == 1.0 and coreai["cosine"] > 0.999999, coreai
    assert "ODIE" not in proc.stderr  # the runtime's own line stays out of the CLI's output
    table = subprocess.run([*common, "--overwrite"], capture_output=True, text=True, timeout=600)
    assert table.returncode == 0, table.stderr
    row = next(line for line in table.stdout.splitlines() if line.startswith("coreai"))
    assert row.split()[1] == "PASS" and "ran on: Core AI 1.0.0b3" in table.stdout


# -- compressed variants -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def variants(tmp_path_factory):
    """Every variant of one export, built in the tools env (its warm converter started here, once) and measured
    by Session.check. The net is wide enough that its weights, not the file's framing, make up the file."""
    for worker, _ in tools._warm.values():
        worker.close()
    tools._warm.clear()
    torch.manual_seed(0)
    s = Session(SmallCNN(num_classes=4, width=32).eval(), SAMPLES,
                preprocess=Preprocess.preset("imagenet", size=(32, 32)), task="classification")
    with pytest.MonkeyPatch.context() as mp:
        results = recording_convert(compress, mp)
        report, events = watched(s.check, ["coreai"], tmp_path_factory.mktemp("variants"),
                                 compress={"coreai": VARIANTS})
    yield s, report, events, results
    s.close()


def test_formats_declare_the_core_ai_variants():
    fmt = formats.get("coreai")
    assert list(fmt.variants) == VARIANTS and not any(fmt.calibrates(v) for v in VARIANTS)


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_variant_runs_here_and_reports_figures(variants, variant):
    s, report, _, _ = variants
    result = report.formats["coreai"].variants[variant]
    assert result.error is None, result.error
    figures = result.to_dict()
    assert figures["passed"] is None and figures["calibration"] is None
    bits = 4 if variant.endswith("4") or variant.startswith("int4") else 8
    assert figures["size_ratio"] < (0.2 if bits == 4 else 0.35), figures["size_ratio"]
    worst = result.comparison.worst()
    assert worst["top1_agreement"] >= 7 / 8 and worst["psnr"] > (15 if bits == 4 else 25), worst
    assert metadata(result.artifact.path)["workbench.compression"] == variant
    assert result.artifact.traced is None and result.artifact.notes[0].startswith(f"{variant}: ")
    assert load_model(str(result.artifact.path)).kind == "coreai"


def test_fewer_bits_cost_more(variants):
    worst = {v: variants[1].formats["coreai"].variants[v].comparison.worst()["psnr"] for v in VARIANTS}
    assert worst["int4_weights"] < worst["int8_weights"] and worst["palettize4"] < worst["palettize8"], worst


def test_compression_runs_offline_in_the_tools_env_only(variants):
    _, _, events, results = variants
    assert [e for e, _ in events] == ["subprocess.Popen"], events  # the tools env's warm converter, once
    command = events[0][1]
    assert Path(command[0]) == tools.tools_python() and Path(command[3]).name == "_compress.py"
    assert len(results) == len(VARIANTS) and all(r["network"] == [] for r in results), results
    # there, only local tools: ctypes' library lookup (ldconfig) and a CPU probe at import (lscpu); no pip, no
    # compiler (coreai-opt's k-means would build itself; coremltools' prebuilt one is loaded instead)
    spawned = {Path(s.split(" ", 1)[1].strip("'")).name for r in results for s in r["spawned"]}
    assert spawned <= {"ldconfig", "lscpu"}, results[-1]["spawned"]


# -- the notebooks' models -----------------------------------------------------------------------------------
def test_super_resolution_grayscale_image_to_image(tmp_path):
    s = super_resolution_session(32)
    s.export("coreai", tmp_path / "sr.aimodel")
    outputs = s.run("coreai")
    assert outputs["output"].shape == s.outputs["output"].shape == (len(s.images), 1, 96, 96)
    assert spread(s, outputs) <= FP32
    s.close()


@pytest.mark.slow
def test_deeplabv3_matches_pytorch_at_fp32_pixel_for_pixel(tmp_path):
    """DeepLabV3 (mobilenet_v3_large, random weights, 128x128, one image): export about 11 s, 4 s per image in
    Apple's Linux runtime here."""
    from test_android_models import IMAGES, deeplab

    s = Session(deeplab(), IMAGES[:1], size=(128, 128))
    result = s.check(["coreai"], tmp_path).formats["coreai"]
    assert result.error is None and result.passed, result.error or result.comparison.failures
    worst = result.comparison.worst()
    assert worst["pixel_agreement"] >= 0.9999 and worst["miou"] >= 0.999, worst
    assert spread(s, s.run("coreai")) <= FP32
    s.close()
