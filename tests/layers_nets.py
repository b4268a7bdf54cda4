"""The residual net with in-place ops that tests/test_layers.py breaks layer by layer; a file of its own so the
CLI can load it as a user's model file."""

import torch
from torch import nn


class Block(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.c1 = nn.Conv2d(width, width, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.c2 = nn.Conv2d(width, width, 3, padding=1)

    def forward(self, x):
        y = self.relu(self.c1(x))
        y = self.c2(y)
        y += x  # in place: the value c2 computed must be recorded before this changes it
        return self.relu(y)


class ResidualNet(nn.Module):
    def __init__(self, width=4, classes=3):
        super().__init__()
        self.stem = nn.Conv2d(3, width, 3, padding=1)
        self.act = nn.ReLU(inplace=True)
        self.block = Block(width)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(width, classes)

    def forward(self, x):
        return self.head(torch.flatten(self.pool(self.block(self.act(self.stem(x)))), 1))


def residual_net(stem_gain: float = 1.0):
    torch.manual_seed(0)
    net = ResidualNet().eval()
    with torch.no_grad():
        net.stem.weight.mul_(stem_gain)
    return net


def hot_net():
    """The net whose stem's output passes fp16's 65504."""
    return residual_net(1e5)
