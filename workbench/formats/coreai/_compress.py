"""Tools env: compress a Core AI .aimodel's weights with Apple's coreai-opt (run by tools.convert).

coreai-opt needs torchao, which would slow `import coremltools` in the workbench's env (coremltools imports
it whenever it is installed), so it lives in the Android tools env and works from the file alone.
Request: {"model": .aimodel path, "out": .aimodel path, "variant": a key of VARIANTS}. Result: notes, and
offline.py's `network` and `spawned` lists.

coreai-opt's k-means (for palettization) compiles its 1-D k-means at first use with torch's C++ extension
loader (a compiler run, and a build cache in the home folder); coremltools ships the same kmeans1d code
already compiled, so its library is loaded in its place, found without importing coremltools.
"""

import ctypes
import glob
import importlib.util
import logging
import os
from pathlib import Path

logging.disable(logging.WARNING)  # coreai-opt warns for every weight it leaves as it is


def _kmeans1d_prebuilt():
    from coreai_opt.deps._kmeans1d import core

    spec = importlib.util.find_spec("coremltools")
    found = glob.glob(os.path.join(spec.submodule_search_locations[0], "_deps", "kmeans1d", "_core*.so"))
    if found:
        core._DLL = ctypes.cdll.LoadLibrary(found[0])


def _passes():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from coreai_opt import coreai_utils
        from coreai_opt.coreai_utils import CompressionGranularity as G
        from coreai_opt.coreai_utils import DType as D
    # every weight whatever its size (the default skips tensors under 1024 elements: a small model would
    # come back unchanged); k-means in this process (the default is a pool of 4 worker processes)
    quantize, palettize = coreai_utils.quantize_weights, coreai_utils.palettize_weights
    return {
        "int8_weights": lambda p: quantize(p, D.INT8, granularity=G.PER_CHANNEL, weight_num_threshold=0),
        "int4_weights": lambda p: quantize(p, D.INT4, granularity=G.PER_CHANNEL, weight_num_threshold=0),
        "palettize8": lambda p: palettize(p, None, n_bits=8, weight_num_threshold=0, num_kmeans_workers=1),
        "palettize4": lambda p: palettize(p, None, n_bits=4, weight_num_threshold=0, num_kmeans_workers=1),
    }


def main(request: dict) -> dict:
    from coreai.authoring.asset import AIModelAsset

    _kmeans1d_prebuilt()
    passes = _passes()
    asset = AIModelAsset.load(Path(request["model"]))
    compressed = passes[request["variant"]](asset.program)
    meta = asset.metadata
    meta.set_custom("workbench.compression", request["variant"])
    compressed.save_asset(Path(request["out"]), metadata=meta)
    import coreai_opt

    return {"notes": [f"coreai-opt {coreai_opt.__version__}"]}


if __name__ == "__main__":
    from _channel import converter

    converter(main, globals())  # offline.py put `network` and `spawned` there
