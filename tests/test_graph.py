"""The Netron server: loopback only, one server for many artifacts, Netron's page made private by an added
script and a CSP header, nothing served but Netron's files and registered models, none outlives its owner."""

import http.client
import json
import os
import socket
import subprocess
import sys
import textwrap
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import torch

from workbench import WorkbenchError
from workbench.graph import PRIVACY_SCRIPT, Graph, GraphServer, model_file

NETRON = Path(pytest.importorskip("netron").__file__).parent


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A tiny ONNX file, an ncnn pair (.param + .bin) and an .mlpackage's layout, each in its own folder,
    and a secret file beside those folders that no request may reach."""
    root = tmp_path_factory.mktemp("g")
    (root / "onnx").mkdir()
    onnx = root / "onnx" / "tiny.onnx"
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU())
    torch.onnx.export(model, (torch.rand(1, 3, 8, 8),), str(onnx), dynamo=False, input_names=["image"])
    (root / "ncnn").mkdir()
    param = root / "ncnn" / "tiny.param"
    param.write_text("7767517\n2 2\nInput input 0 1 image 0=8 1=8 2=3\nReLU relu 1 1 image output\n")
    (root / "ncnn" / "tiny.bin").write_bytes(b"\0" * 8)
    package = root / "tiny.mlpackage"
    (package / "Data" / "com.apple.CoreML" / "weights").mkdir(parents=True)
    (package / "Data" / "com.apple.CoreML" / "model.mlmodel").write_bytes(b"\x08\x07")
    (package / "Data" / "com.apple.CoreML" / "weights" / "weight.bin").write_bytes(b"w" * 16)
    (package / "Manifest.json").write_text("{}")
    (root / "secret.txt").write_text("SECRET")
    (root / "onnx" / ".hidden").write_text("SECRET")
    os.symlink(root / "secret.txt", root / "onnx" / "link.txt")
    return {"onnx": onnx, "param": param, "package": package, "secret": root / "secret.txt"}


def get(port, path, method="GET"):
    """(status, headers, body) for a path sent exactly as written (urllib would not normalize it either,
    but a browser would: traversal attempts must be tested below the browser)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path)
        response = conn.getresponse()
        return response.status, response.headers, response.read()
    finally:
        conn.close()


def data_path(page: str) -> str:
    """The path Netron requests for a page's model: its 'url' parameter, decoded as URLSearchParams does."""
    assert page.startswith("?url=data/"), page
    return "/" + urllib.parse.parse_qs(page[1:])["url"][0]


def non_loopback_address():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))  # no packet is sent: this only picks the outgoing interface
            return s.getsockname()[0]
        except OSError:
            return None


def test_one_server_on_loopback_shows_two_models_then_stops(models):
    graph = Graph(models["onnx"])
    try:
        port, first = graph.port, graph.local_url
        assert graph.address == ("127.0.0.1", port)
        assert graph.path == models["onnx"]
        assert urllib.request.urlopen(first, timeout=10).status == 200
        html = graph.show(models["param"])
        assert graph.port == port and graph.path == models["param"]  # the same server, another page
        assert f"/proxy/{port}/?url=data/" in html or f"http://127.0.0.1:{port}/?url=data/" in html
        assert html == graph.html() and "tiny.param" in html
        second = graph.local_url
        assert second != first and second.startswith(f"http://127.0.0.1:{port}/?url=data/")
        for url in (first, second):
            page = url.split("/", 3)[3]
            assert get(port, data_path(page))[0] == 200
        # ncnn's weights sit beside its .param: Netron asks for them by name, from the model's folder
        status, _, body = get(port, data_path(second.split("/", 3)[3]).replace("tiny.param", "tiny.bin"))
        assert (status, body) == (200, b"\0" * 8)
        other = non_loopback_address()
        if other and not other.startswith("127."):
            with pytest.raises(OSError):
                socket.create_connection((other, port), timeout=2)
    finally:
        graph.close()
    assert not graph.alive
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2)


