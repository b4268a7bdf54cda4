"""The streaming dataset check (workbench/dataset/) on a generated ImageFolder of a few hundred 32x32 photos:
accuracy against the folders' labels, skipped images, a SIGKILLed run resumed, the Ray engine against the
local one (with nothing leaving the machine), and the CLI end to end."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from workbench.dataset import open_source
from workbench.errors import WorkbenchError
from workbench.images import fit_image, load_image
from workbench.preprocess import Preprocess
from workbench.session import Session

ROOT = Path(__file__).resolve().parents[1]
LABELS = ["cat", "dog", "bird", "fish"]
N = 240
# A classifier whose class follows the photo's colour (red, green, blue or grey), so classes vary across the
# photos; WORKBENCH_TEST_SLOW makes PyTorch's forward slow enough to kill a run mid-way.
NET_PY = textwrap.dedent("""
    import os, time
    import torch
    from torch import nn

    class ColourNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 3, padding=1)
            self.fc = nn.Linear(3, 4)
            with torch.no_grad():
                self.conv.weight.zero_()
                for c in range(3):
                    self.conv.weight[c, c, 1, 1] = 1.0
                self.conv.bias.zero_()
                self.fc.weight.copy_(torch.tensor([[4.0, 0, 0], [0, 4.0, 0], [0, 0, 4.0], [1.5, 1.5, 1.5]]))
                self.fc.bias.zero_()

        def forward(self, x):
            slow = os.environ.get("WORKBENCH_TEST_SLOW")
            if slow and not torch.jit.is_tracing() and not torch.compiler.is_compiling():
                time.sleep(0.03)
            return self.fc(torch.relu(self.conv(x)).mean((2, 3)))

    def build():
        return ColourNet().eval()
