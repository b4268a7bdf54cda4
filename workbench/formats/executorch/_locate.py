"""Tools env: an ExecuTorch .pte's per-layer values, for locate.py (run by tools_env.convert).

Request: {"program": a .pt2 of the file's source program (functional: locate.py ran its decompositions), "pte":
the file, "delegate": "xnnpack" | "portable" as the file was lowered (_convert.lower), "input": the float32 input
(1, C, H, W), "taps": the names of the program's nodes whose values locate.py compares}.

Result: "outputs", the file's own outputs on the input (its program loaded as the runner's worker loads it), and
- when the file calls no delegate: its own values. "nodes": every call of that
  edge program (name, op, module stack, input names, whether it is a float tensor), "values": {node name: the
  output ETDump logged in its debug buffer while the runtime ran the file's instruction emitted from that node}.
  An instruction is named through the program lowered again (ExecuTorch's debug handle map, the op telling apart
  the kernels one node became), so only when its kernels are the file's, in the file's order; otherwise, or
  when the ETDump cannot be read back (an fp16 program's), "why" says so, and the twin's values follow.
- else (a delegate hides its inside: ETDump logs the delegate call's inputs and outputs, XNNPACK's own events are
  timings): "taps", the twin's values: the program with each tapped node's value made a program output
  (ExecuTorch's intermediate_output_tap, the whole tensor), lowered as the file was, the taps stripped, run by the
  same runtime; "twin", the twin's own outputs, which locate.py checks against the file's.
"""

import os
import tempfile

from _convert import lower
from _program import load_method, load_program


def op_of(name: str) -> str:
    """The op of a kernel or of a node's target: 'aten::convolution.out', 'aten.convolution.default' and
    'dim_order_ops::_to_dim_order_copy.out' are 'convolution' and '_to_dim_order_copy'."""
    parts = str(name).split("::")[-1].split("(")[0].split(".")
    return parts[-2] if len(parts) > 2 or (len(parts) == 2 and "::" in str(name)) else parts[0]


def target_name(target) -> str:
    return getattr(target, "__name__", None) or str(target)


def is_float(t) -> bool:
    import torch

    return isinstance(t, torch.Tensor) and t.is_floating_point()


def array(t):
    """A float tensor as a float32 array (an fp16 value widened exactly, inf and nan kept); None if not one."""
    import torch

    return t.detach().to(torch.float32).numpy().copy() if is_float(t) else None


def stack(node) -> list:
    """The node's module stack, outer to inner: (path, class name) pairs."""
    found = node.meta.get("nn_module_stack") or {}
    return [(path, kind if isinstance(kind, str) else f"{kind.__module__}.{kind.__qualname__}")
            for path, kind in found.values()]


def kernels(program) -> list:
    """The instructions of an emitted program's forward, in order: a kernel call's op, else the instruction's
    kind (a delegate call, a move)."""
    plan = next(p for p in program.execution_plan if p.name == "forward")
    ops = [f"{o.name}.{o.overload}" for o in plan.operators]
    return [ops[i.instr_args.op_index] if hasattr(i.instr_args, "op_index") else type(i.instr_args).__name__
            for chain in plan.chains for i in chain.instructions]


def debug_bytes(graph) -> int:
    """Room for every value of `graph` in ETDump's debug buffer (each logged aligned), twice over."""
    import torch

    total = 1 << 20
    for n in graph.nodes:
        vals = n.meta.get("val")
        for v in vals if isinstance(vals, (tuple, list)) else [vals]:
            if isinstance(v, torch.Tensor):
                total += 2 * (v.numel() * v.element_size() + 64)
    return total


