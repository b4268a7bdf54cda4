"""Tools env: ExecuTorch's runtime as a worker (tools.Worker): load a .pte once, run batches on request.

argv: the .pte path. First reply: {"inputs": [...], "outputs": [...]} (the method's tensor shapes), or
{"error": ...}. Each request: a float32 (N, C, H, W) array; reply: a list of output arrays (N, ...).
"""

import os
import pickle
import struct
import sys

channel_in = os.fdopen(os.dup(0), "rb")
channel_out = os.fdopen(os.dup(1), "wb")
os.dup2(2, 1)  # a native print goes to stderr, never into the channel


def send(obj):
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    channel_out.write(struct.pack("<Q", len(data)) + data)
    channel_out.flush()


def receive():
    header = channel_in.read(8)
    if len(header) < 8:
        return None
    (n,) = struct.unpack("<Q", header)
    return pickle.loads(channel_in.read(n))


def first_line(exc):
    return f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:300]}"


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
        send({"error": f"ExecuTorch cannot load {path} (truncated or corrupt?): {first_line(exc)}. "
                       "Export it again"})
        return
    shapes = lambda get, n: [list(get(i).sizes()) for i in range(n)]  # noqa: E731
    send({"inputs": shapes(meta.input_tensor_meta, meta.num_inputs()),
          "outputs": shapes(meta.output_tensor_meta, meta.num_outputs())})
    while True:
        batch = receive()
        if batch is None:
            return
        try:
            rows = [method.call([torch.from_numpy(np.ascontiguousarray(batch[i:i + 1]))])
                    for i in range(len(batch))]
            send([np.concatenate([r[j].numpy() for r in rows]) for j in range(len(rows[0]))])
        except Exception as exc:
            send({"error": first_line(exc)})


main(sys.argv[1])