""")


def make_imagefolder(root: Path, n: int, classes=LABELS) -> Path:
    photos = [Image.open(p).convert("RGB") for p in sorted((ROOT / "sample_images").glob("*.jpg"))]
    for i in range(n):
        img = photos[i % len(photos)]
        w, h = img.size
        s = min(w, h) // (2 + i % 3)
        x, y = (i * 37) % (w - s), (i * 53) % (h - s)
        crop = img.crop((x, y, x + s, y + s)).resize((32, 32))
        if i % 2:
            crop = ImageOps.mirror(crop)
        folder = root / classes[i % len(classes)]
        folder.mkdir(parents=True, exist_ok=True)
        crop.save(folder / f"img_{i:05d}.jpg", quality=90)
    return root


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    base = tmp_path_factory.mktemp("dataset")
    root = make_imagefolder(base / "val", N)
    (root / "cat" / "zz_truncated.jpg").write_bytes((root / "cat" / "img_00000.jpg").read_bytes()[:200])
    (base / "labels.txt").write_text("\n".join(LABELS) + "\n")
    (base / "net.py").write_text(NET_PY)
    return base


@pytest.fixture(scope="module")
def session(data):
    samples = sorted((data / "val" / "dog").glob("*.jpg"))[:4]
    s = Session(f"{data / 'net.py'}:build", samples, preprocess=Preprocess.preset("imagenet"), labels=LABELS,
                size=(32, 32))
    yield s
    s.close()


@pytest.fixture(scope="module")
def result(session, data):
    return session.check_dataset(data / "val", ["onnx", "torchscript"], data / "run", batch_size=16, progress=False)


def test_ground_truth_accuracy_equals_a_hand_computation(result, session, data):
    model = session.model.module
    pre = session.training_preprocess
    correct: dict[str, list[bool]] = {c: [] for c in LABELS}
    for folder in sorted((data / "val").iterdir()):
        for path in sorted(folder.glob("*.jpg")):
            if path.name.startswith("zz_"):
                continue
            pixels = fit_image(load_image(path), (32, 32)).transpose(2, 0, 1)[None].astype(np.float32)
            with torch.no_grad():
                predicted = int(model(torch.from_numpy(pre.apply(pixels))).argmax())
            correct[folder.name].append(LABELS[predicted] == folder.name)
    overall = np.mean([c for v in correct.values() for c in v])
    acc = result.accuracy()
    assert acc["pytorch"]["images"] == N
    assert acc["pytorch"]["overall"] == pytest.approx(overall, abs=1e-12)
    for name, hits in correct.items():
        assert acc["pytorch"]["per_class"][name]["accuracy"] == pytest.approx(np.mean(hits), abs=1e-12)
    assert 0.05 < overall < 0.95  # the classes vary: the figure can tell a right answer from a wrong one
    for fmt in ("onnx", "torchscript"):
        s = result.summary(fmt)
        assert s["checked"] == N and s["within_tolerance"] == N and s["failed"] == 0
        assert s["top1_agreement"]["mean"] == 1.0 and s["accuracy"]["difference"] == 0.0
        assert result.flips(fmt) == []
    assert result.passed
    rows = result.table()
    assert [r["candidate"] for r in rows] == ["onnx", "torchscript"] and rows[0]["accuracy"] == overall
    frame = result.to_pandas()
    assert len(frame) == 2 * N and set(frame["label"]) == set(LABELS)
    worst = result.worst(3, "onnx")
    assert len(worst) == 3 and worst[0]["psnr"] <= worst[-1]["psnr"]
    png = result.pictures["onnx"]
    assert png.exists() and Image.open(png).size[0] > 100


def test_a_truncated_image_is_skipped_and_named(result):
    assert [name for name, _ in result.skipped] == ["cat/zz_truncated"]
    assert "damaged or truncated" in result.skipped[0][1] or "cannot" in result.skipped[0][1]
    assert "cat/zz_truncated" in result.render()


def test_folders_that_match_no_label_are_named(tmp_path):
    make_imagefolder(tmp_path, 8, classes=["cat", "zebra", "Dog", "okapi"])
    with pytest.raises(WorkbenchError, match=r"2 of the 4 class folders .* match no label of the model: okapi, zebra"):
        open_source(tmp_path, labels=LABELS)
    src = open_source(tmp_path, labels=LABELS, labels_from_folders=False)  # agreement only
    assert src.kind == "tree" and len(src) == 8 and all(i.label is None for i in src.items)
    assert [i.name for i in open_source(tmp_path, labels_from_folders=False, every=3, limit=2).items] == \
        [i.name for i in src.items[::3][:2]]


RUN_PY = textwrap.dedent("""
    import json, sys
    from workbench.preprocess import Preprocess
    from workbench.session import Session
    data, out, resume = sys.argv[1], sys.argv[2], sys.argv[3] == "resume"
    from pathlib import Path
    samples = sorted((Path(data) / "val" / "dog").glob("*.jpg"))[:4]
    s = Session(f"{data}/net.py:build", samples, preprocess=Preprocess.preset("imagenet"),
                labels=["cat", "dog", "bird", "fish"], size=(32, 32))
    r = s.check_dataset(f"{data}/val", ["onnx", "torchscript"], out, batch_size=8, resume=resume, progress=False)
    print(json.dumps({"computed": r.computed, "images": len(r.images)}))
