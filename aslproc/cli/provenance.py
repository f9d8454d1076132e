"""What produced a run: aslproc and dependency versions, Python, device."""

from __future__ import annotations

import platform
from importlib import metadata

from aslproc import __version__

PACKAGES = ('numpy', 'scipy', 'nibabel', 'nipype', 'pybids', 'antspyx', 'nilearn', 'torch')


def provenance() -> dict:
    """Versions of aslproc, Python and the packages the pipeline calls."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {'aslproc': __version__, 'python': platform.python_version(),
            'platform': platform.platform(), 'packages': versions}
