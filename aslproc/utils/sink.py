"""Store a derivative and its JSON sidecar atomically (file layer of the data sink)."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import nibabel as nib

from aslproc.bids.derivatives import atomic_copy, atomic_fill, atomic_write_text
from aslproc.bids.naming import derivative_path

logger = logging.getLogger(__name__)


def write_derivative(in_file, out_dir, entities: dict, *, datatype: str, suffix: str,
                     extension: str = '.nii.gz', naming: dict | None = None,
                     meta: dict | None = None, sources=()) -> Path:
    """Copy ``in_file`` to its BIDS-derivative path and write the sidecar next to it.

    NIfTI inputs are re-saved compressed when the target ends in ``.gz`` and the
    input does not; other files are copied byte for byte. The sidecar gets
    ``Sources`` when given. Both writes are atomic, so an interrupted run never
    leaves a half-written file under a final name.
    """
    dst = derivative_path(out_dir, entities, datatype=datatype, suffix=suffix,
                          extension=extension, **(naming or {}))
    src = str(in_file)
    if extension.startswith('.nii') and not src.endswith(extension):
        img = nib.load(src)

        def resave(tmp):
            nib.save(img, tmp + extension)
            os.replace(tmp + extension, tmp)

        atomic_fill(dst, resave)
    else:
        atomic_copy(src, dst)
    sidecar = dict(meta or {})
    if sources:
        sidecar['Sources'] = list(sources)
    if sidecar or extension.startswith('.nii'):
        side = dst.with_name(dst.name[: -len(extension)] + '.json')
        text = json.dumps(sidecar, indent=2, sort_keys=True, default=_jsonable) + '\n'
        atomic_write_text(side, text)
    logger.debug('stored %s', dst)
    return dst


def _jsonable(obj):
    """JSON form of numpy scalars/arrays and paths in sidecars."""
    if hasattr(obj, 'tolist'):
        return obj.tolist()
    return str(obj)
