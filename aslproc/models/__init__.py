"""Learned models (plain ``nn.Module`` classes), weight loading and the shipped weights.

Importing the package does not import torch, so workflows can name the shipped weight file
(:data:`DENOISER_WEIGHTS`) when the graph is built.
"""

from pathlib import Path

#: The denoiser weights shipped inside the package (model card: ``MODEL_CARD.md`` here).
DENOISER_WEIGHTS = Path(__file__).resolve().parent / 'weights' / 'denoiser.pt'
