"""Tools env: lower a saved torch.export program to an ExecuTorch .pte (run by tools.run_tool).

Request: {"program": .pt2 path, "out": .pte path, "delegate": "xnnpack" | "portable"}, and for int8
"calibration": an .npy of the (N, C, H, W) float32 inputs to calibrate on. Result: the notes (how much
XNNPACK took), and offline.py's `network` and `spawned` lists.
"""


def op_name(target) -> str:
    name = getattr(target, "__name__", None) or str(target)
    return name.split("::")[-1].split("(")[0].replace("aten.", "").split(".")[0]


def quantized(program, calibration: str):
    """`program` quantized to 8 bits by PT2E: XNNPACKQuantizer's symmetric config (weights per output channel,
    activations per tensor), observers calibrated on each input of `calibration`, then re-exported."""
    import numpy as np
    import torch
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    inputs = torch.from_numpy(np.load(calibration))
    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    prepared = prepare_pt2e(program.module(), quantizer)
    with torch.no_grad():
        for i in range(len(inputs)):
            prepared(inputs[i:i + 1])
    return torch.export.export(convert_pt2e(prepared), (inputs[:1],))


def lower(program, delegate: str, reload=None):
    """`program` lowered as the exporter lowers it: (EdgeProgramManager, notes). delegate "xnnpack":
    XnnpackPartitioner, and when it fails, the portable kernels on `reload()` (a fresh copy of the program; None:
    the failure is raised); "portable": the portable kernels only."""
    from executorch.exir import to_edge, to_edge_transform_and_lower

    notes = []
    if delegate == "xnnpack":
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner

        try:
            edge = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])
        except Exception as exc:  # the portable kernels run any op ExecuTorch knows: fall back, say so
            if reload is None:
                raise
            notes.append(f"XNNPACK lowering failed ({type(exc).__name__}: {str(exc).splitlines()[0][:160]}); "
                         "the portable kernels run the whole graph (slower)")
            edge = to_edge(reload())
        else:
            graph = edge.exported_program().graph
            calls = [n for n in graph.nodes if n.op == "call_function"]
            delegated = sum("executorch_call_delegate" in str(n.target) for n in calls)
            rest = sorted({op_name(n.target) for n in calls
                           if "executorch_call_delegate" not in str(n.target) and "getitem" not in str(n.target)})
            if not delegated:
                notes.append("XNNPACK took no op: the portable kernels run the whole graph (slower)")
            elif rest:
                notes.append(f"XNNPACK runs {delegated} part(s) of the graph; the portable kernels run the rest "
                             f"({', '.join(rest[:8])}{'...' if len(rest) > 8 else ''})")
            else:
                notes.append("XNNPACK runs the whole graph")
    else:
        edge = to_edge(program)
        notes.append("portable kernels only (no delegate): slower than XNNPACK, runs any op ExecuTorch knows")
    return edge, notes


def main(request: dict) -> dict:
    import torch

    program = torch.export.load(request["program"])
    if request.get("calibration"):
        program = quantized(program, request["calibration"])
    # the int8 kernels are XNNPACK's: a portable program would not be the variant asked for
    reload = None if request.get("calibration") else (lambda: torch.export.load(request["program"]))
    edge, notes = lower(program, request["delegate"], reload)
    buffer = edge.to_executorch().buffer
    with open(request["out"], "wb") as f:
        f.write(buffer)
    return {"notes": notes}


if __name__ == "__main__":
    from _channel import converter

    converter(main, globals())  # offline.py put `network` and `spawned` there
