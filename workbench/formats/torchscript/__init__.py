"""TorchScript: a traced module, run by torch.

TorchScript is deprecated upstream and PyTorch Mobile is retired in favour of ExecuTorch; the format stays
because existing iOS/Android apps (the DeepLabV3 seed) load it.
"""

from .. import Format, Option, register

FORMAT = register(Format(
    name="torchscript", title="TorchScript", runtime="TorchScript", suffixes=(".pt",), package=__name__,
    exporter=".export:export_torchscript", runner=".runner:TorchScriptRunner", validator=".validate:check_torchscript",
    floor=".floor:floor",
    export_options=(Option("optimize", False, "torch's mobile optimizer (needs XNNPACK)", panel=True),
                    Option("check_trace", True, "torch's own check of the trace")),
    live_options={"check_trace": False},
    default=True, order=30,
))
