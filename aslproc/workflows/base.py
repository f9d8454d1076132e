"""Top-level per-subject workflow: one anatomical workflow and one ASL workflow per run."""

from __future__ import annotations

from pathlib import Path

from aslproc.workflows.anat import init_anat_wf
from aslproc.workflows.asl import init_asl_wf
from aslproc.workflows.engine import LiterateWorkflow
from aslproc.workflows.normalize import connect_spaces, init_template_wf


def bids_uri(path, bids_dir) -> str:
    """BIDS URI of an input file (``bids:raw:<relative path>``).

    >>> bids_uri('/data/ds/sub-01/perf/sub-01_asl.nii.gz', '/data/ds')
    'bids:raw:sub-01/perf/sub-01_asl.nii.gz'
    """
    return 'bids:raw:' + Path(path).relative_to(Path(bids_dir)).as_posix()


def t1w_entities(spec) -> dict:
    """Entities of the anatomical outputs: subject, and session when the T1w has one."""
    ents = {'subject': spec.entities['subject']}
    ses = next((p[4:] for p in Path(spec.t1w_file).name.split('_') if p.startswith('ses-')),
               None)
    if ses:
        ents['session'] = ses
    return ents


def init_single_subject_wf(*, subject: str, runs: list, settings, name: str | None = None
                           ) -> LiterateWorkflow:
    """Process every ASL run of one subject.

    Parameters
    ----------
    subject : str
        Participant label (without ``sub-``).
    runs : list of AslSpec
        The subject's ASL runs; all share the T1w of the first run.
    settings : Settings
        Resolved command-line settings.
    """
    wf = LiterateWorkflow(name=name or f'sub_{subject}_wf')
    wf.__desc__ = (f'Results were generated with aslproc for participant {subject} '
                   f'({len(runs)} ASL run{"s" if len(runs) != 1 else ""}).')
    first = runs[0]
    anat_wf = init_anat_wf(t1w_file=first.t1w_file, out_dir=settings.output_dir,
                           entities=t1w_entities(first), omp_nthreads=settings.omp_nthreads,
                           sources=[bids_uri(first.t1w_file, settings.bids_dir)])
    template_wf = _template_wf(wf, anat_wf, first, settings)
    for i, spec in enumerate(runs):
        sources = [bids_uri(spec.asl_file, settings.bids_dir)]
        if spec.m0_file:
            sources.append(bids_uri(spec.m0_file, settings.bids_dir))
        asl_wf = init_asl_wf(spec=spec, settings=settings, omp_nthreads=settings.omp_nthreads,
                             sources=sources, name=f'asl_{i:02d}_{_run_tag(spec)}_wf')
        wf.connect([(anat_wf, asl_wf, [
            ('outputnode.t1w', 'inputnode.t1w'), ('outputnode.t1w_mask', 'inputnode.t1w_mask'),
            ('outputnode.gm', 'inputnode.gm'), ('outputnode.wm', 'inputnode.wm'),
            ('outputnode.csf', 'inputnode.csf')])])
        if any(s.name != 'asl' for s in settings.spaces):
            connect_spaces(wf, spec=spec, settings=settings, anat_wf=anat_wf, asl_wf=asl_wf,
                           template_wf=template_wf, anat_entities=t1w_entities(first),
                           omp_nthreads=settings.omp_nthreads,
                           name=f'std_{i:02d}_{_run_tag(spec)}_wf')
    return wf


def _template_wf(wf, anat_wf, first, settings):
    """The subject's normalization workflow, connected to ``anat_wf`` (None when no template
    space is requested)."""
    if not settings.normalize:
        return None
    template_wf = init_template_wf(settings=settings, entities=t1w_entities(first),
                                   omp_nthreads=settings.omp_nthreads,
                                   sources=[bids_uri(first.t1w_file, settings.bids_dir)])
    wf.connect([(anat_wf, template_wf, [(f'outputnode.{k}', f'inputnode.{k}') for k in (
        't1w', 'gm', 'template_affine', 'template_warp', 'template_inverse_warp')])])
    return template_wf


def _run_tag(spec) -> str:
    """Short identifier of a run from its entities, safe for a node name."""
    keys = ('session', 'acquisition', 'run')
    tag = '_'.join(f'{k[:3]}{spec.entities[k]}' for k in keys if spec.entities.get(k))
    return ''.join(c if c.isalnum() else '_' for c in tag) or 'run'
