"""Shared by the format tests (imported: tests/conftest.py already has the name conftest): the tolerance, a
parity measure, sessions, and an export watched for the processes it spawns and the sockets it opens."""

import sys

import numpy as np
import pytest
import torch

from conftest import ROOT, SAMPLES, tiny_classifier
from workbench import Preprocess
from workbench.session import Session
from workbench.tasks import ImageToImage
from workbench.zoo import SuperResolutionNet

FP32 = 1e-4  # of the reference's range


def spread(session, outputs):
    """The worst |converted - PyTorch| over every output, as a fraction of the reference's range."""
    return max(float(np.abs(outputs[k] - v).max() / np.ptp(v)) for k, v in session.outputs.items())


_events = None


def _audit(event, args):
    if _events is not None and event in ("socket.connect", "subprocess.Popen", "os.system", "os.posix_spawn",
                                         "os.exec", "os.spawn"):
        _events.append((event, args[1] if event in ("socket.connect", "subprocess.Popen") else args[0]))
        if event == "socket.connect":
            raise ConnectionRefusedError("this test refuses the network")


sys.addaudithook(_audit)


def watched(call, *args, **kwargs):
    """call(*args, **kwargs), with every process it spawned and connection it tried (connections refused)."""
    global _events
    _events = []
    try:
        return call(*args, **kwargs), _events
    finally:
        _events = None


def watched_export(session, *args, **kwargs):
    """session.export, with every process it spawned and connection it tried (connections refused)."""
    return watched(session.export, *args, **kwargs)


def recording_convert(module, monkeypatch) -> list:
    """The results of every tools-env conversion `module` runs while the test lasts (each has the lists of
    what the converter tried to reach, `network`, and spawned, `spawned`)."""
    results, original = [], module.convert

    def recording(*args, **kwargs):
        results.append(original(*args, **kwargs))
        return results[-1]

    monkeypatch.setattr(module, "convert", recording)
    return results


def calibration(session, artifact, preprocess=None):
    """The sample images as a compressed variant of `artifact` is calibrated on, as Session.check builds it."""
    from workbench.formats import Calibration

    return Calibration(tuple(i.name for i in session.images), session.pixels,
                       preprocess or artifact.preprocess or session.training_preprocess,
                       expected=artifact.preprocess or session.training_preprocess, inside=artifact.preprocess)


def agreement(session, outputs) -> float:
    """Top-1 agreement with PyTorch over the sample images (a classifier's one output)."""
    (name, ref), = session.outputs.items()
    return float(np.mean(outputs[name].argmax(1) == ref.argmax(1)))


def classifier_session(runtime_options=None, preset="imagenet"):
    return Session(tiny_classifier(), SAMPLES, preprocess=Preprocess.preset(preset, size=(48, 48)),
                   task="classification", runtime_options=runtime_options)


def super_resolution_session(size=32):
    model = SuperResolutionNet(upscale_factor=3)
    model.load_state_dict(torch.load(ROOT / "notebooks/weights/super_resolution_x3.pth", map_location="cpu",
                                     weights_only=True))
    return Session(model.eval(), SAMPLES, preprocess=Preprocess.preset("gray", size=(size, size)),
                   task=ImageToImage(output_range=(0.0, 1.0)))



def session_fixture(runtime_options=None, *, export: tuple[str, str] | None = None):
    """A module-scoped `session` fixture: the classifier session, closed after the module; with export
    (format, file name), that file written first."""

    @pytest.fixture(scope="module")
    def session(tmp_path_factory):
        s = classifier_session(runtime_options)
        if export:
            fmt, name = export
            s.export(fmt, tmp_path_factory.mktemp(fmt) / name)
        yield s
        s.close()

    return session
