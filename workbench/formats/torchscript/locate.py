"""Where a TorchScript module leaves PyTorch, layer by layer: every value of the saved graph, each copied where
it is produced, beside the PyTorch model with a hook on every module.

A graph value is matched to its PyTorch module through the module hierarchy the trace keeps on each node
(``model(Sequential).1(Block).c2(Conv2d)``); the value a module's last node produces is that module's output.
Values copied where they are produced mean an in-place op (``relu_``, ``add_``) is never blamed for the value
of the op before it. An optimized file (``optimize=True``: prepacked convolutions) keeps the hierarchy too.
"""

from __future__ import annotations

import numpy as np

from ...errors import WorkbenchError
from ...layers import Candidate, compare_layers, module_outputs, reference_module, require_module, torchscript_modules


def locate(artifact, runner, pixels, preprocess=None, tolerance=None, *, module=None):
    """Per-layer comparison of the TorchScript `artifact` with PyTorch's `module` on one image (`pixels`,
    (1, 3, H, W)), both given the same input: a `layers.Layers`."""
    import torch

    from ...coreml_interp.divergence import torch_values

    require_module(artifact, module)
    x = runner.inputs(pixels, preprocess)
    runner.activate()
    script = runner.module
    if not hasattr(script, "inlined_graph"):
        raise WorkbenchError(f"{artifact.path} is not a TorchScript module")
    values = torch_values(script, torch.from_numpy(np.ascontiguousarray(x, np.float32)))
    modules = torchscript_modules(script)
    kinds = {o.debugName(): n.kind() for n in script.inlined_graph.nodes() for o in n.outputs()}
    order = {name: i for i, name in enumerate(values)}
    candidates = [Candidate(order[name], name, kinds.get(name, "?").split("::")[-1], name, modules[name],
                            values[name].detach().double().numpy())
                  for name in values if name in modules and values[name].is_floating_point()]
    reference = module_outputs(reference_module(artifact, module), x)
    return compare_layers("torchscript", "TorchScript", candidates, reference, total=len(values),
                          tolerance=tolerance, precision=artifact.precision, unit="value")
