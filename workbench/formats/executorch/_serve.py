"""Tools env: ExecuTorch's runtime as a worker (tools.Worker): load a .pte once, run batches on request.

argv: the .pte path. First reply: {"inputs": [...], "outputs": [...]} (the method's tensor shapes), or
{"error": ...}. Each request: a float32 (N, C, H, W) array; reply: a list of output arrays (N, ...).
"""

import sys

from _channel import serve
from _program import load_method


def main(path):
    import numpy as np
    import torch

    method, meta = load_method(path)
    if method is None:
        serve(None, meta)
        return
    shapes = lambda get, n: [list(get(i).sizes()) for i in range(n)]  # noqa: E731

    def run(batch):
        rows = [method.call([torch.from_numpy(np.ascontiguousarray(batch[i:i + 1]))]) for i in range(len(batch))]
        return [np.concatenate([r[j].numpy() for r in rows]) for j in range(len(rows[0]))]

    serve(run, {"inputs": shapes(meta.input_tensor_meta, meta.num_inputs()),
                "outputs": shapes(meta.output_tensor_meta, meta.num_outputs())})


main(sys.argv[1])
