"""Code two or more formats share, so no format imports from a sibling's folder.

- `pytorch`: the trace (Core ML, TorchScript), the torch.export program (ExecuTorch, LiteRT), the nn.Module runner
  (PyTorch's reference side, TorchScript files);
- `mean_norm`: runtimes that apply a per-channel (x - mean) * norm to 8-bit pixels themselves (ncnn, MNN),
  and the ONNX file the converters of both start from;
- `tools_env`: the Android tools env (`.venv/android`) where ExecuTorch and LiteRT's converter run, offline;
- `offline` and `_channel`: what every tools-env script starts with (network refused, a pickle channel).

This package registers no format. Its folder is on a tools-env script's `sys.path`, so no module here may
share a name with a package a script imports (`torch.py` here once shadowed torch in ExecuTorch's converter).
"""
