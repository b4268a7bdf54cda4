"""Netron in the notebook: one private, quiet server that shows any number of artifacts.

`GraphServer` serves Netron's page from the installed `netron` package plus the model files registered
with it, on 127.0.0.1 and a free port, from a daemon thread; showing another artifact is another URL on
the same server (``?url=data/TOKEN/NAME``), not another server. `Graph(path)` is the one-model form.

Netron's page, as the package ships it, asks for cookie consent after an ipinfo.io lookup, sends Google
Analytics events (the page URL included) and, 180 days after its release, loops on "Please update". The
server leaves the package's files untouched and adds one script of its own to index.html, which replaces
those code paths (`browser.Host.view`, `.event`, `.exception`) before Netron starts; a Content-Security-Policy
header makes the browser refuse any request off the page's own origin even if some other path tried.

The page is reached through the Jupyter server (jupyter-server-proxy's ``/proxy/PORT/``), so it works when
the browser is not on the kernel's machine (remote JupyterLab, JupyterHub). Without the proxy it falls back
to an iframe on http://127.0.0.1:PORT and says why. Every server stops when closed and at interpreter exit.
"""

from __future__ import annotations

import atexit
import html
import http.server
import importlib.util
import json
import logging
import os
import re
import secrets
import shutil
import threading
import urllib.parse
import weakref
from pathlib import Path, PurePosixPath

from .errors import WorkbenchError, require

logger = logging.getLogger(__name__)

_OPEN: weakref.WeakSet[GraphServer] = weakref.WeakSet()

# The browser refuses anything that is not the page's own origin: the Jupyter server when proxied, the
# workbench's server otherwise. Netron needs inline styles (it sets them from code), data:/blob: images
# (exports, icons) and a module worker (its layout); it needs no eval and no fonts from elsewhere.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
    "font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; object-src 'none'; frame-src 'none'; "
    "base-uri 'self'; form-action 'none'"
)

PRIVACY_SCRIPT = "workbench-netron.js"

# Runs after index.js and before Netron's modules: wraps `preload` so that, once browser.js has defined
# `browser.Host` and before index.js builds one, the Host's consent/telemetry/update paths are replaced.
# If a future Netron renamed them, the page stops with this message instead of running unpatched.
_PRIVACY_JS = r"""// Added by workbench.graph: Netron inside the notebook asks nothing and reports nothing.
(function () {
    'use strict';
    var root = window.exports;
    var preload = root && root.preload;
    if (typeof preload !== 'function') {
        throw new Error('workbench: this Netron page has no exports.preload; ' +
            'the workbench cannot keep it private.');
    }
    var quiet = {
        start: function () { return Promise.resolve(); },
        set: function () {}, get: function () { return undefined; }, send: function () {},
        get session() { return null; }
    };
    var patch = function () {
        var Host = root.browser && root.browser.Host;
        if (!Host || typeof Host.prototype.view !== 'function') {
            throw new Error('workbench: this Netron version has no browser.Host.view; ' +
                'the workbench cannot keep it private.');
        }
        // Netron's view(): the 180-day "Please update" loop, the ipinfo.io lookup and cookie consent prompt,
        // Google Analytics (page_view with the page URL), and a 'browser_open' event. Only the first line stays.
        Host.prototype.view = function (view) {
            this._view = view;
            this._telemetry = quiet;
            this._environment.packaged = false;  // error dialogs say "OK" instead of opening GitHub issues
            return Promise.resolve();
        };
        Host.prototype.event = function () {};
        Host.prototype.exception = function () {};
        // Links the user clicks (About, documentation) open in a new tab, not inside the notebook's frame.
        Host.prototype.openURL = function (url) {
            window.open(url, '_blank', 'noopener,noreferrer');
        };
    };
    root.preload = function (callback) {
        return preload.call(this, function (value, error) {
            if (!error) {
                try {
                    patch();
                } catch (e) {
                    error = e;
                }
            }
            callback(value, error);
        });
    };
})();
"""

_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".css": "text/css; charset=utf-8", ".json": "application/json", ".png": "image/png",
          ".ico": "image/x-icon", ".svg": "image/svg+xml"}


def model_file(path: str | Path) -> Path:
    """The file Netron opens for an artifact: what its format says (`Format.netron`: a file inside a package folder
    folder, its model.mlmodel), else the file itself."""
    from . import formats

    path = Path(path)
    fmt = formats.for_file(path)
    if fmt is not None:
        return fmt.graph_file(path)
    if not path.is_file():
        raise WorkbenchError(f"cannot show the graph: {path} does not exist" if not path.exists() else
                             f"cannot show the graph of {path}: it is a folder no registered format makes")
    return path


def proxy_prefix() -> str | None:
    """The URL path under which jupyter-server-proxy serves local ports, or None when it is unavailable."""
    if importlib.util.find_spec("jupyter_server_proxy") is None:
        return None
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX")
    if prefix is None:
        prefix = "/"
        cwd = Path.cwd().resolve()
        for server in running_servers():
            root = Path(server.get("root_dir") or server.get("notebook_dir") or "/").resolve()
            if cwd == root or root in cwd.parents:
                prefix = server.get("base_url", "/")
                break
    return prefix if prefix.endswith("/") else prefix + "/"