""")


def test_a_run_killed_mid_way_resumes_with_nothing_computed_twice_or_lost(result, data, tmp_path):
    script = tmp_path / "run.py"
    script.write_text(RUN_PY)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WORKBENCH_TEST_SLOW": "1"}
    proc = subprocess.Popen([sys.executable, str(script), str(data), str(out), "fresh"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    store = out / "dataset.sqlite"
    done, deadline = 0, time.monotonic() + 120
    while done < 40 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
        if store.exists():
            try:
                with sqlite3.connect(store, timeout=5) as db:
                    done = db.execute("SELECT count(*) FROM images").fetchone()[0]
            except sqlite3.OperationalError:
                pass
    assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with sqlite3.connect(store) as db:
        before = db.execute("SELECT count(*) FROM images").fetchone()[0]
        kept = db.execute("SELECT count(*) FROM results").fetchone()[0]
    assert 40 <= before < N + 1 and kept <= 2 * before  # whole batches only: each image's rows with it
    env.pop("WORKBENCH_TEST_SLOW")
    again = subprocess.run([sys.executable, str(script), str(data), str(out), "resume"], env=env,
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    doc = json.loads(again.stdout.strip().splitlines()[-1])
    assert doc == {"computed": N + 1 - before, "images": N + 1}  # the rest, once each; every image there
    with sqlite3.connect(store) as db:
        rows = db.execute("SELECT i.name, r.candidate, r.max_abs, r.psnr, r.figure, r.cand_class FROM results r "
                          "JOIN images i USING (idx) ORDER BY i.name, r.candidate").fetchall()
    whole = sorted((r["image"], c, r["max_abs"], r["psnr"], r["figure"], r["cand_class"])
                   for c in result.candidates for r in result.rows[c])
    assert [r[:2] for r in rows] == [w[:2] for w in whole]
    for got, want in zip(rows, whole):
        assert got[4:] == want[4:], got
        assert got[2] == pytest.approx(want[2], abs=1e-6), got


@pytest.fixture(scope="module")
def ray_cluster():
    pytest.importorskip("ray", reason="pip install 'workbench[ray]'")
    from workbench.dataset.engines import start_ray

    ray, started = start_ray()
    yield ray
    if started:
        ray.shutdown()


def _own_addresses():
    import psutil

    return {a.address for addrs in psutil.net_if_addrs().values() for a in addrs} | {"127.0.0.1", "::1"}


def test_the_ray_engine_agrees_with_the_local_one_and_nothing_leaves_the_machine(ray_cluster, result, session, data,
                                                                                   tmp_path):
    import psutil

    from workbench.dataset.run import check_dataset

    src = open_source(data / "val", labels=LABELS, limit=64)
    local = check_dataset(session, src, ["onnx", "torchscript"], tmp_path / "local", report=result.report,
                          progress=False)
    remote = check_dataset(session, src, ["onnx", "torchscript"], tmp_path / "ray", report=result.report,
                           engine="ray", progress=False)
    assert remote.engine == "ray" and remote.computed == 64
    a = local.to_pandas().sort_values(["candidate", "image"]).reset_index(drop=True)
    b = remote.to_pandas().sort_values(["candidate", "image"]).reset_index(drop=True)
    assert list(a["image"]) == list(b["image"]) and list(a["format_class"]) == list(b["format_class"])
    np.testing.assert_allclose(a["max_abs"], b["max_abs"], atol=1e-6)
    assert local.accuracy() == remote.accuracy() and local.table() == remote.table()
    # privacy: usage statistics off, no dashboard, and every connection of Ray's processes stays on this machine
    from ray._common.usage import usage_lib

    assert not usage_lib.usage_stats_enabled()
    own = _own_addresses()
    children = psutil.Process().children(recursive=True)
    assert children, "Ray's processes are children of this one"
    for p in children:
        try:
            line = " ".join(p.cmdline())
            # Ray's dashboard process stays (it collects the cluster's state) but serves no web page
            assert "dashboard.py" not in line or "--disable-frontend" in line, line
            remote_ips = {c.raddr.ip.removeprefix("::ffff:") for c in p.net_connections(kind="inet") if c.raddr}
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        assert remote_ips <= own, (p.cmdline()[:3], remote_ips - own)


def test_cli_streams_an_imagefolder_with_json(data, tmp_path):
    cmd = [sys.executable, "-m", "workbench", "check", f"{data / 'net.py'}:build", "--images", str(data / "val"),
           "--labels", str(data / "labels.txt"), "--preset", "imagenet", "--size", "32", "32",
           "--to", "onnx,torchscript", "--every", "2", "--out", str(tmp_path / "out"), "--json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads(proc.stdout)
    assert doc["images"] == (N + 1 + 1) // 2 and doc["ground_truth"] is True and doc["passed"] is True
    assert set(doc["candidates"]) == {"onnx", "torchscript"}
    onnx = doc["candidates"]["onnx"]
    assert onnx["checked"] == onnx["within_tolerance"] and onnx["accuracy"]["difference"] == 0.0
    assert Path(onnx["picture"]).exists() and Path(doc["store"]).exists()
    assert "img/s" in proc.stderr  # the progress bar, with its rate, on stderr also under --json
    bad = make_imagefolder(tmp_path / "bad", 4, classes=["cat", "zebra"])
    proc = subprocess.run(cmd[:6] + [str(bad)] + cmd[7:-1], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0, proc.stderr
    assert "match no label of the model: zebra" in proc.stderr and "Traceback" not in proc.stderr
