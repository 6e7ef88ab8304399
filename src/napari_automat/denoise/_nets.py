"""The mixture-of-experts networks (torch). Imported only through :mod:`.moe`, after ``extras.require``.

Each expert is a small residual U-Net (two resolution levels, predicts the noise) that sees the tile
and a second channel, the Bragg-filtered tile (the periodic estimate; the tile itself when the image
has no lattice); the gate routes a tile from a learned encoding of both channels and explicit
conditioning features (dose, contrast, sampling, periodicity), see
:func:`napari_automat.denoise.moe.conditioning`.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def _conv(cin: int, cout: int, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, padding=dilation, dilation=dilation)


class Expert(nn.Module):
    """Residual U-Net: ``x - noise(x, guide)`` on channel 0 of the input ``(x, guide…)``; height and width
    must be multiples of 4."""

    def __init__(self, channels: int = 16, in_channels: int = 2):
        super().__init__()
        c = channels
        act = nn.ReLU(inplace=True)
        self.inc = nn.Sequential(_conv(in_channels, c), act, _conv(c, c), act)
        self.down1 = nn.Sequential(nn.Conv2d(c, 2 * c, 3, stride=2, padding=1), act, _conv(2 * c, 2 * c), act)
        self.down2 = nn.Sequential(nn.Conv2d(2 * c, 4 * c, 3, stride=2, padding=1), act,
                                   _conv(4 * c, 4 * c, 2), act, _conv(4 * c, 4 * c, 4), act, _conv(4 * c, 4 * c), act)
        self.up2 = nn.ConvTranspose2d(4 * c, 2 * c, 2, stride=2)
        self.dec1 = nn.Sequential(_conv(4 * c, 2 * c), act, _conv(2 * c, 2 * c), act)
        self.up1 = nn.ConvTranspose2d(2 * c, c, 2, stride=2)
        self.dec0 = nn.Sequential(_conv(2 * c, c), act, nn.Conv2d(c, 1, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.inc(x)
        b = self.down1(a)
        d = self.down2(b)
        u = self.dec1(torch.cat([self.up2(d), b], 1))
        noise = self.dec0(torch.cat([self.up1(u), a], 1))
        return x[:, :1] - noise


class Gate(nn.Module):
    """Soft routing weights ``(batch, K)`` from a tile ``(batch, in_channels, h, w)`` and conditioning
    ``(batch, n_cond)``."""

    def __init__(self, n_experts: int, n_cond: int, width: int = 16, in_channels: int = 2):
        super().__init__()
        act = nn.ReLU(inplace=True)
        self.encoder = nn.Sequential(nn.Conv2d(in_channels, 8, 5, stride=2, padding=2), act,
                                     nn.Conv2d(8, width, 3, stride=2, padding=1), act,
                                     nn.Conv2d(width, width, 3, stride=2, padding=1), act)
        self.head = nn.Sequential(nn.Linear(2 * width + n_cond, 32), act, nn.Linear(32, n_experts))

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = self.encoder(x)
        # mean and spread of the features: the spread tells lattice from flat or amorphous tiles
        feats = torch.cat([h.mean(dim=(2, 3)), h.flatten(2).std(dim=2), cond], 1)
        return F.softmax(self.head(feats), dim=1)


class MixtureOfExperts(nn.Module):
    """``K`` experts blended by the gate's per-tile weights."""

    def __init__(self, n_experts: int = 4, channels: int = 16, n_cond: int = 4, in_channels: int = 2):
        super().__init__()
        self.experts = nn.ModuleList([Expert(channels, in_channels) for _ in range(n_experts)])
        self.gate = Gate(n_experts, n_cond, in_channels=in_channels)
        self.config = {"n_experts": n_experts, "channels": channels, "n_cond": n_cond, "in_channels": in_channels}

    def forward(self, x: torch.Tensor, cond: torch.Tensor, top_k: int | None = None):
        """Returns ``(output, gate weights)``. ``top_k``: evaluate only each tile's ``top_k`` experts
        (weights renormalised over them); None runs all (training)."""
        weights = self.gate(x, cond)
        k_all = len(self.experts)
        if top_k is None or top_k >= k_all:
            outs = torch.stack([e(x) for e in self.experts], 1)  # (b, K, 1, h, w)
            return (weights[:, :, None, None, None] * outs).sum(1), weights
        top_w, top_i = torch.topk(weights, top_k, dim=1)
        top_w = top_w / top_w.sum(1, keepdim=True)
        out = torch.zeros_like(x[:, :1])
        for k, expert in enumerate(self.experts):
            rows, slot = torch.nonzero(top_i == k, as_tuple=True)
            if len(rows):
                out[rows] += top_w[rows, slot][:, None, None, None] * expert(x[rows])
        return out, weights
