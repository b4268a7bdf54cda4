"""Tools env: ExecuTorch's program loader, shared by its runtime worker (`_serve.py`), the per-layer values
(`_locate.py`) and the bench's floor (`floor_worker.py`)."""

from _channel import first_line


def load_program(path, debug_buffer_size: int = 0):
    """ExecuTorch's program at `path`, verified, run on one thread. debug_buffer_size: bytes for ETDump's debug
    buffer, where each kernel outside a delegate logs its output (0: no ETDump). Only the runtime's extension is
    imported: `executorch.runtime` imports the whole exir compiler for one warning class (2 s to start a worker
    instead of 12 on two busy cores)."""
    import torch  # first: the extension links against libtorch
    from executorch.extension.pybindings import _C

    torch.set_num_threads(1)
    return _C._load_program(path, enable_etdump=debug_buffer_size > 0, debug_buffer_size=debug_buffer_size,
                            program_verification=_C.Verification.InternalConsistency)


def load_method(path):
    """ExecuTorch's `forward` of the .pte at `path` with its metadata: (method, meta), or (None, {"error": ...})
    saying it cannot be loaded."""
    try:
        program = load_program(path)
        return program.load_method("forward"), program.method_meta("forward")
    except Exception as exc:
        return None, {"error": f"ExecuTorch cannot load {path} (truncated or corrupt?): {first_line(exc)}. "
                               "Export it again"}
