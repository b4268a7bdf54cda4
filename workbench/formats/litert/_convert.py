"""Tools env: convert a saved torch.export program to a LiteRT .tflite with litert-torch (run by
tools.run_tool). Request: {"program": .pt2 path, "out": .tflite path, "precision": "fp32" | "fp16"}."""

import json
import logging
import os
import sys
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


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
    request_path, result_path = sys.argv[1], sys.argv[2]
    logging.disable(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = main(json.load(open(request_path)))
    except Exception as exc:
        result = {"error": f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:300]}"}
    result.update(network=network, spawned=spawned)  # noqa: F821 - offline.py's globals
    with open(result_path, "w") as f:
        json.dump(result, f)
