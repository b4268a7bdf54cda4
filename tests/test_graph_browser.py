"""Netron's page from the workbench's server, in headless Chromium: it draws the graph, asks nothing, sends
nothing off the machine, still works long after Netron's release, and shows several formats on one server.

No JupyterLab here: the page is opened on http://127.0.0.1:PORT/ as a browser on the kernel's machine would.
Needs Debian's chromium (.ci/run installs it); skipped with the reason when it is absent.
"""

import datetime
import logging
import os
import re
import shutil
import struct
from pathlib import Path

import pytest
import torch

from workbench.graph import Graph

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(not Path(CHROMIUM).exists() and not os.environ.get("CI"),
                                 reason="Debian's chromium is not installed (apt-get install chromium)")]

NETRON = Path(pytest.importorskip("netron").__file__).parent
TIMEOUT = 60_000


def release_date() -> datetime.datetime:
    """The date in Netron's index.html, from which its page counts the 180 days before it stops."""
    text = (NETRON / "index.html").read_text(encoding="utf-8")
    stamp = re.search(r'<meta name="date" content="([^"]+)">', text).group(1)
    return datetime.datetime.fromisoformat(stamp).replace(tzinfo=datetime.timezone.utc)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A Conv+ReLU model as ONNX, as an ncnn pair (.param with its .bin) and, with coremltools, as an
    .mlpackage, each in its own folder."""
    root = tmp_path_factory.mktemp("netron")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU()).eval()
    example = torch.rand(1, 3, 8, 8)
    found = {}
    (root / "onnx").mkdir()
    found["onnx"] = root / "onnx" / "tiny.onnx"
    torch.onnx.export(model, (example,), str(found["onnx"]), dynamo=False, input_names=["image"])
    (root / "ncnn").mkdir()
    found["ncnn"] = root / "ncnn" / "tiny.param"
    found["ncnn"].write_text("7767517\n3 3\nInput input 0 1 image 0=8 1=8 2=3\n"
                             "Convolution conv 1 1 image conv 0=4 1=3 5=1 6=108\nReLU relu 1 1 conv output\n")
    weights = model[0].weight.detach().numpy().astype("<f4").tobytes()
    bias = model[0].bias.detach().numpy().astype("<f4").tobytes()
    (root / "ncnn" / "tiny.bin").write_bytes(struct.pack("<I", 0) + weights + bias)  # 0: raw float32 weights
    try:
        import coremltools as ct
    except ImportError:
        return found
    traced = torch.jit.trace(model, example)
    mlmodel = ct.convert(traced, inputs=[ct.TensorType(name="image", shape=example.shape)], convert_to="mlprogram")
    found["coreml"] = root / "tiny.mlpackage"
    mlmodel.save(str(found["coreml"]))
    return found


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--no-first-run", "--disable-sync", "--disable-quic"])
        yield browser
        browser.close()


class Visit:
    """A fresh browser context (no cookies) whose every request, response and console message is kept.
    `when` fakes the page's clock; requests off the machine are aborted, and still recorded."""

    def __init__(self, browser, when=None):
        self.context = browser.new_context(viewport={"width": 1000, "height": 700})
        self.requests, self.responses, self.console = [], {}, []
        self.context.on("request", lambda request: self.requests.append(request.url))
        self.context.on("response", lambda response: self.responses.__setitem__(response.url, response.status))
        self.context.route(re.compile(r"^(?!http://127\.0\.0\.1:)"), lambda route: route.abort())
        self.page = self.context.new_page()
        self.page.set_default_timeout(TIMEOUT)
        self.page.on("console", lambda message: self.console.append(message.text))
        if when is not None:
            self.page.clock.install(time=when)

    def open(self, url):
        self.page.goto(url)
        return self.page

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.context.close()


def test_netron_as_shipped_asks_consent_phones_home_and_stops_after_180_days(browser, models):
    """The control: Netron's own server and page, with the same recorder and clock as the tests below,
    shows each problem they check is gone (so those checks can fail)."""
    import netron
    from playwright.sync_api import expect

    root = logging.getLogger()
    quiet = logging.NullHandler()
    root.addHandler(quiet)  # netron.serve would call logging.basicConfig for the whole process
    try:
        address = netron.serve(str(models["onnx"]), address=("127.0.0.1", 0), browse=False)
    finally:
        root.removeHandler(quiet)
    try:
        with Visit(browser, when=release_date() + datetime.timedelta(days=10)) as visit:
            page = visit.open(f"http://127.0.0.1:{address[1]}/")
            expect(page.get_by_text("This app uses cookies")).to_be_visible()
            expect(page.get_by_role("button", name="Accept")).to_be_visible()
            assert any(url.startswith("https://ipinfo.io/") for url in visit.requests), visit.requests
        with Visit(browser, when=release_date() + datetime.timedelta(days=200)) as visit:
            page = visit.open(f"http://127.0.0.1:{address[1]}/")
            expect(page.get_by_text("Please update to the newest version.")).to_be_visible()
    finally:
        netron.stop(address)


