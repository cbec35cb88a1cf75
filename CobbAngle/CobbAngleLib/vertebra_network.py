"""The second stage's network: one vertebra patch -> its four corners and how sure it is of each
endplate.

A small residual CNN (plain 3x3 convolutions, quick on one CPU thread) down to stride 16, a
feature pyramid back up to stride 4, one heatmap per corner read by soft-argmax (the expected
position under the heatmap's softmax: sub-pixel, and the same at every place in the patch), and an
uncertainty head: the Laplace scale (degrees) of the superior and of the inferior endplate's tilt,
from the pooled deep features and the spread of the corners' heatmaps.

Input (B, 1, H, W): standardised patches (``vertebra_patch.standardise``). Outputs: ``corners``
(B, 4, 2) patch pixels in the AASCE corner order, ``endplate_scale_deg`` (B, 2) superior,
inferior. Torch only, no Slicer.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

STRIDE = 4
OUTPUTS = ("corners", "endplate_scale_deg")


def conv_bn(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class Residual(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(c, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True),
                                  nn.Conv2d(c, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c))

    def forward(self, x):
        return F.relu(x + self.body(x))


class VertebraNet(nn.Module):
    def __init__(self, widths=(16, 32, 48, 96)):
        super().__init__()
        c2, c4, c8, c16 = widths
        self.stem = nn.Sequential(conv_bn(1, c2, 2), conv_bn(c2, c4, 2))  # stride 4
        self.s4 = nn.Sequential(Residual(c4))
        self.s8 = nn.Sequential(conv_bn(c4, c8, 2), Residual(c8), Residual(c8))
        self.s16 = nn.Sequential(conv_bn(c8, c16, 2), Residual(c16), Residual(c16))
        p = 48
        self.lat16, self.lat8, self.lat4 = nn.Conv2d(c16, p, 1), nn.Conv2d(c8, p, 1), nn.Conv2d(c4, p, 1)
        self.up8, self.up4 = conv_bn(p, p), conv_bn(p, p)
        self.heat = nn.Conv2d(p, 4, 1)
        self.scale = nn.Sequential(nn.Linear(c16 + 8, 64), nn.ReLU(inplace=True), nn.Linear(64, 2))

    def forward(self, x: torch.Tensor) -> dict:
        b, _, h, w = x.shape
        f4 = self.s4(self.stem(x))
        f8 = self.s8(f4)
        f16 = self.s16(f8)
        p = self.lat16(f16)
        p = self.up8(self.lat8(f8) + F.interpolate(p, size=f8.shape[-2:], mode="bilinear", align_corners=False))
        p = self.up4(self.lat4(f4) + F.interpolate(p, size=f4.shape[-2:], mode="bilinear", align_corners=False))
        logits = self.heat(p)  # (B, 4, h/4, w/4)
        gh, gw = logits.shape[-2:]
        prob = logits.flatten(2).softmax(-1)  # (B, 4, gh*gw)
        ys = torch.arange(gh, dtype=x.dtype, device=x.device) * STRIDE + (STRIDE - 1) / 2
        xs = torch.arange(gw, dtype=x.dtype, device=x.device) * STRIDE + (STRIDE - 1) / 2
        gx = xs[None, :].expand(gh, gw).reshape(-1)
        gy = ys[:, None].expand(gh, gw).reshape(-1)
        cx = (prob * gx).sum(-1)
        cy = (prob * gy).sum(-1)
        corners = torch.stack([cx, cy], -1)  # (B, 4, 2)
        spread = torch.sqrt(((prob * (gx - cx[..., None]) ** 2).sum(-1) + (prob * (gy - cy[..., None]) ** 2).sum(-1))
                            .clamp_min(1e-6))  # (B, 4) patch pixels
        pooled = f16.mean(dim=(2, 3))
        features = torch.cat([pooled, spread.detach() / STRIDE, torch.log(spread.detach())], 1)
        scale = F.softplus(self.scale(features)) + 0.2  # degrees, never 0
        return {"corners": corners, "endplate_scale_deg": scale, "heatmap_logits": logits}
