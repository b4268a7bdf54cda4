"""Tools env (run by floor.py through tools_env.Worker): ExecuTorch's bare runtime, for the bench's floor.

Loads the .pte as the workbench's worker (`workbench/formats/executorch/_serve.py`) does. Requests:
- ("input", x): keep the float32 (N, C, H, W) batch here; reply None.
- ("run", None): `method.call` image by image on the kept batch, nothing sent back but the seconds it took on
  this process's clock: the bare runtime plus the smallest round trip the channel has.
- ("echo", x): send back arrays of the outputs' shapes without running anything: the round trip of the
  runner's payload, what the IPC costs on its own.
"""

import sys
import time

from _channel import serve
from _program import load_method


def main(path):
    import numpy as np
    import torch

    method, meta = load_method(path)
    if method is None:
        serve(None, meta)
        return
    outputs = [list(meta.output_tensor_meta(i).sizes()) for i in range(meta.num_outputs())]
    kept = []

    def handle(request):
        what, x = request
        if what == "input":
            kept[:] = [torch.from_numpy(np.ascontiguousarray(x[i:i + 1])) for i in range(len(x))]
            return None
        if what == "run":
            start = time.perf_counter()
            for one in kept:
                method.call([one])
            return time.perf_counter() - start
        if what == "echo":
            return [np.zeros([len(x)] + shape[1:], np.float32) for shape in outputs]
        raise ValueError(f"unknown request {what!r}")

    serve(handle, {"outputs": outputs})


main(sys.argv[1])
