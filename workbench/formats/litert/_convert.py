"""Tools env: convert a saved torch.export program to a LiteRT .tflite with litert-torch (run by
tools.run_tool). Request: {"program": .pt2 path, "out": .tflite path, "precision": "fp32" | "fp16"}."""

import logging
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
logging.disable(logging.WARNING)


def main(request: dict) -> dict:
    import litert_torch
    import torch

    program = torch.export.load(request["program"])
    args = program.example_inputs[0]
    kwargs = {}
    if request["precision"] == "fp16":
        from litert_torch.generative.quantize import quant_recipes

        kwargs["quant_config"] = quant_recipes.full_fp16_recipe()
    model = litert_torch.convert(program.module(), args, **kwargs)
    model.export(request["out"])
    return {"notes": []}


if __name__ == "__main__":
    from _channel import converter

    converter(main, globals())  # offline.py put `network` and `spawned` there