def running_servers() -> list[dict]:
    """The Jupyter servers running on this machine, from their jpserver-*.json files.

    What `jupyter_server.serverapp.list_running_servers` reads, read here because importing serverapp
    is slow in a kernel, where the widget's first render is counted in seconds (bench section d).
    It does not delete the files of servers that died, as serverapp does: that is the server's business.
    """
    from jupyter_core.paths import jupyter_runtime_dir

    servers = []
    for path in sorted(Path(jupyter_runtime_dir()).glob("jpserver-*.json")):
        try:
            info = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):  # unreadable, or being written
            continue
        if isinstance(info, dict) and _alive(info.get("pid")):
            servers.append(info)
    return servers


def _alive(pid) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


class _Model:
    """A registered artifact: the folder Netron may read from and the model file's path inside it."""

    def __init__(self, path: Path):
        file = model_file(path).resolve()
        # A folder artifact (a package) is served whole (Netron reads its manifest and weights); a file gets
        # its own folder, where its companions live (weights beside a graph, external data: `Format.files`).
        self.root = Path(path).resolve() if Path(path).is_dir() else file.parent
        self.file = file
        self.relative = file.relative_to(self.root).as_posix()


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True  # a browser holding a connection open must not keep the kernel alive

    def __init__(self, assets: Path, index: bytes):
        self.assets = assets
        self.index = index
        self.models: dict[str, _Model] = {}
        super().__init__(("127.0.0.1", 0), _Handler)

    def handle_error(self, request, client_address):
        # A browser that cancels a request (a toggle mid-load) breaks the pipe; that is not worth a traceback
        # in the notebook.
        # socketserver calls this from inside its except clause, so the traceback is there to log.
        logger.debug("Netron server: request from %s failed", client_address, exc_info=True)  # noqa: LOG014


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format, *args):
        logger.debug("Netron server: " + format, *args)

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
        if path in ("/", "/index.html"):
            return self._send(200, _TYPES[".html"], self.server.index, cache=False)
        if path == "/" + PRIVACY_SCRIPT:
            return self._send(200, _TYPES[".js"], _PRIVACY_JS.encode("utf-8"), cache=False)
        if path.startswith("/data/"):
            return self._send_model_file(path[len("/data/"):])
        return self._send_asset(path[1:])

    def _send_asset(self, name: str):
        # Only files that sit directly in the netron package, of the kinds a page loads: no subfolders, no .py.
        suffix = PurePosixPath(name).suffix
        if not re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*", name) or suffix not in _TYPES:
            return self._refuse(404)
        file = self.server.assets / name
        if not file.is_file():
            return self._refuse(404)
        self._send_file(file, _TYPES[suffix], cache=True)

    def _send_model_file(self, rest: str):
        token, _, inner = rest.partition("/")
        model = self.server.models.get(token)
        if model is None:
            return self._refuse(404)
        # Netron joins its folder and a file name with '/', so empty parts are harmless ('a//b' is 'a/b');
        # '..', '.', hidden names and backslashes are not something it asks for: refuse them outright.
        parts = [p for p in inner.split("/") if p]
        if not parts or any(p in (".", "..") or p.startswith(".") or "\\" in p or "\0" in p for p in parts):
            return self._refuse(403)
        file = Path(os.path.realpath(model.root.joinpath(*parts)))
        if os.path.commonpath([file, model.root]) != str(model.root):  # a symlink leading out of the folder
            return self._refuse(403)
        if not file.is_file():
            return self._refuse(404)
        self._send_file(file, "application/octet-stream", cache=False)

    def _headers(self, status: int, content_type: str, length: int, cache: bool):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(length))
        self.send_header("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("X-Content-Type-Options", "nosniff")
        # Netron's own files do not change while the kernel runs; a model file does when it is exported again.
        self.send_header("Cache-Control", "max-age=3600" if cache else "no-store")
        self.end_headers()

    def _send(self, status: int, content_type: str, body: bytes, cache: bool):
        self._headers(status, content_type, len(body), cache)
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_file(self, file: Path, content_type: str, cache: bool):
        try:
            with open(file, "rb") as handle:
                self._headers(200, content_type, os.fstat(handle.fileno()).st_size, cache)
                if self.command != "HEAD":
                    shutil.copyfileobj(handle, self.wfile)
        except (FileNotFoundError, PermissionError):  # raised by open(), before anything is sent
            self._refuse(404)

    def _refuse(self, status: int):
        self._send(status, "text/plain; charset=utf-8", f"{status}\n".encode(), cache=False)


def _index_html(assets: Path) -> bytes:
    text = (assets / "index.html").read_text(encoding="utf-8")
    tag = '<script type="text/javascript" src="index.js"></script>'
    if tag not in text:
        raise WorkbenchError(f"{assets / 'index.html'} does not load index.js as the workbench expects; "
                             "install the netron version the workbench pins (pip install 'netron==9.3.3')")
    return text.replace(tag, f'{tag}\n<script type="text/javascript" src="{PRIVACY_SCRIPT}"></script>', 1).encode()


class GraphServer:
    """One Netron server for any number of artifacts: 127.0.0.1, a free port, a daemon thread.

    `page(path)` registers an artifact and returns its page; only Netron's own files and the folders of
    registered artifacts are served. Use as a context manager or call `close()`; it also stops at exit.

    Raises WorkbenchError when netron is not installed.
    """

    def __init__(self):
        netron = require("netron", "netron")
        self.assets = Path(netron.__file__).resolve().parent
        self._httpd = _Server(self.assets, _index_html(self.assets))
        self.address: tuple[str, int] = self._httpd.server_address[:2]
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                        name=f"netron-{self.port}", daemon=True)
        self._thread.start()
        self._closed = False
        self._tokens: dict[Path, str] = {}
        _OPEN.add(self)

    @property
    def port(self) -> int:
        return self.address[1]

    def page(self, path: str | Path) -> str:
        """Register an artifact (a model file, or a package folder) and return its page's path relative
        to the server's root, e.g. ``?url=data/TOKEN/tiny.pt``. Registering the same file again returns
        the same page. Raises WorkbenchError when the artifact does not exist."""
        model = _Model(Path(path))
        token = self._tokens.get(model.file)
        if token is None or self._httpd.models[token].root != model.root:
            token = secrets.token_urlsafe(12)  # unguessable: another page in the browser cannot read models
            self._httpd.models[token] = model
            self._tokens[model.file] = token
        # Quoted twice: the page's URLSearchParams undoes one, and Netron puts the rest into its request URL
        # as is, where a '#', '?' or ' ' in a file name must still be escaped; the server undoes the second.
        return "?url=" + urllib.parse.quote(urllib.parse.quote(f"data/{token}/{model.relative}"), safe="/")

    def local_url(self, path: str | Path | None = None) -> str:
        """http://127.0.0.1:PORT/ and, given an artifact, its page."""
        return f"http://127.0.0.1:{self.port}/" + (self.page(path) if path is not None else "")

    def url(self, path: str | Path) -> tuple[str, str | None]:
        """(the URL to embed for an artifact, why the fallback is used or None)."""
        page = self.page(path)
        prefix = proxy_prefix()
        if prefix is None:
            local = self.local_url()
            return local + page, ("jupyter-server-proxy is not installed, so the graph is served on "
                                  f"{local}, which only a browser on this machine can open")
        return f"{prefix}proxy/{self.port}/{page}", None

    def html(self, path: str | Path, height: int = 520) -> str:
        """The iframe (and the fallback's note) that shows an artifact's graph."""
        url, why = self.url(path)
        note = f'<div style="color:#a60;font-size:12px">{html.escape(why)}</div>' if why else ""
        return (f'{note}<iframe src="{html.escape(url)}" title="Netron: {html.escape(model_file(path).name)}" '
                f'style="width:100%;height:{height}px;border:1px solid #ddd" loading="lazy"></iframe>')

    @property
    def alive(self) -> bool:
        return not self._closed and self._thread.is_alive()

    def close(self, timeout: float = 5.0) -> None:
        """Stop the server and release its port (waits up to `timeout` s for the serving thread)."""
        if not getattr(self, "_closed", True):
            self._closed = True
            self._httpd.shutdown()
            self._httpd.server_close()
            self._thread.join(timeout)
        _OPEN.discard(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Graph:
    """Netron showing one artifact at a time; `show(path)` switches artifact on the same server.

    `Graph(path)` starts its own `GraphServer` and stops it on `close()`; `Graph(path, server=s)` uses `s`
    and leaves it running on `close()`. Use as a context manager or call `close()`.
    """

    def __init__(self, path: str | Path, server: GraphServer | None = None):
        self.path = model_file(path)  # before any server starts: a wrong path leaves nothing running
        self.artifact = Path(path)
        self._owns = server is None
        self.server = GraphServer() if server is None else server
        try:
            self.server.page(path)
        except BaseException:
            if self._owns:
                self.server.close()
            raise

    def show(self, path: str | Path, height: int = 520) -> str:
        """Switch to another artifact on the same server and return its iframe, as `html()` does.
        Raises WorkbenchError when the artifact does not exist (and keeps showing the previous one)."""
        file = model_file(path)
        self.server.page(path)
        self.artifact, self.path = Path(path), file
        return self.html(height)

    @property
    def address(self) -> tuple[str, int]:
        return self.server.address

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def local_url(self) -> str:
        """The page showing this artifact, on http://127.0.0.1:PORT/."""
        return self.server.local_url(self.artifact)

    def url(self) -> tuple[str, str | None]:
        """(the URL to embed, why the fallback is used or None)."""
        return self.server.url(self.artifact)

    def html(self, height: int = 520) -> str:
        return self.server.html(self.artifact, height)

    @property
    def alive(self) -> bool:
        return self.server.alive

    def close(self, timeout: float = 5.0) -> None:
        """Stop the server if this Graph started it."""
        if self._owns:
            self.server.close(timeout)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


@atexit.register
def _stop_all() -> None:
    for server in list(_OPEN):
        server.close()
