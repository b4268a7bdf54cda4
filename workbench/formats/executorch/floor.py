"""ExecuTorch's bare call, for the bench: `method.call` in a process of the Android tools env
(`floor_worker.py`), the input already there and one small request to start it; the call returns the
runtime's own seconds there, and `round_trip` sends the runner's payload through the same channel with
nothing run (what the IPC costs on its own)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..base import BareCall
from ..common.tools_env import Worker

HERE = Path(__file__).resolve().parent


def floor(artifact, x, pixels=None, stack=None) -> BareCall:
    worker = Worker(HERE / "floor_worker.py", [str(artifact.path)], what="ExecuTorch floor", packages="executorch")
    if stack is not None:
        stack.callback(worker.close)
    x = np.ascontiguousarray(x, np.float32)
    worker.request(("input", x))
    return BareCall(lambda: worker.request(("run", None)),
                    what="method.call in the tools env, input already there, one small request", own_seconds=True,
                    round_trip=lambda: worker.request(("echo", x)))
