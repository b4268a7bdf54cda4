import platform
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_images"

warnings.filterwarnings("ignore", category=FutureWarning)


@pytest.fixture(scope="session")
def samples() -> Path:
    return SAMPLES


@pytest.fixture
def seed():
    torch.manual_seed(0)
    np.random.seed(0)


def pytest_collection_modifyitems(config, items):
    if platform.system() == "Darwin":
        return
    skip = pytest.mark.skip(reason="Core ML's own predict runs only on macOS")
    for item in items:
        if "macos" in item.keywords:
            item.add_marker(skip)


def tiny_classifier(num_classes=4, in_channels=3):
    torch.manual_seed(0)
    from workbench.zoo import SmallCNN

    return SmallCNN(num_classes=num_classes, in_channels=in_channels, width=4).eval()