def own_values(program, request, theirs, x) -> dict:
    """The file's own value of each edge-program node, read from ETDump (see the module's docstring); theirs:
    the file's instructions."""
    from executorch.devtools import Inspector

    edge, _ = lower(program, request["delegate"])
    graph = edge.exported_program().graph
    calls = [n for n in graph.nodes if n.op == "call_function"]
    nodes = [{"name": n.name, "op": op_of(target_name(n.target)), "stack": stack(n),
              "inputs": [a.name for a in n.all_input_nodes], "tensor": is_float(n.meta.get("val"))}
             for n in calls]
    handles = {}
    for n in calls:
        h = n.meta.get("debug_handle")
        for one in h if isinstance(h, (tuple, list)) else [h]:
            handles.setdefault(one, []).append(n)
    room = debug_bytes(graph)
    program_out = edge.to_executorch()
    mine = kernels(program_out.executorch_program)
    if mine != theirs:
        differ = next((i for i, (a, b) in enumerate(zip(mine, theirs)) if a != b), min(len(mine), len(theirs)))
        return {"why": f"its instructions are not its source program's lowered again ({len(theirs)} against "
                       f"{len(mine)}, the first that differs is {differ + 1})"}

    # instruction -> the node it was emitted from: its debug handle's nodes, the op telling them apart
    emitted, used = {}, set()
    for index, handle in program_out.debug_handle_map["forward"].items():
        group = [n for h in (handle if isinstance(handle, (tuple, list)) else [handle]) for n in handles.get(h, [])]
        op = op_of(mine[int(index)])
        node = next((n for n in group if n.name not in used and op_of(target_name(n.target)) == op), None)
        if node is not None:
            emitted[int(index)] = node
            used.add(node.name)

    loaded = load_program(request["pte"], debug_buffer_size=room)
    method = loaded.load_method("forward")
    outputs = [array(o) for o in method.call([x])]
    with tempfile.TemporaryDirectory(prefix="workbench-etdump-") as tmp:
        dump, buffer = os.path.join(tmp, "run.etdp"), os.path.join(tmp, "debug.bin")
        loaded.write_etdump_result_to_file(dump, buffer)
        try:
            inspector = Inspector(etdump_path=dump, debug_buffer_path=buffer)
        except Exception:  # seen with ExecuTorch 1.5 for every fp16 program tried: its flatc fails on the ETDump
            return {"why": "ExecuTorch cannot read the ETDump of its run back (its flatc fails on it, as it does on "
                           "fp16 programs' with ExecuTorch 1.5)"}
    logged = {}
    for block in inspector.event_blocks:
        for event in block.events:
            i = event._instruction_id
            if i is not None and event.debug_data and i not in logged:
                logged[i] = event.debug_data
    values = {}
    for i, node in emitted.items():
        data = [array(t) for t in logged.get(i, [])]
        if isinstance(node.meta.get("val"), (tuple, list)):  # several outputs: their getitem nodes take them
            for user in node.users:
                if target_name(user.target) == "getitem" and user.args[1] < len(data):
                    values[user.name] = data[user.args[1]]
        elif data and data[0] is not None:
            values[node.name] = data[0]
    return {"nodes": nodes, "values": values, "instructions": len(theirs), "outputs": outputs}


def twin_values(program, request, x) -> dict:
    """The twin's value of each tapped node and the twin's own outputs (see the module's docstring)."""
    from executorch.devtools.intermediate_output_tap import FULL_TENSOR, strip_taps_, tap_intermediate_outputs_

    wanted = set(request["taps"])
    missing = wanted - {n.name for n in program.graph.nodes}
    if missing:
        raise ValueError(f"the program saved for the twin has no node {sorted(missing)[0]!r}")
    tapped, specs = tap_intermediate_outputs_(
        program, (lambda n: n.op == "call_function" and n.name in wanted, FULL_TENSOR), error_on_empty=False)
    edge, _ = lower(tapped, request["delegate"])
    strip_taps_(edge)
    with tempfile.TemporaryDirectory(prefix="workbench-twin-") as tmp:
        path = os.path.join(tmp, "twin.pte")
        with open(path, "wb") as f:
            f.write(edge.to_executorch().buffer)
        outs = load_program(path).load_method("forward").call([x])
    kept = len(outs) - len(specs)
    return {"taps": {s.node_name: array(outs[s.output_index]) for s in specs},
            "twin": [array(o) for o in outs[:kept]]}


def main(request: dict) -> dict:
    import numpy as np
    import torch
    from executorch.exir._serialize._program import deserialize_pte_binary

    x = torch.from_numpy(np.ascontiguousarray(request["input"], np.float32))
    with open(request["pte"], "rb") as f:
        pte = deserialize_pte_binary(f.read())
    theirs = kernels(getattr(pte, "program", pte))
    result = {}
    if "DelegateCall" not in theirs:
        result = own_values(torch.export.load(request["program"]), request, theirs, x)
        if "values" in result:
            return result
    method, meta = load_method(request["pte"])
    if method is None:
        raise ValueError(meta["error"])
    result["outputs"] = [array(o) for o in method.call([x])]
    result.update(twin_values(torch.export.load(request["program"]), request, x))
    return result


if __name__ == "__main__":
    from _channel import converter

    converter(main, globals())  # offline.py put `network` and `spawned` there
