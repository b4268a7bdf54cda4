"""Shared by the format tests (imported: tests/conftest.py already has the name conftest): the tolerance, a
parity measure, sessions, and an export watched for the processes it spawns and the sockets it opens."""

import sys

import numpy as np
import torch

from conftest import ROOT, SAMPLES, tiny_classifier
from workbench import Preprocess
from workbench.session import Session
from workbench.tasks import ImageToImage
from workbench.zoo import SuperResolutionNet

FP32 = 1e-4  # of the reference's range


def spread(session, outputs):
    """The worst |converted - PyTorch| over every output, as a fraction of the reference's range."""
    return max(float(np.abs(outputs[k] - v).max() / np.ptp(v)) for k, v in session.reference.items())


_events = None


def _audit(event, args):
    if _events is not None and event in ("socket.connect", "subprocess.Popen", "os.system", "os.posix_spawn",
                                         "os.exec", "os.spawn"):
        _events.append((event, args[1] if event in ("socket.connect", "subprocess.Popen") else args[0]))
        if event == "socket.connect":
            raise ConnectionRefusedError("this test refuses the network")


sys.addaudithook(_audit)


def watched_export(session, *args, **kwargs):
    """session.export, with every process it spawned and connection it tried (connections refused)."""
    global _events
    _events = []
    try:
        return session.export(*args, **kwargs), _events
    finally:
        _events = None


def classifier_session(runtime_options=None, preset="imagenet"):
    return Session(tiny_classifier(), SAMPLES, preprocess=Preprocess.preset(preset, size=(48, 48)),
                   task="classification", runtime_options=runtime_options)


def super_resolution_session(size=32):
    model = SuperResolutionNet(upscale_factor=3)
    model.load_state_dict(torch.load(ROOT / "notebooks/weights/super_resolution_x3.pth", map_location="cpu",
                                     weights_only=True))
    return Session(model.eval(), SAMPLES, preprocess=Preprocess.preset("gray", size=(size, size)),
                   task=ImageToImage(output_range=(0.0, 1.0)))
