"""The KNEEL network, our implementation: an hourglass of hierarchical multi-scale parallel (HMP)
residual blocks with a soft-argmax head (sub-pixel coordinates straight from the heatmaps).

The same class serves both stages:
- the knee detector (2 points: the patient's right and left knee centres, plus a presence logit
  for each) on the whole film letterboxed into a small square,
- the landmark network (16 points) on the 140 mm region of interest of one knee.
Width (channels) and depth (hourglass levels) are parameters and are stored with the weights.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class HMPBlock(nn.Module):
    """Hierarchical, parallel and multi-scale residual block (Bulat & Tzimiropoulos 2017, as in
    KNEEL): three chained 3x3 convolutions with C/2, C/4, C/4 channels whose outputs are
    concatenated (receptive fields 3, 5, 7), plus the identity (or a 1x1 projection)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        c2, c4 = cout // 2, cout // 4
        c4b = cout - c2 - c4
        self.bn1, self.conv1 = nn.BatchNorm2d(cin), nn.Conv2d(cin, c2, 3, padding=1, bias=False)
        self.bn2, self.conv2 = nn.BatchNorm2d(c2), nn.Conv2d(c2, c4, 3, padding=1, bias=False)
        self.bn3, self.conv3 = nn.BatchNorm2d(c4), nn.Conv2d(c4, c4b, 3, padding=1, bias=False)
        self.skip = None if cin == cout else nn.Sequential(nn.BatchNorm2d(cin), nn.ReLU(inplace=True),
                                                           nn.Conv2d(cin, cout, 1, bias=False))

    def forward(self, x):
        a = self.conv1(F.relu(self.bn1(x)))
        b = self.conv2(F.relu(self.bn2(a)))
        c = self.conv3(F.relu(self.bn3(b)))
        return torch.cat([a, b, c], 1) + (x if self.skip is None else self.skip(x))


class Hourglass(nn.Module):
    def __init__(self, depth: int, width: int):
        super().__init__()
        self.up = HMPBlock(width, width)
        self.down = HMPBlock(width, width)
        self.inner = Hourglass(depth - 1, width) if depth > 1 else HMPBlock(width, width)
        self.after = HMPBlock(width, width)

    def forward(self, x):
        skip = self.up(x)
        y = self.after(self.inner(self.down(F.max_pool2d(x, 2))))
        return skip + F.interpolate(y, size=skip.shape[-2:], mode="nearest")


class KneelNet(nn.Module):
    """Input (B, 1, S, S) -> heatmaps (B, K, S/2, S/2), coordinates (B, K, 2) in input pixels
    (x, y; pixel centres at integers) by soft-argmax, and presence logits (B, K)."""

    def __init__(self, n_points: int = 16, width: int = 32, depth: int = 4, input_size: int = 128,
                 presence: str = "global"):
        super().__init__()
        if presence not in ("global", "attention"):
            raise ValueError(f"presence must be 'global' or 'attention', not {presence!r}")
        self.config = {"n_points": n_points, "width": width, "depth": depth, "input_size": input_size,
                       "presence": presence}
        self.stem = nn.Sequential(
            nn.Conv2d(1, width // 2, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(width // 2),
            nn.ReLU(inplace=True), HMPBlock(width // 2, width))
        self.hourglass = Hourglass(depth, width)
        self.post = nn.Sequential(HMPBlock(width, width), nn.BatchNorm2d(width), nn.ReLU(inplace=True))
        self.heatmap = nn.Conv2d(width, n_points, 1)
        self.presence = nn.Linear(width, n_points)
        self.log_temperature = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        f = self.post(self.hourglass(self.stem(x)))
        logits = self.heatmap(f) * torch.exp(self.log_temperature)
        b, k, h, w = logits.shape
        prob = torch.softmax(logits.reshape(b, k, h * w), -1).reshape(b, k, h, w)
        sy, sx = x.shape[-2] / h, x.shape[-1] / w
        xs = (torch.arange(w, device=x.device, dtype=prob.dtype) + 0.5) * sx - 0.5
        ys = (torch.arange(h, device=x.device, dtype=prob.dtype) + 0.5) * sy - 0.5
        cx = (prob.sum(2) * xs).sum(-1)
        cy = (prob.sum(3) * ys).sum(-1)
        coords = torch.stack([cx, cy], -1)
        if self.config["presence"] == "attention":
            # each point's presence from the features where its own heatmap looks (e.g. "is the knee
            # this channel points at a right knee?"): (B, K, C) -> (B, K)
            pooled = torch.einsum("bkhw,bchw->bkc", prob, f)
            presence = (pooled * self.presence.weight[None]).sum(-1) + self.presence.bias[None]
        else:
            presence = self.presence(f.mean((2, 3)))
        return {"coords": coords, "prob": prob, "presence": presence}


def wing_loss(pred: torch.Tensor, target: torch.Tensor, w: float = 5.0, eps: float = 1.0) -> torch.Tensor:
    """Wing loss (Feng et al. 2018) per point on the Euclidean error; returns (B, K)."""
    d = torch.linalg.norm(pred - target, dim=-1)
    c = w - w * torch.log(torch.tensor(1.0 + w / eps))
    return torch.where(d < w, w * torch.log(1 + d / eps), d - c)


