"""The derivative dataset's ``dataset_description.json`` and atomic file writes.

Several participant jobs may write into one output folder at the same time, and a
run may be repeated. Every file here is therefore written to a temporary file in
the destination folder and moved into place with :func:`os.replace` (atomic on
POSIX), and the description has no timestamps: writing it again gives the same bytes.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

logger = logging.getLogger(__name__)

#: BIDS version the derivatives follow.
BIDS_VERSION = '1.10.0'
#: Where aslproc's code lives (GeneratedBy.CodeURL).
CODE_URL = 'https://github.com/aslproc/aslproc'
#: Environment variable the container image sets to its tag (GeneratedBy.Container).
CONTAINER_ENV = 'ASLPROC_CONTAINER_TAG'


def _file_mode() -> int:
    """Permissions a newly created file gets under the current umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_fill(dst: Path, fill, mode: int | None = None) -> None:
    """Create a temporary file next to ``dst``, let ``fill(tmp_path)`` write it, then move it."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=f'.{dst.name}.', suffix='.tmp')
    os.close(fd)
    try:
        fill(tmp)
        os.chmod(tmp, _file_mode() if mode is None else mode)
        os.replace(tmp, dst)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; an identical file is left untouched.

    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp()) / 'a' / 'b.txt'
    >>> atomic_write_text(out, 'hello').read_text()
    'hello'
    """
    path = Path(path)
    data = text.encode('utf-8')
    if path.is_file() and path.read_bytes() == data:
        return path

    def fill(tmp):
        with open(tmp, 'wb') as fobj:
            fobj.write(data)
            fobj.flush()
            os.fsync(fobj.fileno())

    atomic_fill(path, fill)
    return path


def atomic_write_json(path, obj) -> Path:
    """Write ``obj`` as indented JSON (keys in insertion order, trailing newline), atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + '\n')


def atomic_copy(src, dst) -> Path:
    """Copy ``src`` to ``dst`` (contents and permission bits) atomically."""
    dst = Path(dst)
    mode = os.stat(src).st_mode & 0o777
    atomic_fill(dst, lambda tmp: shutil.copyfile(src, tmp), mode=mode)
    return dst


def _doi_entry(doi: str) -> dict:
    """SourceDatasets entry for a DatasetDOI, given bare or as a ``doi:`` or https URI.

    >>> _doi_entry('10.18112/openneuro.ds000001.v1.0.0')['URL']
    'https://doi.org/10.18112/openneuro.ds000001.v1.0.0'
    >>> _doi_entry('doi:10.5281/zenodo.1')['DOI']
    'doi:10.5281/zenodo.1'
    """
    bare = doi.strip()
    for prefix in ('doi:', 'https://doi.org/', 'http://doi.org/', 'http://dx.doi.org/'):
        if bare.lower().startswith(prefix):
            bare = bare[len(prefix):]
    return {'DOI': f'doi:{bare}', 'URL': f'https://doi.org/{bare}'}


def derivative_description(source_desc: dict, version: str, raw_uri: str | None = None) -> dict:
    """The derivative ``dataset_description.json`` content for an input description.

    >>> d = derivative_description({'License': 'CC0', 'DatasetDOI': 'doi:10.1/x'}, '1.0')
    >>> d['DatasetType'], d['GeneratedBy'][0]['Version'], d['License']
    ('derivative', '1.0', 'CC0')
    >>> d['SourceDatasets']
    [{'DOI': 'doi:10.1/x', 'URL': 'https://doi.org/10.1/x'}]
    """
    generated = {'Name': 'aslproc', 'Version': str(version), 'CodeURL': CODE_URL}
    tag = os.environ.get(CONTAINER_ENV)
    if tag:
        generated['Container'] = {'Type': 'docker', 'Tag': tag}
    desc = {
        'Name': 'aslproc: ASL perfusion derivatives (CBF, denoised CBF, super-resolved CBF)',
        'BIDSVersion': BIDS_VERSION,
        'DatasetType': 'derivative',
        'GeneratedBy': [generated],
    }
    doi = source_desc.get('DatasetDOI')
    if isinstance(doi, str) and doi.strip():
        desc['SourceDatasets'] = [_doi_entry(doi)]
    if source_desc.get('License'):
        desc['License'] = source_desc['License']
    if raw_uri:
        # Sidecars name their inputs as ``bids:raw:<path>`` (BIDS URIs); this resolves ``raw``.
        desc['DatasetLinks'] = {'raw': raw_uri}
    return desc


#: Outputs that the BIDS schema does not cover yet (ASL derivatives are still a BEP; reports
#: and transforms are not BIDS files): the validator skips them, and aslproc's tests check
#: their names against the outputs table instead (``tests/test_e2e_participant.py``).
BIDSIGNORE = (
    '*.html',
    'figures/',
    '*_xfm.*',
    '*/perf/*_cbf.*',
    '*/perf/*_att.*',
    '*/perf/*_desc-confounds_timeseries.*',
    '*/perf/*_desc-brain_mask.*',
    '*/perf/*_desc-motionfilled_mask.*',
    'group_*',
)


def write_bidsignore(out_dir) -> Path:
    """Write ``out_dir/.bidsignore`` listing :data:`BIDSIGNORE` (same bytes every time)."""
    return atomic_write_text(Path(out_dir) / '.bidsignore', '\n'.join(BIDSIGNORE) + '\n')


def write_derivative_description(bids_dir, out_dir, version: str) -> Path:
    """Write ``out_dir/dataset_description.json`` for aslproc's outputs of ``bids_dir``.

    The content depends only on the input description, ``version`` and the
    ``ASLPROC_CONTAINER_TAG`` environment variable, so repeated or concurrent calls
    write the same bytes.
    """
    src = Path(bids_dir) / 'dataset_description.json'
    try:
        source_desc = json.loads(src.read_text()) if src.is_file() else {}
    except json.JSONDecodeError as err:
        logger.warning('%s is not valid JSON (%s); License and DOI not copied', src, err)
        source_desc = {}
    if not isinstance(source_desc, dict):
        source_desc = {}
    out = Path(out_dir) / 'dataset_description.json'
    raw_uri = Path(bids_dir).absolute().as_uri()
    atomic_write_json(out, derivative_description(source_desc, version, raw_uri=raw_uri))
    write_bidsignore(out_dir)
    logger.debug('wrote %s', out)
    return out
