"""TorchScript's bare call, for the bench: the module called as the runner calls it, one image per torch thread."""

from __future__ import annotations

import warnings


def floor(artifact, x, pixels=None, stack=None):
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = torch.jit.load(str(artifact.path), map_location="cpu").eval()
    step = torch.get_num_threads()
    batches = [torch.from_numpy(x[i:i + step]) for i in range(0, len(x), step)]

    def call():
        with torch.inference_mode():
            for batch in batches:
                module(batch)

    return call
