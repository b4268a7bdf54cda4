"""Netron: one server per artifact, bound to 127.0.0.1 on a free port, embedded in the notebook.

The page is reached through the Jupyter server itself (jupyter-server-proxy's ``/proxy/PORT/``), so it works
when the browser is not on the kernel's machine (remote JupyterLab, JupyterHub). Without the proxy it falls
back to an iframe on http://127.0.0.1:PORT and says why. Every server stops when its `Graph` is closed and
at interpreter exit.
"""

from __future__ import annotations

import atexit
import html
import importlib.util
import json
import logging
import os
import time
import weakref
from pathlib import Path

from .errors import WorkbenchError, require

_OPEN: "weakref.WeakSet[Graph]" = weakref.WeakSet()


def model_file(path: str | Path) -> Path:
    """The file Netron opens for an artifact (an .mlpackage is a folder: its model.mlmodel)."""
    path = Path(path)
    if path.is_dir():
        inner = path / "Data" / "com.apple.CoreML" / "model.mlmodel"
        if not inner.is_file():
            raise WorkbenchError(f"{path} has no Data/com.apple.CoreML/model.mlmodel; is it an .mlpackage?")
        return inner
    if not path.is_file():
        raise WorkbenchError(f"cannot show the graph: {path} does not exist")
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
    takes about 1.7 s in a kernel, where the widget's first render is counted in seconds (bench section d).
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


class Graph:
    """A Netron server showing one model file. Use as a context manager or call `close()`."""

    def __init__(self, path: str | Path):
        netron = require("netron", "netron")
        self.path = model_file(path)
        root = logging.getLogger()
        quiet = logging.NullHandler()
        root.addHandler(quiet)  # netron.serve calls logging.basicConfig otherwise, for the whole kernel
        try:
            self.address = netron.serve(str(self.path), address=("127.0.0.1", 0), browse=False)
        finally:
            root.removeHandler(quiet)
        self._netron = netron
        _OPEN.add(self)

    @property
    def port(self) -> int:
        return self.address[1]

    @property
    def local_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def url(self) -> tuple[str, str | None]:
        """(the URL to embed, why the fallback is used or None)."""
        prefix = proxy_prefix()
        if prefix is None:
            return self.local_url, ("jupyter-server-proxy is not installed, so the graph is served on "
                                    f"{self.local_url}, which only a browser on this machine can open")
        return f"{prefix}proxy/{self.port}/", None

    def html(self, height: int = 520) -> str:
        url, why = self.url()
        note = f'<div style="color:#a60;font-size:12px">{html.escape(why)}</div>' if why else ""
        return (f'{note}<iframe src="{html.escape(url)}" title="Netron: {html.escape(self.path.name)}" '
                f'style="width:100%;height:{height}px;border:1px solid #ddd" loading="lazy"></iframe>')

    @property
    def alive(self) -> bool:
        return self._netron.status(self.address)

    def close(self, timeout: float = 5.0) -> None:
        """Stop the server and wait (up to `timeout` s) until its thread has let go of the port."""
        if getattr(self, "_netron", None) is not None and self._netron.status(self.address):
            self._netron.stop(self.address)
            deadline = time.monotonic() + timeout
            while self._netron.status(self.address) and time.monotonic() < deadline:
                time.sleep(0.02)  # netron's loop wakes every 0.25 s to see the stop flag
        _OPEN.discard(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


@atexit.register
def _stop_all() -> None:
    for graph in list(_OPEN):
        graph.close()
