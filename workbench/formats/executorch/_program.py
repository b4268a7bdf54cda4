"""Tools env: ExecuTorch's program loader, shared by its runtime worker (`_serve.py`) and the bench's floor
(`floor_worker.py`)."""

from _channel import first_line


def load_method(path):
    """ExecuTorch's `forward` of the .pte at `path` on one thread, with its metadata: (method, meta), or
    (None, {"error": ...}) saying it cannot be loaded. Only the runtime's extension is imported:
    `executorch.runtime` imports the whole exir compiler for one warning class (2 s to start a worker
    instead of 12 on two busy cores)."""
    import torch  # first: the extension links against libtorch
    from executorch.extension.pybindings import _C

    torch.set_num_threads(1)
    try:
        program = _C._load_program(path, enable_etdump=False, debug_buffer_size=0,
                                   program_verification=_C.Verification.InternalConsistency)
        return program.load_method("forward"), program.method_meta("forward")
    except Exception as exc:
        return None, {"error": f"ExecuTorch cannot load {path} (truncated or corrupt?): {first_line(exc)}. "
                               "Export it again"}
