"""aslproc: a BIDS App for arterial spin labeling perfusion MRI."""

from __future__ import annotations

import logging
import os
from importlib import metadata
from pathlib import Path

logging.getLogger(__name__).addHandler(logging.NullHandler())
# nipype asks a web service for its latest version on import unless told not to:
# aslproc makes no network calls at all.
os.environ.setdefault('NIPYPE_NO_ET', '1')


def _version() -> str:
    """The version: the repository's ``version`` file when run from a checkout, else the
    installed package metadata (which setuptools read from that same file)."""
    vfile = Path(__file__).resolve().parent.parent / 'version'
    if vfile.is_file():
        return vfile.read_text().strip()
    try:
        return metadata.version('aslproc')
    except metadata.PackageNotFoundError:  # pragma: no cover - neither checkout nor install
        return '0+unknown'


__version__ = _version()
