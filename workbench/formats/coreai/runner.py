"""Apple's Core AI runtime (the Linux build inside coreai-core), in process, behind the synchronous Runner.

`activate` compiles the asset once (`AIModelAsset.executable()`: on Linux it lowers the program to a temporary
`.aimodelx` and loads it; `AIModel.load` on the `.aimodel` itself looks for a device-specialized build that
only macOS makes) and loads its `main` function; each run awaits that function per image on the runner's own
event loop. The runtime has no thread setting: each call runs its ops one after another on Swift's
dispatch workers (about one core whatever the machine has).
"""

from __future__ import annotations

import numpy as np

from ...errors import WorkbenchError, first_line
from ..base import Runner
from . import _packages
from ._loop import Loop, native_quiet


class CoreAIRunner(Runner):
    name = "coreai"
    label = "Core AI"

    def __init__(self, artifact):
        super().__init__()
        self.artifact, self.preprocess = artifact, artifact.preprocess
        self.loop = self.model = self.function = self._context = None
        self.compiles = 0  # how many times this runner compiled its asset (once per activation)

    def _activate(self):
        from .validate import load

        asset, _ = load(self.artifact.path)
        self.loop = Loop()
        self._context = asset.executable()
        try:
            self.model = self.loop.run(self._context.__aenter__())
            with native_quiet():
                self.function = self.model.load_function("main")
        except Exception as exc:
            self._close()
            raise WorkbenchError(f"Core AI cannot compile {self.artifact.path}: {first_line(exc)}; export it "
                                 "again") from exc
        self.compiles += 1
        desc = self.function.desc
        self.input_name = desc.input_names[0]
        self.output_names = list(desc.output_names)
        if len(self.output_names) != len(self.artifact.output_names):
            names = self.output_names
            self._close()
            raise WorkbenchError(f"{self.artifact.path} has outputs {names}, the model "
                                 f"{list(self.artifact.output_names)}; export it again")
        self.label = f"Core AI {_packages.core_version()} (Apple's runtime, Linux)" + (
            " (fp16)" if self.artifact.precision == "fp16" else "")

    def _close(self):
        if self._context is not None and self.model is not None:
            try:
                self.loop.run(self._context.__aexit__(None, None, None))
            except Exception:  # the temporary build goes with it; nothing left to free
                pass
        if self.loop is not None:
            self.loop.close()
        self.loop = self.model = self.function = self._context = None

    def _deactivate(self):
        self._close()

    def call(self, x: np.ndarray) -> list[np.ndarray]:
        """The runtime's outputs for one input (C, H, W, with its batch axis (1, C, H, W)), in the model's order."""
        rt = _packages.runtime()
        out = self.loop.run(self.function({self.input_name: rt.NDArray(np.ascontiguousarray(x, np.float32))}))
        return [np.array(out[n].numpy(), np.float32) for n in self.output_names]

    def _run(self, inputs):
        x = np.ascontiguousarray(inputs, np.float32)
        want = self.function.desc.input_descriptor(self.input_name).shape
        rows = []
        try:
            for i in range(len(x)):  # the asset is exported at batch 1: image by image
                rows.append(self.call(x[i:i + 1]))
        except Exception as exc:
            raise WorkbenchError(f"Core AI failed on {self.artifact.path} with input {list(x.shape[1:])} (the model "
                                 f"takes {want}): {first_line(exc)}") from exc
        return {n: np.concatenate([r[j] for r in rows]) for j, n in enumerate(self.artifact.output_names)}
