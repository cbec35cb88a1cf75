"""The level network: one context patch around a vertebra -> which level it is (``vertebra_level.LEVELS``).

A small CNN (plain 3x3 convolutions and residual blocks, quick on one CPU thread) down to stride
16; the last feature map is kept as a map (not pooled away: whether a rib's head lies at the centre
vertebra or at its neighbour is a matter of where) and read by two fully connected layers.

Input (B, 1, H, W) standardised patches (96 x 96 unless the weights say otherwise; H and W
multiples of 16) (``vertebra_patch.standardise``); output ``level_logits``
(B, 21). Torch only, no Slicer.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .vertebra_network import Residual, conv_bn

OUTPUTS = ("level_logits",)
N_LEVELS = 21


class LevelNet(nn.Module):
    def __init__(self, widths=(16, 32, 64, 128), hw=(96, 96)):
        super().__init__()
        c2, c4, c8, c16 = widths
        self.widths = tuple(widths)
        self.hw = tuple(hw)
        self.features = nn.Sequential(
            conv_bn(1, c2, 2), conv_bn(c2, c4, 2), Residual(c4),
            conv_bn(c4, c8, 2), Residual(c8),
            conv_bn(c8, c16, 2), Residual(c16),
            nn.Conv2d(c16, 24, 1), nn.BatchNorm2d(24), nn.ReLU(inplace=True))
        cells = (hw[0] // 16) * (hw[1] // 16)
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(0.3), nn.Linear(24 * cells, 128), nn.ReLU(inplace=True),
                                  nn.Linear(128, N_LEVELS))

    def forward(self, x: torch.Tensor) -> dict:
        return {"level_logits": self.head(self.features(x))}
