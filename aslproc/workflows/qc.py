"""QC workflow: the one-row QC table of a run, gathered from every stage that made a map."""

from __future__ import annotations

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from aslproc.interfaces.cbf import ComputeQC
from aslproc.workflows.engine import LiterateWorkflow
from aslproc.workflows.outputs import sink_node


def init_qc_wf(*, spec, settings, sources=(), name: str = 'qc_wf') -> LiterateWorkflow:
    """Write ``desc-qc_cbf.tsv``: motion, ASL/T1w mask overlap, tissue CBF, and one number per
    learned stage for how far its map departs from the data.

    It is its own workflow, after quantification and the learned stages, because the
    super-resolution may take its input from the quantification (``--no-denoise``): a QC
    node inside the quantification workflow would close a loop between the two.

    Inputs
    ------
    cbf, gm, wm, confounds, asl_mask, asl_ref, cbf_mask
        Plain CBF, tissue maps (ASL grid), motion confounds, brain mask, ASL reference and the
        quantification mask (where the learned stages' numbers are measured).
    unreliable, noise, noise_sd
        The quantification's motion-filled voxels and the plain map's noise model (single
        delay).
    att
        Arrival-time map (multi-delay).
    cbf_denoised, sr_departure
        The denoised CBF and what the super-resolution changed in the values its data fix
        (connected when those stages run on a single-delay series).

    Outputs
    -------
    qc
        The QC TSV.
    """
    wf = LiterateWorkflow(name=name)
    fields = ['cbf', 'gm', 'wm', 'confounds', 'asl_mask', 'asl_ref', 'cbf_mask', 'unreliable',
              'noise', 'noise_sd', 'att', 'cbf_denoised', 'sr_departure']
    inputnode = pe.Node(niu.IdentityInterface(fields=fields), name='inputnode')
    outputnode = pe.Node(niu.IdentityInterface(fields=['qc']), name='outputnode')
    qc = pe.Node(ComputeQC(extra=dict(spec.entities)), name='qc')
    ds_qc = sink_node('qc', out_dir=settings.output_dir, entities=spec.entities,
                      quant=spec.sidecar(), sources=sources)
    wf.connect([
        (inputnode, qc, [('cbf', 'cbf_file'), ('gm', 'gm_file'), ('wm', 'wm_file'),
                         ('confounds', 'confounds_file'), ('asl_mask', 'mask_file'),
                         ('asl_ref', 'ref_file'), ('cbf_mask', 'quant_mask_file')]),
        (qc, ds_qc, [('out_file', 'in_file')]),
        (qc, outputnode, [('out_file', 'qc')]),
    ])
    if spec.multi_delay:
        wf.connect(inputnode, 'att', qc, 'att_file')
        return wf
    wf.connect([(inputnode, qc, [('unreliable', 'unreliable_file'), ('noise', 'noise_file'),
                                 ('noise_sd', 'noise_sd_file')])])
    if settings.denoise:
        wf.connect(inputnode, 'cbf_denoised', qc, 'denoised_file')
    if settings.sr:
        wf.connect(inputnode, 'sr_departure', qc, 'sr_departure_file')
    return wf
