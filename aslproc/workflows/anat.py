"""Anatomical workflow: T1w brain mask and tissue probability maps."""

from __future__ import annotations

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from aslproc.interfaces.anat import BrainMask, TissueSegmentation
from aslproc.workflows.engine import LiterateWorkflow
from aslproc.workflows.outputs import sink_node


def init_anat_wf(*, t1w_file, out_dir, entities: dict, omp_nthreads: int, sources=(),
                 name: str = 'anat_wf') -> LiterateWorkflow:
    """Skull-strip and segment the T1w, and store both as derivatives.

    Workflow Graph
        .. workflow::
            :graph2use: orig

            from aslproc.workflows.anat import init_anat_wf
            wf = init_anat_wf(t1w_file='sub-01_T1w.nii.gz', out_dir='.',
                              entities={'subject': '01'}, omp_nthreads=1)

    Parameters
    ----------
    t1w_file : str
        The subject's T1w image.
    out_dir : str
        Root of the derivatives dataset.
    entities : dict
        Entities of the T1w kept in output names (subject, session).
    omp_nthreads : int
        Threads for ANTs.

    Outputs
    -------
    t1w
        The T1w image.
    t1w_mask
        Brain mask on the T1w grid.
    gm, wm, csf
        Tissue probability maps on the T1w grid.
    template_affine, template_warp, template_inverse_warp
        The template → T1w registration of the skull-stripping (affine, SyN field, inverse
        SyN field), reused for spatial normalization.
    """
    wf = LiterateWorkflow(name=name)
    wf.__desc__ = (
        'The T1w image was skull-stripped by registering the ICBM 2009a nonlinear symmetric '
        'MNI152 template shipped with nilearn (MNI152NLin2009aSym) to it (affine and SyN, '
        'ANTs through antspyx) and warping the template '
        'brain mask; grey matter, white matter and CSF probability maps were estimated with '
        'Atropos (ANTs).'
    )
    outputnode = pe.Node(niu.IdentityInterface(
        fields=['t1w', 't1w_mask', 'gm', 'wm', 'csf', 'template_affine', 'template_warp',
                'template_inverse_warp']), name='outputnode')
    outputnode.inputs.t1w = str(t1w_file)
    mask = pe.Node(BrainMask(in_file=str(t1w_file), num_threads=omp_nthreads), name='brain_mask',
                   n_procs=omp_nthreads, mem_gb=2)
    seg = pe.Node(TissueSegmentation(in_file=str(t1w_file), num_threads=omp_nthreads),
                  name='segment', n_procs=omp_nthreads, mem_gb=2)
    sinks = {key: sink_node(key, out_dir=out_dir, entities=entities, sources=sources)
             for key in ('anat_mask', 'probseg_gm', 'probseg_wm', 'probseg_csf')}
    wf.connect([
        (mask, seg, [('out_file', 'mask_file')]),
        (mask, outputnode, [('out_file', 't1w_mask'), ('out_template_affine', 'template_affine'),
                            ('out_template_warp', 'template_warp'),
                            ('out_template_inverse_warp', 'template_inverse_warp')]),
        (seg, outputnode, [('out_gm', 'gm'), ('out_wm', 'wm'), ('out_csf', 'csf')]),
        (mask, sinks['anat_mask'], [('out_file', 'in_file')]),
        (seg, sinks['probseg_gm'], [('out_gm', 'in_file')]),
        (seg, sinks['probseg_wm'], [('out_wm', 'in_file')]),
        (seg, sinks['probseg_csf'], [('out_csf', 'in_file')]),
    ])
    return wf
