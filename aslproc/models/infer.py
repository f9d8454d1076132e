"""Device choice, weight loading and batched inference for the models (the numpy edge).

Models never see numpy arrays or paths: :func:`predict` moves a numpy batch to the device,
runs the model in eval mode without gradients and returns numpy at once.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
import torch

from aslproc.models import DENOISER_WEIGHTS, denoiser

logger = logging.getLogger(__name__)

#: The denoiser weights shipped inside the package.
DEFAULT_WEIGHTS = DENOISER_WEIGHTS
#: Keys every weight file must hold.
WEIGHT_KEYS = ('arch', 'kwargs', 'state_dict', 'channels')


class WeightsError(RuntimeError):
    """A weight file that is missing, unreadable or not an aslproc denoiser."""


def resolve_device(device: str = 'auto') -> torch.device:
    """``'auto'`` → CUDA when available else CPU; ``'cuda'`` without CUDA is an error.

    >>> resolve_device('cpu')
    device(type='cpu')
    """
    name = str(device).lower()
    if name == 'auto':
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    if name.startswith('cuda') and not torch.cuda.is_available():
        raise RuntimeError(f'device {device!r} requested but CUDA is not available '
                           '(no GPU visible to torch); use --device cpu or auto')
    if name not in ('cpu',) and not name.startswith('cuda'):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
    return torch.device(name)


def predict(model: torch.nn.Module, array: np.ndarray, device='cpu',
            batch_size: int | None = None) -> np.ndarray:
    """Run ``model`` on a numpy batch (N, C, H, W) in eval mode without gradients.

    ``batch_size`` slices are sent at a time (all at once by default). The model's previous
    train/eval mode is restored afterwards.

    >>> net = torch.nn.Conv2d(1, 1, 1, bias=False)
    >>> _ = torch.nn.init.constant_(net.weight, 2.0)
    >>> predict(net, np.ones((3, 1, 2, 2), np.float32)).ravel()[:2].tolist()
    [2.0, 2.0]
    """
    device = torch.device(device) if not isinstance(device, torch.device) else device
    was_training = model.training
    model.to(device).eval()
    n = len(array)
    step = n if not batch_size else int(batch_size)
    out = []
    try:
        with torch.no_grad():
            for i in range(0, n, max(step, 1)):
                x = torch.from_numpy(np.ascontiguousarray(array[i:i + step], dtype=np.float32))
                out.append(model(x.to(device)).cpu().numpy())
    finally:
        model.train(was_training)
    return np.concatenate(out) if out else np.zeros((0,), np.float32)


def weights_sha256(path) -> str:
    """Hex SHA-256 of a file (recorded in the sidecars next to the model name)."""
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            h.update(chunk)
    return h.hexdigest()


def save_denoiser(path, model: torch.nn.Module, arch: str, kwargs: dict, channels,
                  metadata: dict | None = None) -> Path:
    """Write the shipped weight format: state_dict, architecture, channels, metadata."""
    import json

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # plain JSON types only, so that torch.load(weights_only=True) accepts the file
    metadata = json.loads(json.dumps(metadata or {}, default=float))
    state = {k: v.detach().cpu().float() for k, v in model.state_dict().items()}
    torch.save({'arch': arch, 'kwargs': dict(kwargs), 'state_dict': state,
                'channels': list(channels), 'metadata': metadata}, path)
    return path


def load_denoiser(path=None, device='cpu') -> tuple[torch.nn.Module, dict]:
    """Load a denoiser weight file (default: the shipped one) offline, in eval mode.

    Returns the model and ``info`` (``name``, ``sha256``, ``path``, ``arch``, ``channels``,
    ``metadata``). A missing or corrupt file raises :class:`WeightsError` naming the file.
    """
    path = Path(path) if path else DEFAULT_WEIGHTS
    if not path.is_file():
        raise WeightsError(f'denoiser weight file not found: {path}')
    try:
        blob = torch.load(path, map_location=torch.device(device), weights_only=True)
        missing = [k for k in WEIGHT_KEYS if k not in blob]
        if missing:
            raise KeyError(f'missing keys {missing}')
        model = denoiser.build(blob['arch'], **blob['kwargs'])
        model.load_state_dict(blob['state_dict'])
    except Exception as err:  # noqa: BLE001 - any failure means an unusable file
        raise WeightsError(f'cannot load denoiser weights from {path}: {err}') from err
    model.eval()
    meta = dict(blob.get('metadata') or {})
    info = {'name': meta.get('name', f'aslproc-denoiser-{blob["arch"]}'),
            'sha256': weights_sha256(path), 'path': str(path), 'arch': blob['arch'],
            'channels': tuple(blob['channels']), 'metadata': meta}
    return model, info
