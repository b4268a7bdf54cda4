"""Tools env: ExecuTorch's runtime as a worker (tools.Worker): load a .pte once, run batches on request.

argv: the .pte path. First reply: {"inputs": [...], "outputs": [...]} (the method's tensor shapes), or
{"error": ...}. Each request: a float32 (N, C, H, W) array; reply: a list of output arrays (N, ...).
"""

import sys

from _channel import first_line, serve


def main(path):
    import numpy as np
    import torch  # first: the extension links against libtorch

    # The runtime's extension alone: `executorch.runtime` imports the whole exir compiler for one warning
    # class (2 s to start the worker instead of 12 on two busy cores).
    from executorch.extension.pybindings import _C

    torch.set_num_threads(1)
    try:
        program = _C._load_program(path, enable_etdump=False, debug_buffer_size=0,
                                   program_verification=_C.Verification.InternalConsistency)
        method = program.load_method("forward")
        meta = program.method_meta("forward")
    except Exception as exc:
        serve(None, {"error": f"ExecuTorch cannot load {path} (truncated or corrupt?): {first_line(exc)}. "
                              "Export it again"})
        return
    shapes = lambda get, n: [list(get(i).sizes()) for i in range(n)]  # noqa: E731

    def run(batch):
        rows = [method.call([torch.from_numpy(np.ascontiguousarray(batch[i:i + 1]))]) for i in range(len(batch))]
        return [np.concatenate([r[j].numpy() for r in rows]) for j in range(len(rows[0]))]

    serve(run, {"inputs": shapes(meta.input_tensor_meta, meta.num_inputs()),
                "outputs": shapes(meta.output_tensor_meta, meta.num_outputs())})


main(sys.argv[1])
