"""Tools env: the worker side of tools_env.Worker (length-prefixed pickles over stdin/stdout).

`serve(handle, first, idle)` sends `first`, then answers each request with `handle(request)` (an exception
becomes {"error": its first line}), until stdin closes or, with `idle`, no request came for `idle` seconds.
The process's stdout is moved to stderr first, so a native library's print cannot corrupt the channel.
"""

import os
import pickle
import select
import struct


def first_line(exc):
    return f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:300]}"


def serve(handle, first, idle=None):
    channel_in = os.fdopen(os.dup(0), "rb", buffering=0)
    channel_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)

    def send(obj):
        data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
        channel_out.write(struct.pack("<Q", len(data)) + data)
        channel_out.flush()

    def read(n):
        chunks, left = [], n
        while left:
            chunk = channel_in.read(left)
            if not chunk:
                return None
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    send(first)
    if isinstance(first, dict) and first.get("error"):
        return
    while True:
        if idle is not None and not select.select([channel_in], [], [], idle)[0]:
            return  # idle: the parent starts another when it needs one
        header = read(8)
        if header is None:
            return
        request = pickle.loads(read(struct.unpack("<Q", header)[0]))
        try:
            reply = handle(request)
        except Exception as exc:
            reply = {"error": first_line(exc)}
        send(reply)


def converter(main, found: dict) -> None:
    """The tools-env side of a converter script: answer each request with `main(request)` plus what the
    script tried to reach and spawned (`found`: the script's globals, where offline.py put `network` and
    `spawned`). `SCRIPT --serve IDLE` stays warm for requests (tools.convert); `SCRIPT REQUEST.json OUT.json`
    answers one."""
    import json
    import sys
    import warnings

    def answer(request: dict) -> dict:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result = main(request)
        except Exception as exc:
            result = {"error": first_line(exc)}
        return dict(result, network=list(found["network"]), spawned=list(found["spawned"]))

    if sys.argv[1] == "--serve":
        serve(answer, {"ready": True}, idle=float(sys.argv[2]))
    else:
        with open(sys.argv[1]) as f:
            result = answer(json.load(f))
        with open(sys.argv[2], "w") as f:
            json.dump(result, f)
