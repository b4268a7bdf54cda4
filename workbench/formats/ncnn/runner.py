"""ncnn's Python binding: the preprocessing applied by ncnn itself (from_pixels + substract_mean_normalize)."""

from __future__ import annotations

import numpy as np

from ...errors import WorkbenchError, first_line
from ..common.mean_norm import MeanNormRunner


def pixel_mat(ncnn, image: np.ndarray, pre):
    """ncnn's Mat for one (H, W, C) uint8 image, preprocessed by ncnn itself: from_pixels, then
    substract_mean_normalize with the preprocessing's exact per-channel mean and norm."""
    mn = pre.mean_norm()
    kind = (ncnn.Mat.PixelType.PIXEL_GRAY if pre.grayscale else
            ncnn.Mat.PixelType.PIXEL_RGB2BGR if pre.bgr else ncnn.Mat.PixelType.PIXEL_RGB)
    h, w = image.shape[:2]
    mat = ncnn.Mat.from_pixels(image, kind, w, h)
    mat.substract_mean_normalize(list(mn["mean"]), list(mn["norm"]))
    return mat


class NcnnRunner(MeanNormRunner):
    name = "ncnn"
    label = "ncnn"

    def __init__(self, artifact, *, threads: int = 1):
        super().__init__()
        self.artifact, self.preprocess, self.threads = artifact, artifact.preprocess, threads
        self.net = None

    def _activate(self):
        import ncnn

        from .validate import load

        self.ncnn = ncnn
        self.net = load(self.artifact.path, fp16=self.artifact.precision == "fp16", threads=self.threads)
        self.input_name = self.net.input_names()[0]
        self.output_names = list(self.net.output_names())
        if len(self.output_names) != len(self.artifact.output_names):
            raise WorkbenchError(f"{self.artifact.path} has {len(self.output_names)} outputs, the model "
                                 f"{len(self.artifact.output_names)}; export it again")
        version = getattr(ncnn, "__version__", "")
        self.label = f"ncnn {version}".strip() + (" (fp16)" if self.artifact.precision == "fp16" else "")

    def _deactivate(self):
        self.net = None

    def _extract(self, mat) -> list[np.ndarray]:
        ex = self.net.create_extractor()
        ex.input(self.input_name, mat)
        outs = []
        for name in self.output_names:
            ret, out = ex.extract(name)
            if ret != 0:
                raise WorkbenchError(f"ncnn failed to compute output {name!r} of {self.artifact.path} (code {ret})")
            outs.append(np.array(out)[None])  # ncnn drops the batch axis
        return outs

    def _collect(self, rows):
        return {n: np.concatenate([r[j] for r in rows]) for j, n in enumerate(self.artifact.output_names)}

    def _run(self, inputs):
        x = np.ascontiguousarray(inputs, np.float32)
        try:
            return self._collect([self._extract(self.ncnn.Mat(np.ascontiguousarray(x[i]))) for i in range(len(x))])
        except WorkbenchError:
            raise
        except Exception as exc:
            raise WorkbenchError(f"ncnn failed on input {x.shape[1:]}: {first_line(exc)}") from exc

    def _run_native(self, images, pre):
        return self._collect([self._extract(pixel_mat(self.ncnn, img, pre)) for img in images])