def test_the_page_carries_the_privacy_script_and_a_csp_that_keeps_requests_local(models):
    with Graph(models["onnx"]) as graph:
        response = urllib.request.urlopen(graph.local_url, timeout=10)
        page = response.read().decode()
        csp = response.headers["Content-Security-Policy"]
        assert "connect-src 'self'" in csp and "default-src 'self'" in csp and "script-src 'self';" in csp
        assert "unsafe-eval" not in csp and "*" not in csp and "http" not in csp
        assert response.headers["Referrer-Policy"] == "no-referrer"
        # the script loads right after index.js (which defines preload) and before the load event starts Netron
        index_js = '<script type="text/javascript" src="index.js"></script>'
        assert f'{index_js}\n<script type="text/javascript" src="{PRIVACY_SCRIPT}"></script>' in page
        status, headers, script = get(graph.port, "/" + PRIVACY_SCRIPT)
        assert status == 200 and headers["Content-Type"].startswith("text/javascript")
        script = script.decode()
        for replaced in ("Host.prototype.view", "Host.prototype.event", "Host.prototype.exception",
                         "this._telemetry = quiet", "packaged = false"):
            assert replaced in script
        # every response says the same, so a worker or a module cannot escape it either
        for path in ("/view.js", "/worker.js", data_path(graph.local_url.split("/", 3)[3]), "/nothing.js"):
            assert get(graph.port, path)[1]["Content-Security-Policy"] == csp
        assert (NETRON / "index.html").read_text(encoding="utf-8").count(PRIVACY_SCRIPT) == 0  # package untouched


def test_netron_still_has_the_code_paths_the_script_replaces():
    """The added script replaces browser.Host.view, where this Netron asks for consent, calls ipinfo.io,
    starts Google Analytics and blocks itself after 180 days. A Netron that moved them fails here, so that
    an upgrade is checked (tests/test_graph_browser.py) before it ships."""
    browser = (NETRON / "browser.js").read_text(encoding="utf-8")
    view = browser[browser.index("    async view(view) {"):browser.index("    async start() {")]
    for what in ("days > 180", "Please update", "ipinfo.io", "'Accept'", "this._telemetry.start",
                 "this.event('browser_open'"):
        assert what in view, f"netron's browser.Host.view no longer contains {what!r}"
    assert "window.exports.browser = browser;" in browser
    index = (NETRON / "index.js").read_text(encoding="utf-8")
    assert "window.exports.preload = function(callback)" in index
    assert index.index("window.exports.preload(function") < index.index("new window.exports.browser.Host()")


@pytest.mark.parametrize("path", [
    "/../server.py", "/%2e%2e/server.py", "/server.py", "/__init__.py", "/__pycache__/server.cpython-311.pyc",
    "/etc/passwd", "//etc/passwd", "/%2Fetc%2Fpasswd", "/data/unknown-token/tiny.onnx", "/data/",
    "/data/{token}/../secret.txt", "/data/{token}/%2e%2e/secret.txt", "/data/{token}/..%2Fsecret.txt",
    "/data/{token}/..%5Csecret.txt", "/data/{token}//etc/passwd", "/data/{token}/%2Fetc%2Fpasswd",
    "/data/{token}/{secret}", "/data/{token}/.hidden", "/data/{token}/link.txt", "/data/{token}/",
])
def test_nothing_but_netron_files_and_registered_models_is_served(models, path):
    with GraphServer() as server:
        token = data_path(server.page(models["onnx"])).split("/")[2]
        path = path.format(token=token, secret=models["secret"])
        status, _, body = get(server.port, path)
        assert status in (403, 404), f"{path} answered {status}"
        assert b"SECRET" not in body and b"import" not in body
        assert get(server.port, path, "HEAD")[0] == status