def test_the_workbench_page_draws_the_graph_asks_nothing_and_stays_on_the_machine(browser, models):
    from playwright.sync_api import expect

    with Graph(models["onnx"]) as graph:
        local = f"http://127.0.0.1:{graph.port}/"
        for days in (10, 200):  # before and long after Netron's 180-day limit
            with Visit(browser, when=release_date() + datetime.timedelta(days=days)) as visit:
                page = visit.open(graph.local_url)
                expect(page.locator("#canvas").get_by_text("Conv", exact=True)).to_be_visible()
                expect(page.locator("#canvas").get_by_text("Relu", exact=True)).to_be_visible()
                expect(page.locator("#message-button")).to_be_hidden()  # no Accept, no Update, no error
                assert page.get_by_text(re.compile("cookies|Please update")).count() == 0
                page.wait_for_load_state("networkidle")
                assert visit.requests and all(url.startswith(local) for url in visit.requests), \
                    [url for url in visit.requests if not url.startswith(local)]
                assert any("/data/" in url and url.split("?")[0].endswith("/tiny.onnx") for url in visit.requests)
                assert not [m for m in visit.console if "Content Security Policy" in m], visit.console
                assert visit.context.cookies() == []  # not even the consent cookie
                if days == 200:
                    page.screenshot(path=os.environ.get("WORKBENCH_GRAPH_SCREENSHOT", str(models["onnx"].parent
                                                                                          / "graph.png")))


def test_one_server_shows_onnx_ncnn_and_core_ml_in_turn(browser, models):
    from playwright.sync_api import expect

    with Graph(models["onnx"]) as graph, Visit(browser) as visit:
        port, local = graph.port, f"http://127.0.0.1:{graph.port}/"
        canvas = visit.page.locator("#canvas")
        visit.open(graph.local_url)
        expect(canvas.get_by_text("Conv", exact=True)).to_be_visible()

        graph.show(models["ncnn"])
        visit.open(graph.local_url)
        expect(canvas.get_by_text("Convolution", exact=True)).to_be_visible()
        expect(canvas.get_by_text("ReLU", exact=True)).to_be_visible()
        bins = [url for url in visit.responses if url.split("?")[0].endswith("/tiny.bin")]
        assert bins and all(visit.responses[url] == 200 for url in bins)  # the weights beside the .param

        if "coreml" in models:
            graph.show(models["coreml"])
            visit.open(graph.local_url)
            expect(canvas.get_by_text("conv", exact=True)).to_be_visible()
            expect(canvas.get_by_text("relu", exact=True)).to_be_visible()
            assert any(url.split("?")[0].endswith("/weights/weight.bin") and status == 200
                       for url, status in visit.responses.items())
        assert graph.port == port
        assert all(url.startswith(local) for url in visit.requests), visit.requests
        assert not [m for m in visit.console if "Content Security Policy" in m], visit.console


def test_through_jupyter_server_proxy_the_page_stays_on_the_jupyter_origin(browser, models, tmp_path):
    """What the widget embeds: /proxy/PORT/ on the Jupyter server. The CSP header reaches the browser
    through the proxy, so 'self' there is the Jupyter server, and Netron's page asks for nothing else."""
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    from playwright.sync_api import expect

    pytest.importorskip("jupyter_server_proxy")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(tmp_path / ".jupyter"), "JUPYTER_RUNTIME_DIR": str(tmp_path / ".rt")}
    jupyter = subprocess.Popen(
        [sys.executable, "-m", "jupyter_server", "--no-browser", f"--ServerApp.port={port}", "--ServerApp.ip=127.0.0.1",
         "--IdentityProvider.token=graph-test", f"--ServerApp.root_dir={tmp_path}"]
        + (["--allow-root"] if os.geteuid() == 0 else []),
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                urllib.request.urlopen(f"{base}api/status?token=graph-test", timeout=2)
                break
            except OSError:
                if jupyter.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("the Jupyter server did not start")
                time.sleep(0.5)
        with Graph(models["onnx"]) as graph, Visit(browser) as visit:
            visit.open(f"{base}api/status?token=graph-test")  # the login cookie, as JupyterLab would have

            def proxied():
                return f"{base}proxy/{graph.port}/" + graph.local_url.split("/", 3)[3]

            response = visit.page.goto(proxied())
            assert "connect-src 'self'" in response.headers["content-security-policy"]
            canvas = visit.page.locator("#canvas")
            expect(canvas.get_by_text("Conv", exact=True)).to_be_visible()
            graph.show(models["ncnn"])
            visit.page.goto(proxied())
            expect(canvas.get_by_text("Convolution", exact=True)).to_be_visible()
            expect(visit.page.locator("#message-button")).to_be_hidden()
            assert all(url.startswith(base) for url in visit.requests), visit.requests
            assert not [m for m in visit.console if "Content Security Policy" in m], visit.console
    finally:
        jupyter.terminate()
        try:
            jupyter.wait(timeout=20)
        except subprocess.TimeoutExpired:
            jupyter.kill()
