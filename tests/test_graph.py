"""Netron servers: loopback only, free ports, several at once, none outlives its Graph or the interpreter."""

import socket
import subprocess
import sys
import textwrap
import urllib.request

import pytest
import torch

from workbench import WorkbenchError
from workbench.graph import Graph, model_file


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("g") / "tiny.onnx"
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU())
    torch.onnx.export(model, (torch.rand(1, 3, 8, 8),), str(path), dynamo=False, input_names=["image"])
    return path


def non_loopback_address():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))  # no packet is sent: this only picks the outgoing interface
            return s.getsockname()[0]
        except OSError:
            return None


def test_several_servers_on_loopback_then_stopped(onnx_file):
    graphs = [Graph(onnx_file) for _ in range(3)]
    try:
        assert len({g.port for g in graphs}) == 3
        for g in graphs:
            assert g.address[0] == "127.0.0.1"
            assert urllib.request.urlopen(g.local_url, timeout=10).status == 200
        other = non_loopback_address()
        if other and not other.startswith("127."):
            with pytest.raises(OSError):
                socket.create_connection((other, graphs[0].port), timeout=2)
    finally:
        for g in graphs:
            g.close()
    for g in graphs:
        assert not g.alive
        with pytest.raises(OSError):
            urllib.request.urlopen(g.local_url, timeout=2)


def test_no_server_outlives_the_interpreter(onnx_file):
    script = textwrap.dedent(f"""
        from workbench.graph import Graph
        g = Graph({str(onnx_file)!r})
        print(g.port, flush=True)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    port = int(proc.stdout.strip())
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2)


def test_missing_or_wrong_files_are_clear_errors(tmp_path):
    with pytest.raises(WorkbenchError, match="does not exist"):
        model_file(tmp_path / "nope.onnx")
    (tmp_path / "x.mlpackage").mkdir()
    with pytest.raises(WorkbenchError, match="model.mlmodel"):
        model_file(tmp_path / "x.mlpackage")


def test_proxy_prefix_reads_the_running_servers_base_url(tmp_path, monkeypatch):
    """The prefix comes from the jpserver-*.json of a live server whose root holds the working folder;
    files of dead servers and half-written files are skipped."""
    import json
    import os

    from workbench.graph import proxy_prefix, running_servers

    pytest.importorskip("jupyter_server_proxy")
    runtime, root = tmp_path / "runtime", tmp_path / "root"
    (root / "notebooks").mkdir(parents=True)
    runtime.mkdir()
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(runtime))
    monkeypatch.delenv("JUPYTERHUB_SERVICE_PREFIX", raising=False)
    monkeypatch.chdir(root / "notebooks")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (runtime / "jpserver-1.json").write_text(json.dumps({"pid": int(dead.stdout), "root_dir": str(root),
                                                         "base_url": "/dead/"}))
    (runtime / "jpserver-2.json").write_text('{"pid": ')  # being written
    assert running_servers() == [] and proxy_prefix() == "/"
    (runtime / "jpserver-3.json").write_text(json.dumps({"pid": os.getpid(), "root_dir": str(root),
                                                         "base_url": "/user/ada"}))
    assert [s["base_url"] for s in running_servers()] == ["/user/ada"]
    assert proxy_prefix() == "/user/ada/"
    monkeypatch.setenv("JUPYTERHUB_SERVICE_PREFIX", "/hub/user/bob/")
    assert proxy_prefix() == "/hub/user/bob/"
