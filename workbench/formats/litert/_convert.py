"""Tools env: convert a saved torch.export program to a LiteRT .tflite with litert-torch (run by
tools.run_tool). Request: {"program": .pt2 path, "out": .tflite path, "precision": "fp32" | "fp16"}."""

import json
import logging
import os
import sys
import warnings

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


def answer(request: dict) -> dict:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = main(request)
    except Exception as exc:
        result = {"error": f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0][:300]}"}
    # offline.py's lists, over this process's life: what it tried to reach and what it spawned
    return dict(result, network=list(network), spawned=list(spawned))  # noqa: F821


if __name__ == "__main__":
    if sys.argv[1] == "--serve":  # a warm converter (tools.convert): requests until idle for argv[2] seconds
        from _channel import serve

        serve(answer, {"ready": True}, idle=float(sys.argv[2]))
    else:
        result = answer(json.load(open(sys.argv[1])))
        with open(sys.argv[2], "w") as f:
            json.dump(result, f)
