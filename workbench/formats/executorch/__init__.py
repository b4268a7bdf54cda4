"""ExecuTorch: a torch.export program lowered to a .pte (XNNPACK delegate, portable kernels for the rest),
run by ExecuTorch's own runtime. PyTorch Mobile's successor, and what the seeds' TorchScript apps move to.

ExecuTorch has no image preprocessing of its own: it goes into the graph. It lives in the Android tools env
(`.venv/android`, see tools.py): exports and runs happen in a subprocess there.
"""

from .. import Format, Option, register

FORMAT = register(Format(
    name="executorch", title="ExecuTorch", runtime="ExecuTorch", suffixes=(".pte",), package=__name__,
    modules=("executorch",),
    exporter=".export:export_executorch", runner=".runner:ExecuTorchRunner", validator=".validate:check_pte",
    locator=".locate:locate",
    floor=".floor:floor", precisions=("fp32", "fp16"),
    export_options=(
        Option("precision", "fp32", "fp16 runs the model in half precision, sums too where the CPU has fp16 "
                                    "arithmetic (labelled; parity needs fp32)", ("fp32", "fp16"), flag="--precision",
               panel=True),
        Option("delegate", "xnnpack", "XNNPACK (the CPU delegate phones use) or the portable kernels only",
               ("xnnpack", "portable"), panel=True)),
    variants={"int8": ".compress:int8"},
    default=False, order=40,
    notes="needs the Android tools env (make .venv/android/.installed); converts in tens of seconds. fp16: XNNPACK "
          "sums in half precision on CPUs with fp16 arithmetic (phones, AVX512-FP16), so deep nets land beyond the "
          "fp16 tolerance: a limit of fp16 sums, not of the lowering (docs/formats.md has the figures). int8: PT2E "
          "with XNNPACKQuantizer, calibrated on the sample images, from a model exported in this session",
))
