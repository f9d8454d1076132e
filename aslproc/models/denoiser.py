"""ΔM denoisers: residual CNNs that predict the noise of a mean ΔM slice (torch only).

Both networks map ``(B, C_in, H, W)`` to ``(B, 1, H, W)``: the estimated noise Ñ of the first
input channel, so that the denoised ΔM is ``input[:, :1] - Ñ`` (residual learning, as in
DeepASL). Any ``H, W`` works, odd sizes included. Neither network reads files or picks a
device; see :mod:`aslproc.models.infer`.

References
----------
Ulas C et al. DeepASL: Kinetic model incorporated loss for denoising arterial spin labeled
MRI via deep residual learning. MICCAI 2018, LNCS 11070:30-38.
"""

from __future__ import annotations

import logging

import torch
from torch import nn
from torch.nn import functional as F

logger = logging.getLogger(__name__)


class DeepASLDenoiser(nn.Module):
    """The published DeepASL network: ``depth`` 3×3 conv + PReLU layers, then a 1-filter conv.

    Parameters
    ----------
    in_channels : int
        Input channels (1 in the paper: the noisy mean ΔM).
    features : int
        Filters of every hidden layer (48 in the paper).
    depth : int
        Hidden conv + PReLU layers (8 in the paper).

    Examples
    --------
    >>> net = DeepASLDenoiser()
    >>> net(torch.zeros(2, 1, 13, 9)).shape
    torch.Size([2, 1, 13, 9])
    >>> sum(p.numel() for p in net.parameters())
    146785
    """

    def __init__(self, in_channels: int = 1, features: int = 48, depth: int = 8):
        super().__init__()
        if in_channels < 1 or features < 1 or depth < 1:
            raise ValueError('in_channels, features and depth must be >= 1')
        layers: list[nn.Module] = []
        for i in range(depth):
            layers += [nn.Conv2d(in_channels if i == 0 else features, features, 3, padding=1),
                       nn.PReLU(features)]
        layers.append(nn.Conv2d(features, 1, 3, padding=1))
        self.body = nn.Sequential(*layers)
        self.in_channels = in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (B, C_in, H, W) → noise estimate (B, 1, H, W)."""
        return self.body(x)


def _block(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1), nn.PReLU(cout),
                         nn.Conv2d(cout, cout, 3, padding=1), nn.PReLU(cout))


def _match(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Crop, or replicate-pad, ``x`` to the spatial size of ``like`` (as MONAI's ``UpCat``)."""
    x = x[..., :like.shape[-2], :like.shape[-1]]
    ph, pw = like.shape[-2] - x.shape[-2], like.shape[-1] - x.shape[-1]
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode='replicate')
    return x


class ResUNetDenoiser(nn.Module):
    """aslproc's denoiser: a small residual U-Net (2 scales down) with PReLU, no normalisation.

    Downsampling by strided convolutions and bilinear upsampling give a receptive field of
    about 45 pixels at a cost per pixel close to DeepASL's, so that very noisy inputs (one or
    two pairs) can borrow from a wider neighbourhood. No batch or instance normalisation: the
    input is already in physical (CBF-like) units and normalising would discard the noise
    level that the network needs.

    Parameters
    ----------
    in_channels : int
        Input channels (the first is the mean ΔM whose noise is predicted).
    features : int
        Filters at full resolution (doubled at each scale).
    levels : int
        Number of 2× downsamplings (the input may have any size).

    Examples
    --------
    >>> net = ResUNetDenoiser(in_channels=5, features=8)
    >>> net(torch.zeros(1, 5, 15, 22)).shape
    torch.Size([1, 1, 15, 22])
    """

    def __init__(self, in_channels: int = 5, features: int = 24, levels: int = 2):
        super().__init__()
        if in_channels < 1 or features < 1 or levels < 1:
            raise ValueError('in_channels, features and levels must be >= 1')
        widths = [features * 2**i for i in range(levels + 1)]
        self.stem = _block(in_channels, widths[0])
        self.down = nn.ModuleList(_block(widths[i], widths[i + 1], stride=2)
                                  for i in range(levels))
        self.up = nn.ModuleList(_block(widths[i + 1] + widths[i], widths[i])
                                for i in reversed(range(levels)))
        self.head = nn.Conv2d(widths[0], 1, 3, padding=1)
        self.in_channels = in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (B, C_in, H, W) → noise estimate (B, 1, H, W)."""
        skips = [self.stem(x)]
        for down in self.down:
            skips.append(down(skips[-1]))
        y = skips.pop()
        for up in self.up:
            skip = skips.pop()
            y = F.interpolate(y, scale_factor=2.0, mode='bilinear', align_corners=False)
            y = up(torch.cat([_match(y, skip), skip], dim=1))
        return self.head(y)


#: Architecture names stored with the weights → classes.
ARCHITECTURES = {'published': DeepASLDenoiser, 'aslproc': ResUNetDenoiser}


def build(arch: str, **kwargs) -> nn.Module:
    """A denoiser from its architecture name and constructor arguments.

    >>> type(build('published', in_channels=1)).__name__
    'DeepASLDenoiser'
    """
    if arch not in ARCHITECTURES:
        raise ValueError(f'unknown denoiser architecture {arch!r}; one of {sorted(ARCHITECTURES)}')
    return ARCHITECTURES[arch](**kwargs)
