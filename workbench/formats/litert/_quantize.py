"""Tools env: quantize a LiteRT .tflite with ai-edge-quantizer (run by tools.convert).

Request: {"model": .tflite path, "out": .tflite path, "recipe": a function of ai_edge_quantizer.recipe
("dynamic_wi8_afp32", "weight_only_wi8_afp32", "static_wi8_ai8"), "calibration": an .npy of (N, C, H, W)
float32 inputs, or None}. Result: the notes, and offline.py's `network` and `spawned` lists.
"""

import logging
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
logging.disable(logging.WARNING)


def main(request: dict) -> dict:
    import numpy as np
    from ai_edge_quantizer import quantizer, recipe

    qt = quantizer.Quantizer(request["model"], getattr(recipe, request["recipe"])())
    calibrated = None
    if request.get("calibration"):
        from ai_edge_litert.interpreter import Interpreter

        signatures = Interpreter(request["model"]).get_signature_list()
        key = next(iter(signatures))
        name = signatures[key]["inputs"][0]
        inputs = np.load(request["calibration"])
        calibrated = qt.calibrate({key: [{name: inputs[i:i + 1]} for i in range(len(inputs))]}, num_threads=1)
    result = qt.quantize(calibrated, enable_progress_bar=False, enable_progress_report=False)
    result.export_model(request["out"], overwrite=True)
    return {"notes": []}


if __name__ == "__main__":
    from _channel import converter

    converter(main, globals())  # offline.py put `network` and `spawned` there
