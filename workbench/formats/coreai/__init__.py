"""Core AI: Apple's newer road to iOS and macOS 27 beside Core ML. coreai-torch converts a torch.export
program to an `.aimodel` asset (a folder: main.mlirb, MLIR bytecode; main.hash; metadata.json), run here by
Apple's own Core AI runtime, whose Linux build ships inside coreai-core (the `coreai` extra).

No native preprocessing (`native=None`): Core AI has no scale/bias on its inputs, so the preprocessing goes
into the graph, exact. On a device an input may be an image (Core AI's ImageType: a CVPixelBuffer or a Metal
texture of a FourCC pixel format, RGB24, ARGB32, BGRA32 or YpCbCr 4:2:0, turned into a tensor by the graph's
`image_to_tensor` op), but coreai-torch's TorchConverter declares tensor inputs only, and the Linux runtime has
no image inputs at all (`coreai.runtime.HAS_IMAGE_SUPPORT` is False: pixel buffers need CoreVideo). Both
packages are beta and pinned (docs/formats.md says what may differ on a device).
"""

from .. import Format, Option, register

FORMAT = register(Format(
    name="coreai", title="Core AI", runtime="Core AI", suffixes=(".aimodel",), package=__name__,
    modules=("coreai_torch", "coreai"),
    exporter=".export:export_coreai", runner=".runner:CoreAIRunner", validator=".validate:check_aimodel",
    locator=".locate:locate", files=".files:files", netron=".graph:netron_file", floor=".floor:floor",
    native=None, precisions=("fp32", "fp16"),
    export_options=(Option("precision", "fp32", "fp16: weights and compute in Float16, float32 input and outputs "
                                                "(labelled; parity needs fp32)", ("fp32", "fp16"),
                           flag="--precision", panel=True),),
    variants={name: f".compress:{name}" for name in ("int8_weights", "int4_weights", "palettize8", "palettize4")},
    default=False, order=35,
    notes="opt-in: pip install '.[coreai]' (coreai-torch 0.4.3 and coreai-core 1.0.0b3, both beta; coreai-torch "
          "warns it is validated with torch<=2.13). Runs in Apple's Core AI runtime (Linux build): CPU only, about "
          "20x slower than PyTorch eager, no compute-unit choice or device specialization here. Preprocessing in the "
          "graph: Core AI has no scale/bias on its inputs; on a device an input may be an image (ImageType: a "
          "CVPixelBuffer of RGB24/ARGB32/BGRA32/YpCbCr 4:2:0 turned into a tensor by the graph's image_to_tensor "
          "op, the normalization still graph ops), but coreai-torch converts tensor inputs only and Linux has "
          "no image inputs (coreai.runtime.HAS_IMAGE_SUPPORT is False). Netron cannot read its program: the graph "
          "view is the program as text (graph.program_text). Variants: coreai-opt weight compression in the "
          "Android tools env (make .venv/android/.installed)",
))
