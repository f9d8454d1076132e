"""Read what nipype left in the work directory: node run times, inputs and outputs.

nipype writes ``WORK/sub_<label>_wf/<workflow>/.../<node>/result_<node>.pklz`` for every
node that finished; ``runtime.duration`` is its run time in seconds (also for nodes
reused from the cache, where it is the time of the run that computed them).
"""

from __future__ import annotations

import fnmatch
import gzip
import logging
import pickle
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

#: Stages of the report's summary table: label, node-name patterns, switch in Settings.
STAGES = (
    ('T1w brain mask', ('brain_mask',), None),
    ('tissue segmentation', ('segment',), None),
    ('head-motion correction', ('hmc',), None),
    ('M0 map', ('m0',), None),
    ('ASL → T1w registration', ('register',), None),
    ('masks and tissue maps to the ASL grid', ('*_to_asl', 'asl_mask', 'cbf_mask'), None),
    ('CBF quantification', ('compute_cbf', 'fit_multidelay'), None),
    ('smoothing', ('smooth',), None),
    ('denoiser (CNN)', ('denoise',), 'denoise'),
    ('super-resolution (GAN)', ('super_resolve',), 'sr'),
    ('QC metrics', ('qc',), None),
    ('spatial normalization (T1w → MNI152NLin2009aSym)', ('normalize',), 'normalize'),
    ('CBF maps into the output spaces', ('*_to_MNI152NLin2009aSym_res*', '*_to_T1w', 'fov_*'),
     None),
    ('regional CBF', ('regions',), 'normalize'),
    ('writing derivatives', ('ds_*', '*_meta'), None),
)
#: Command-line option that switches a stage off.
SWITCHES = {'denoise': '--no-denoise', 'sr': '--no-sr', 'normalize': '--skip-normalization'}


@dataclass(frozen=True)
class NodeResult:
    """One finished node: path relative to the subject workflow, seconds, result file."""

    rel: str
    seconds: float
    mtime: float
    path: Path

    @property
    def name(self) -> str:
        """The node name (last path component)."""
        return self.rel.rsplit('/', 1)[-1]


class WorkDir:
    """The work directory of one subject's workflow (it may not exist)."""

    def __init__(self, work_dir, subject: str):
        self.root = Path(work_dir) / f'sub_{subject}_wf'
        self._nodes = None

    def nodes(self) -> list[NodeResult]:
        """Every node with a readable result file, in the order they finished."""
        if self._nodes is None:
            self._nodes = []
            for res in self.root.rglob('result_*.pklz') if self.root.is_dir() else ():
                result = _load(res)
                dur = getattr(getattr(result, 'runtime', None), 'duration', None)
                if dur is not None:
                    self._nodes.append(NodeResult(res.parent.relative_to(self.root).as_posix(),
                                                  float(dur), res.stat().st_mtime, res))
            self._nodes.sort(key=lambda n: n.mtime)
        return self._nodes

    def run_prefix(self, index: int) -> str | None:
        """Folder of the ``index``-th ASL run workflow (``asl_00_<tag>_wf``), if any."""
        found = sorted(self.root.glob(f'asl_{index:02d}_*_wf')) if self.root.is_dir() else []
        return found[0].name if found else None

    def node(self, rel: str) -> NodeResult | None:
        """The node at ``rel`` (e.g. ``'asl_00_run_wf/register'``)."""
        return next((n for n in self.nodes() if n.rel == rel), None)

    def value(self, rel: str, field: str, *, inputs: bool = False):
        """An output (or, with ``inputs=True``, an input) of a finished node, else None.

        File values are returned only when the file still exists.
        """
        node = self.node(rel)
        result = _load(node.path) if node else None
        if result is None:
            return None
        try:
            value = result.inputs.get(field) if inputs else getattr(result.outputs, field)
        except AttributeError:
            return None
        if value is None or not _defined(value):
            return None
        if isinstance(value, str) and value.startswith('/'):
            return Path(value) if Path(value).exists() else None
        return value


def _defined(value) -> bool:
    return type(value).__name__ != '_Undefined'


def _load(path: Path):
    try:
        with gzip.open(path, 'rb') as f:
            return pickle.load(f)
    except Exception as err:  # noqa: BLE001 - a partial cache must not stop the report
        logger.debug('cannot read %s: %s', path, err)
        return None


def matches(name: str, patterns) -> bool:
    """Whether a node name matches one of the shell-style ``patterns``.

    >>> matches('gm_to_asl', ('*_to_asl',)), matches('hmc', ('m0',))
    (True, False)
    """
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def stage_rows(work: WorkDir, settings, *, started: float | None, failed: bool) -> list[dict]:
    """One row per stage of :data:`STAGES`: status in words and seconds (all runs summed).

    A stage is "done" when its nodes finished in this run, "reused from the cache" when
    their results predate it, "switched off" when its option said so, else "not run".
    """
    rows = []
    nodes = work.nodes()
    for label, patterns, switch in STAGES:
        found = [n for n in nodes if matches(n.name, patterns)]
        if switch and not getattr(settings, switch):
            status, found = f'switched off ({SWITCHES[switch]})', []
        elif not found:
            status = 'not run (the run stopped before it)' if failed else 'not run'
        elif started is not None and all(n.mtime < started for n in found):
            status = 'reused from the cache'
        else:
            status = 'done'
        rows.append({'stage': label, 'status': status, 'nodes': len(found),
                     'seconds': round(sum(n.seconds for n in found), 1) if found else None,
                     'off': status.startswith(('switched', 'not run'))})
    return rows


def node_rows(work: WorkDir) -> list[dict]:
    """Every node's run time, slowest first."""
    return [{'node': n.rel, 'seconds': round(n.seconds, 2)}
            for n in sorted(work.nodes(), key=lambda n: -n.seconds)]