def test_an_mlpackage_is_served_whole_and_netron_opens_its_model_mlmodel(models):
    package = models["package"]
    with Graph(package) as graph:
        assert graph.path == package / "Data" / "com.apple.CoreML" / "model.mlmodel"
        page = graph.local_url.split("/", 3)[3]
        assert page.endswith("/Data/com.apple.CoreML/model.mlmodel")
        model = data_path(page)
        assert get(graph.port, model)[2] == b"\x08\x07"
        # Netron asks for the weights as 'Data/com.apple.CoreML//weights/weight.bin' (an empty folder name)
        weights = model.replace("model.mlmodel", "/weights/weight.bin")
        assert get(graph.port, weights)[:3:2] == (200, b"w" * 16)
        assert get(graph.port, model.replace("Data/com.apple.CoreML/model.mlmodel", "Manifest.json"))[0] == 200
        assert 'title="Netron: model.mlmodel"' in graph.html()


def test_odd_file_names_reach_the_right_file(tmp_path):
    odd = tmp_path / "my model #1?&%20.onnx"
    odd.write_bytes(b"odd")
    with GraphServer() as server:
        page = server.page(odd)
        assert "#" not in page and " " not in page and page.count("?") == 1
        assert get(server.port, data_path(page))[:3:2] == (200, b"odd")


def test_a_shared_server_outlives_its_graphs_and_pages_are_stable(models):
    with GraphServer() as server:
        assert server.page(models["onnx"]) == server.page(models["onnx"])
        assert server.page(models["onnx"]) != server.page(models["param"])
        with Graph(models["onnx"], server=server) as graph:
            assert graph.port == server.port
        assert server.alive and get(server.port, "/")[0] == 200
    assert not server.alive


def test_html_goes_through_the_proxy_or_says_why_not(models, monkeypatch):
    import workbench.graph as graph_module

    with Graph(models["onnx"]) as graph:
        monkeypatch.setattr(graph_module, "proxy_prefix", lambda: "/user/ada/")
        html = graph.html(height=300)
        assert f'src="/user/ada/proxy/{graph.port}/?url=data/' in html and "height:300px" in html
        monkeypatch.setattr(graph_module, "proxy_prefix", lambda: None)
        html = graph.html()
        assert "jupyter-server-proxy is not installed" in html and f'src="http://127.0.0.1:{graph.port}/?url=' in html


def test_no_server_outlives_the_interpreter(models):
    script = textwrap.dedent(f"""
        from workbench.graph import Graph
        g = Graph({str(models["onnx"])!r})
        print(g.port, flush=True)
    """)
    proc = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True, timeout=120)
    port = int(proc.stdout.strip())
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2)


def test_missing_or_wrong_files_are_clear_errors(tmp_path, models):
    with pytest.raises(WorkbenchError, match="does not exist"):
        model_file(tmp_path / "nope.onnx")
    (tmp_path / "x.mlpackage").mkdir()
    with pytest.raises(WorkbenchError, match="model.mlmodel"):
        model_file(tmp_path / "x.mlpackage")
    with Graph(models["onnx"]) as graph:
        with pytest.raises(WorkbenchError, match="nope.onnx does not exist"):
            graph.show(tmp_path / "nope.onnx")
        assert graph.path == models["onnx"]  # still showing the last good one


def test_proxy_prefix_reads_the_running_servers_base_url(tmp_path, monkeypatch):
    """The prefix comes from the jpserver-*.json of a live server whose root holds the working folder;
    files of dead servers and half-written files are skipped."""
    from workbench.graph import proxy_prefix, running_servers

    pytest.importorskip("jupyter_server_proxy")
    runtime, root = tmp_path / "runtime", tmp_path / "root"
    (root / "notebooks").mkdir(parents=True)
    runtime.mkdir()
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(runtime))
    monkeypatch.delenv("JUPYTERHUB_SERVICE_PREFIX", raising=False)
    monkeypatch.chdir(root / "notebooks")
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], check=True,
                          capture_output=True, text=True)
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
