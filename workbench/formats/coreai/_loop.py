"""Apple's Core AI runtime is asynchronous; the workbench's runners are not. `Loop` runs the runtime's
coroutines on an event loop of its own, in a thread of its own, so a synchronous call works the same in a
script and in a Jupyter kernel (whose main thread already runs an event loop that cannot be re-entered).
`native_quiet` keeps the runtime's own line ("ODIE [default]: Loading function 'main'", written by its native
code to the process's stderr) out of the CLI's output.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import threading


@contextlib.contextmanager
def native_quiet():
    """File descriptor 2 goes to /dev/null meanwhile (Python's own streams are flushed first)."""
    with native_captured():
        yield


@contextlib.contextmanager
def native_captured():
    """File descriptor 2 goes to a temporary file meanwhile; yields a list that holds its lines afterwards
    (Apple's MLIR reader says why it refuses a program only there)."""
    import tempfile

    with contextlib.suppress(Exception):
        sys.stderr.flush()
    lines: list[str] = []
    saved = os.dup(2)
    with tempfile.TemporaryFile() as log:
        try:
            os.dup2(log.fileno(), 2)
            yield lines
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            log.seek(0)
            lines.extend(ln.strip() for ln in log.read().decode(errors="replace").splitlines() if ln.strip())


class Loop:
    """An event loop in a daemon thread: `run(coroutine)` waits for its result (or its exception)."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="workbench-coreai", daemon=True)
        self.thread.start()

    def run(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result()

    def close(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()
