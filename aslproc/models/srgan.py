"""Generator and patch critic of the multi-scale super-resolution GAN (after Cui, Gong et al.).

Architecture only (torch, no I/O, no device choice). The generator of one pyramid level is a
small 3D U-Net that reads the upsampled CBF of the level below and anatomical guide channels
(the registered T1w) and adds a residual to the CBF channel; its last convolution starts at
zero, so an untrained generator is the identity (a level starts from the plain upsampling and
a warm start from the level below changes nothing until it is trained). The critic is a
Markovian (patch) discriminator: a fully convolutional stack that scores every receptive
field separately. It uses instance norm or none, never batch norm, which the WGAN-GP paper
advises against in the critic (the gradient penalty is taken per sample).

Shapes follow MONAI: tensors are ``(B, C, *spatial)`` with three spatial axes. The U-Net
takes any size of at least ``2 ** (len(features) - 1)`` per axis; odd sizes work because the
upsampled map is replicate-padded to the skip connection's size (as MONAI's ``UpCat``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

logger = logging.getLogger(__name__)


def _block(cin: int, cout: int) -> nn.Sequential:
    """Two 3×3×3 convolutions with LeakyReLU (no normalisation: tiny per-subject batches)."""
    return nn.Sequential(
        nn.Conv3d(cin, cout, 3, padding=1, padding_mode='replicate'), nn.LeakyReLU(0.2),
        nn.Conv3d(cout, cout, 3, padding=1, padding_mode='replicate'), nn.LeakyReLU(0.2))


class SRGenerator(nn.Module):
    """Residual 3D U-Net of one pyramid level: ``out = x[:, :1] + unet(x)``.

    Parameters
    ----------
    in_channels : int
        CBF channel first, then guide channels (default 2: CBF and T1w).
    features : sequence of int
        Channels per U-Net level, finest first; ``len(features) - 1`` poolings by 2.
    out_channels : int
        Output channels; the residual is added to the first ``out_channels`` inputs.

    Examples
    --------
    >>> g = SRGenerator(2, (4, 8))
    >>> x = torch.rand(1, 2, 5, 6, 7)
    >>> tuple(g(x).shape), bool(torch.equal(g(x), x[:, :1]))   # zero-initialised residual
    ((1, 1, 5, 6, 7), True)
    """

    def __init__(self, in_channels: int = 2, features: Sequence[int] = (16, 32),
                 out_channels: int = 1):
        super().__init__()
        features = tuple(int(f) for f in features)
        if not features or min(features) < 1:
            raise ValueError(f'features must be positive channel counts, got {features}')
        if not 1 <= out_channels <= in_channels:
            raise ValueError('out_channels must be between 1 and in_channels')
        self.in_channels, self.out_channels, self.features = in_channels, out_channels, features
        self.min_size = 2 ** (len(features) - 1)
        self.down = nn.ModuleList()
        cin = in_channels
        for f in features:
            self.down.append(_block(cin, f))
            cin = f
        self.up = nn.ModuleList(_block(features[i] + features[i + 1], features[i])
                                for i in reversed(range(len(features) - 1)))
        self.head = nn.Conv3d(features[0], out_channels, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, X, Y, Z) → (B, out_channels, X, Y, Z)."""
        if x.ndim != 5 or x.shape[1] != self.in_channels:
            raise ValueError(f'expected (B, {self.in_channels}, X, Y, Z), got {tuple(x.shape)}')
        if min(x.shape[2:]) < self.min_size:
            raise ValueError(f'spatial size {tuple(x.shape[2:])} is below the minimum '
                             f'{self.min_size} of a {len(self.features)}-level U-Net')
        skips, h = [], x
        for i, block in enumerate(self.down):
            if i:
                h = F.avg_pool3d(h, 2, ceil_mode=True)
            h = block(h)
            skips.append(h)
        for block, skip in zip(self.up, reversed(skips[:-1]), strict=True):
            h = F.interpolate(h, scale_factor=2, mode='trilinear', align_corners=False)
            h = _match(h, skip.shape[2:])
            h = block(torch.cat([skip, h], 1))
        return x[:, :self.out_channels] + self.head(h)


def _match(h: torch.Tensor, size) -> torch.Tensor:
    """Crop or replicate-pad the spatial axes of ``h`` to ``size`` (odd-size skips)."""
    h = h[..., :size[0], :size[1], :size[2]]
    pad = [p for s, t in zip(reversed(h.shape[2:]), reversed(tuple(size)), strict=True)
           for p in (0, t - s)]
    return F.pad(h, pad, mode='replicate') if any(pad) else h


class PatchCritic(nn.Module):
    """Markovian WGAN critic: one score per receptive field, shape (B, 1, x, y, z).

    A 3×3×3 convolution, then ``len(features) - 1`` strided (2) 3×3×3 convolutions, each with
    LeakyReLU(0.2) and optional instance norm, and a 3×3×3 scoring convolution (no padding).

    Parameters
    ----------
    in_channels : int
        Channels of the images scored (1: CBF).
    features : sequence of int
        Channels per layer; the spatial size halves after the first.
    norm : {'instance', 'none'}
        Normalisation after each strided convolution (never batch norm: WGAN-GP).

    Examples
    --------
    >>> c = PatchCritic(1, (4, 8, 16))
    >>> tuple(c(torch.rand(2, 1, 16, 16, 12)).shape), c.min_size
    ((2, 1, 2, 2, 1), 9)
    """

    def __init__(self, in_channels: int = 1, features: Sequence[int] = (16, 32, 64),
                 norm: str = 'instance'):
        super().__init__()
        features = tuple(int(f) for f in features)
        if not features or min(features) < 1:
            raise ValueError(f'features must be positive channel counts, got {features}')
        if norm not in ('instance', 'none'):
            raise ValueError(f"norm must be 'instance' or 'none' (no batch norm), got {norm!r}")
        self.in_channels, self.features = in_channels, features
        layers = [nn.Conv3d(in_channels, features[0], 3, padding=1), nn.LeakyReLU(0.2)]
        for cin, cout in zip(features[:-1], features[1:], strict=True):
            layers.append(nn.Conv3d(cin, cout, 3, stride=2, padding=1))
            if norm == 'instance':
                layers.append(nn.InstanceNorm3d(cout, affine=True))
            layers.append(nn.LeakyReLU(0.2))
        layers.append(nn.Conv3d(features[-1], 1, 3))
        self.net = nn.Sequential(*layers)
        self.min_size = next(s for s in range(1, 1 << 12) if self._out(s) >= 1)

    def _out(self, size: int) -> int:
        for _ in self.features[1:]:
            size = (size - 1) // 2 + 1
        return size - 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, X, Y, Z) → (B, 1, x, y, z) patch scores."""
        if x.ndim != 5 or x.shape[1] != self.in_channels:
            raise ValueError(f'expected (B, {self.in_channels}, X, Y, Z), got {tuple(x.shape)}')
        if min(x.shape[2:]) < self.min_size:
            raise ValueError(f'spatial size {tuple(x.shape[2:])} is too small for a '
                             f'{len(self.features)}-layer critic (minimum {self.min_size})')
        return self.net(x)
