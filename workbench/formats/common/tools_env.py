"""The Android tools env (`.venv/android`): ExecuTorch and LiteRT's converter, run as subprocesses.

Shared by the formats that convert or run there (ExecuTorch, LiteRT); a format's own scripts live in its folder.

In the workbench's own env they would disturb others: coremltools imports executorch, torchao and
scikit-learn whenever they are installed (`import coremltools` went from 0.6 s to 12 s), and litert-torch
pins typing_extensions below what Jupyter needs. So `make` installs them in an env of their own that sees
the main env's torch behind its own packages, and the workbench runs scripts there:

- `convert(script, request)`: one conversion in a warm process of `script` (started on first use, reused,
  gone after `IDLE_SECONDS` without work): the converter's imports (torch, executorch.exir, litert-torch:
  8-10 s) are paid once per session, not per export.
- `run_tool(script, request)`: one conversion in a process of its own.
- `Worker(script, ...)`: a long-lived process that loads a model once and answers run requests (ExecuTorch's
  runtime), so a slider move costs one round trip, not an import of executorch.

Every script starts with `offline.py`'s audit hook: a network connection in the tools env is refused and a
process it spawns is reported back, so a converter cannot reach the network or install anything unseen.
"""

from __future__ import annotations

import json
import os
import pickle
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ...errors import WorkbenchError

HERE = Path(__file__).resolve().parent
ENV_VAR = "WORKBENCH_ANDROID_PYTHON"
_MAKE_HINT = "run `make .venv/android/.installed` in the workbench checkout (or set {var} to a python with {pkgs})"


def tools_python(packages: str = "executorch and litert-torch") -> Path:
    """The tools env's python: $WORKBENCH_ANDROID_PYTHON, else `android/` inside the running venv."""
    given = os.environ.get(ENV_VAR)
    path = Path(given) if given else Path(sys.prefix) / "android" / "bin" / "python"
    if not path.exists():
        raise WorkbenchError(f"the Android tools env is missing ({path}): "
                             + _MAKE_HINT.format(var=ENV_VAR, pkgs=packages))
    return path


def _command(script: Path, packages: str) -> list[str]:
    # -I: no PYTHONPATH, no user site, no current folder on sys.path; the env's own site-packages (and the
    # .pth that adds the main env's behind them) still load.
    return [str(tools_python(packages)), "-I", str(HERE / "offline.py"), str(script)]


def run_tool(script: Path, request: dict, *, what: str, packages: str, timeout: float = 1800) -> dict:
    """Run `script` in the tools env on `request`; its result dict, or a WorkbenchError with its one line."""
    with tempfile.TemporaryDirectory(prefix="workbench-tool-") as tmp:
        req, res = Path(tmp) / "request.json", Path(tmp) / "result.json"
        req.write_text(json.dumps(request))
        try:
            proc = subprocess.run(_command(script, packages) + [str(req), str(res)], capture_output=True,
                                  text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise WorkbenchError(f"{what} took longer than {timeout:.0f} s and was stopped; try a smaller "
                                 "model or input size") from None
        result = json.loads(res.read_text()) if res.exists() else {}
    if result.get("error"):
        raise WorkbenchError(f"{what} failed: {result['error']}")
    if proc.returncode != 0 or not result:
        tail = [ln for ln in (proc.stderr or "").strip().splitlines() if ln.strip()]
        raise WorkbenchError(f"{what} failed (exit code {proc.returncode}): "
                             f"{tail[-1] if tail else 'no message'}")
    return result


IDLE_SECONDS = 120
_warm: dict[Path, tuple[Worker, list[float]]] = {}


def convert(script: Path, request: dict, *, what: str, packages: str) -> dict:
    """`script`'s answer to `request` from its warm process in the tools env (see the module's docstring);
    a WorkbenchError with the converter's one line when it fails."""
    worker, last = _warm.get(script, (None, [0.0]))
    # a process near its idle limit may be leaving: start a fresh one rather than race it
    if worker is None or worker.proc.poll() is not None or time.monotonic() - last[0] > IDLE_SECONDS - 15:
        if worker is not None:
            worker.close()
        worker, last = Worker(script, ["--serve", str(IDLE_SECONDS)], what=what, packages=packages), [0.0]
        _warm[script] = (worker, last)
    try:
        return worker.request(request)
    finally:
        last[0] = time.monotonic()


class Worker:
    """A script in the tools env that answers requests over its stdin/stdout: length-prefixed pickles.

    The script's own stdout is moved to stderr at its start, so a native library's print cannot corrupt
    the channel. `request(obj)` returns the reply, or raises WorkbenchError with the script's message.
    """

    def __init__(self, script: Path, args: list[str], *, what: str, packages: str):
        self.what = what
        # stderr to a file, not a pipe: nobody reads a pipe while the worker runs, and a runtime that logs
        # enough would fill it and block
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(_command(script, packages) + args, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.log)
        self.reply = self._read()  # the script's first message: it loaded, or why not
        if isinstance(self.reply, dict) and self.reply.get("error"):
            self.close()
            raise WorkbenchError(self.reply["error"])

    def _read(self):
        header = self.proc.stdout.read(8)
        if len(header) < 8:
            self.proc.kill()
            self.log.seek(0)
            err = self.log.read().decode(errors="replace").strip().splitlines()
            raise WorkbenchError(f"{self.what} stopped (exit code {self.proc.wait()}): "
                                 f"{err[-1] if err else 'no message'}")
        (n,) = struct.unpack("<Q", header)
        return pickle.loads(self.proc.stdout.read(n))

    def request(self, obj):
        data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
        try:
            self.proc.stdin.write(struct.pack("<Q", len(data)) + data)
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass  # _read reports why it stopped
        reply = self._read()
        if isinstance(reply, dict) and reply.get("error"):
            raise WorkbenchError(f"{self.what} failed: {reply['error']}")
        return reply

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()
        self.log.close()
