"""Per-run ASL workflow: motion correction, M0, registration to the T1w, masks, CBF."""

from __future__ import annotations

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from aslproc.interfaces.cbf import Binarize, ComputeM0
from aslproc.interfaces.hmc import MotionCorrection
from aslproc.interfaces.registration import RegisterToT1w, ResampleToAsl
from aslproc.utils.cbf import m0_params
from aslproc.workflows.cbf import init_cbf_wf
from aslproc.workflows.denoise import init_denoise_wf
from aslproc.workflows.engine import LiterateWorkflow
from aslproc.workflows.outputs import sink_node
from aslproc.workflows.qc import init_qc_wf
from aslproc.workflows.superres import init_sr_wf

#: Threshold of the T1w brain mask after linear resampling to the ASL grid (the brain
#: mask written as a derivative and used for QC).
ASL_MASK_THRESHOLD = 0.5
#: The quantification mask is generous: any voxel 10 % inside the brain, grown by one voxel
#: within the slice, so that partial-volume cortex keeps its CBF (on the public reference
#: case the strict mask left 1 % of the grey/white-matter voxels at 0).
CBF_MASK_THRESHOLD, CBF_MASK_DILATION = 0.1, 1


def init_asl_wf(*, spec, settings, omp_nthreads: int, sources=(), name: str = 'asl_wf'
                ) -> LiterateWorkflow:
    """Preprocess one ASL run and quantify its CBF.

    Parameters
    ----------
    spec : AslSpec
        The run and its quantification parameters.
    settings : Settings
        Resolved command-line settings (output directory, smoothing, ...).
    omp_nthreads : int
        Threads for ANTs.
    sources : sequence of str
        BIDS URIs of the raw inputs, for the ``Sources`` of the sidecars.

    Inputs
    ------
    t1w, t1w_mask, gm, wm, csf
        Outputs of the anatomical workflow (T1w grid).

    Outputs
    -------
    asl_series
        Motion-corrected ASL series.
    m0, asl_ref, asl_mask, cbf_mask
        M0 map, registration reference, brain mask and quantification mask (ASL grid).
    xfm
        ASL-to-T1w rigid transform.
    cbf, deltam, cbf_smoothed, confounds, qc
        Quantification results.
    cbf_denoised, cbf_sr
        Learned stages (undefined when switched off).
    cbf_pvc_gm, cbf_pvc_wm
        Partial-volume corrected maps (undefined without ``--pvc``).
    """
    wf = LiterateWorkflow(name=name)
    ref_kind = 'the M0 map' if spec.m0_type in ('Included', 'Separate') else \
        'the mean control/label image'
    wf.__desc__ = (
        f'Head motion of the {len(spec.volume_types)}-volume ASL series was estimated by '
        'rigid registration of every volume to the mean of its volume type (ANTs), and '
        'framewise displacement was computed from the parameters (Power et al., 2012). '
        + ('Where the realigned control/label series of a voxel still varied with that '
           "voxel's own displacement (F-test of a voxelwise regression on the three "
           'displacement components, p < 0.01), the fitted motion term was removed before '
           'subtraction (motion-compensated subtraction). A control/label pair whose ΔM '
           'departed from the median of the pairs across the brain (median squared difference '
           'more than twice that of the typical pair and more than 3.5 robust SDs above it; '
           'after SCORE, Dolui et al., 2017) was left out of every average, as listed in the '
           'confounds file. Voxels whose control/label values still varied far beyond the '
           'noise of the brain (residual variance over the noise variance, matched at its '
           '10th percentile, above the χ² quantile of p = 0.001) were judged to carry no '
           'usable ΔM, and their CBF was replaced by the precision-weighted (M0²/variance) '
           'local mean of the CBF around them, taken from neighbours of similar mean static '
           'signal; their share of the brain is reported in the QC table. '
           if settings.motion_compensation else '')
        + f'The M0 was taken as M0Type "{spec.m0_type}" prescribes. {ref_kind.capitalize()} '
        'was registered rigidly to the T1w image (mutual information), and the T1w brain '
        'mask and tissue maps were carried to the ASL grid through that transform.'
    )
    inputnode = pe.Node(niu.IdentityInterface(fields=['t1w', 't1w_mask', 'gm', 'wm', 'csf']),
                        name='inputnode')
    outputnode = pe.Node(niu.IdentityInterface(
        fields=['asl_series', 'm0', 'asl_ref', 'asl_mask', 'cbf_mask', 'xfm', 'cbf', 'deltam',
                'cbf_smoothed', 'confounds', 'qc', 'gm_asl', 'wm_asl', 'cbf_denoised',
                'cbf_sr', 'cbf_pvc_gm', 'cbf_pvc_wm']), name='outputnode')
    vtypes = list(spec.volume_types)
    hmc = pe.Node(MotionCorrection(in_file=str(spec.asl_file), volume_types=vtypes,
                                   num_threads=omp_nthreads,
                                   # the pair and voxel tests compare pairs of one delay
                                   compensate=(settings.motion_compensation
                                               and not spec.multi_delay)),
                  name='hmc', n_procs=omp_nthreads, mem_gb=1)
    m0 = pe.Node(ComputeM0(volume_types=vtypes, m0=m0_params(spec)), name='m0')
    if spec.m0_file:
        m0.inputs.m0_file = str(spec.m0_file)
    reg = pe.Node(RegisterToT1w(num_threads=omp_nthreads), name='register',
                  n_procs=omp_nthreads, mem_gb=1)
    to_asl = {k: pe.Node(ResampleToAsl(num_threads=omp_nthreads), name=f'{k}_to_asl')
              for k in ('mask', 'gm', 'wm')}
    binarize = pe.Node(Binarize(threshold=ASL_MASK_THRESHOLD), name='asl_mask')
    cbf_mask = pe.Node(Binarize(threshold=CBF_MASK_THRESHOLD, dilate_inplane=CBF_MASK_DILATION),
                       name='cbf_mask')
    cbf_wf = init_cbf_wf(spec=spec, settings=settings, sources=sources)
    qc_wf = init_qc_wf(spec=spec, settings=settings, sources=sources)
    ds = {key: sink_node(key, out_dir=settings.output_dir, entities=spec.entities,
                         sources=sources) for key in ('asl_mask', 'confounds', 'xfm')}
    ref_src = (m0, 'out_file') if spec.m0_type in ('Included', 'Separate') else \
        (hmc, 'out_reference')

    wf.connect([
        (hmc, m0, [('out_file', 'asl_file')]),
        (ref_src[0], reg, [(ref_src[1], 'asl_ref')]),
        (inputnode, reg, [('t1w', 't1w_file'), ('t1w_mask', 't1w_mask')]),
        (inputnode, to_asl['mask'], [('t1w_mask', 'in_file')]),
        (inputnode, to_asl['gm'], [('gm', 'in_file')]),
        (inputnode, to_asl['wm'], [('wm', 'in_file')]),
        (to_asl['mask'], binarize, [('out_file', 'in_file')]),
        (to_asl['mask'], cbf_mask, [('out_file', 'in_file')]),
        (hmc, cbf_wf, [('out_file', 'inputnode.asl_series'),
                       ('out_instability', 'inputnode.instability'),
                       ('out_volume_types', 'inputnode.volume_types')]),
        (m0, cbf_wf, [('out_file', 'inputnode.m0')]),
        (cbf_mask, cbf_wf, [('out_file', 'inputnode.cbf_mask')]),
        (to_asl['gm'], cbf_wf, [('out_file', 'inputnode.gm')]),
        (to_asl['wm'], cbf_wf, [('out_file', 'inputnode.wm')]),
        (hmc, ds['confounds'], [('out_confounds', 'in_file')]),
        (reg, ds['xfm'], [('out_xfm', 'in_file')]),
        (binarize, ds['asl_mask'], [('out_file', 'in_file')]),
        (hmc, outputnode, [('out_file', 'asl_series'), ('out_confounds', 'confounds')]),
        (m0, outputnode, [('out_file', 'm0')]),
        (reg, outputnode, [('out_xfm', 'xfm')]),
        (binarize, outputnode, [('out_file', 'asl_mask')]),
        (cbf_mask, outputnode, [('out_file', 'cbf_mask')]),
        (to_asl['gm'], outputnode, [('out_file', 'gm_asl')]),
        (to_asl['wm'], outputnode, [('out_file', 'wm_asl')]),
        (cbf_wf, outputnode, [('outputnode.cbf', 'cbf'), ('outputnode.deltam', 'deltam'),
                              ('outputnode.cbf_smoothed', 'cbf_smoothed')]),
        (hmc, qc_wf, [('out_confounds', 'inputnode.confounds')]),
        (binarize, qc_wf, [('out_file', 'inputnode.asl_mask')]),
        (cbf_mask, qc_wf, [('out_file', 'inputnode.cbf_mask')]),
        (to_asl['gm'], qc_wf, [('out_file', 'inputnode.gm')]),
        (to_asl['wm'], qc_wf, [('out_file', 'inputnode.wm')]),
        (cbf_wf, qc_wf, [('outputnode.cbf', 'inputnode.cbf')]),
        (qc_wf, outputnode, [('outputnode.qc', 'qc')]),
    ])
    if settings.pvc:
        wf.connect(cbf_wf, 'outputnode.cbf_pvc_gm', outputnode, 'cbf_pvc_gm')
        wf.connect(cbf_wf, 'outputnode.cbf_pvc_wm', outputnode, 'cbf_pvc_wm')
    wf.connect(ref_src[0], ref_src[1], qc_wf, 'inputnode.asl_ref')
    if spec.multi_delay:
        wf.connect(cbf_wf, 'outputnode.att', qc_wf, 'inputnode.att')
    else:
        wf.connect([(cbf_wf, qc_wf, [('outputnode.unreliable', 'inputnode.unreliable'),
                                     ('outputnode.noise', 'inputnode.noise'),
                                     ('outputnode.noise_sd', 'inputnode.noise_sd')])])
    wf.connect(ref_src[0], ref_src[1], outputnode, 'asl_ref')
    for key in ('mask', 'gm', 'wm'):
        wf.connect(ref_src[0], ref_src[1], to_asl[key], 'reference_file')
        wf.connect(reg, 'out_xfm', to_asl[key], 'xfm')
    _add_learned_stages(wf, spec=spec, settings=settings, sources=sources, hmc=hmc, m0=m0,
                        cbf_mask=cbf_mask, cbf_wf=cbf_wf, qc_wf=qc_wf, reg=reg,
                        inputnode=inputnode, outputnode=outputnode, to_asl=to_asl)
    return wf


def _add_learned_stages(wf, *, spec, settings, sources, hmc, m0, cbf_mask, cbf_wf, qc_wf, reg,
                        inputnode, outputnode, to_asl):
    """Connect the denoiser (on the corrected series) and the super-resolution (on the
    denoised CBF when the denoiser runs, else on the plain-average CBF), and what each
    changed to the QC row."""
    native = (cbf_wf, 'outputnode.cbf')
    if settings.denoise and not spec.multi_delay:  # skipped with a reason: see init_cbf_wf
        dn_wf = init_denoise_wf(spec=spec, settings=settings, sources=sources)
        wf.connect([
            (hmc, dn_wf, [('out_file', 'inputnode.asl_series'),
                          ('out_instability', 'inputnode.instability'),
                          ('out_volume_types', 'inputnode.volume_types')]),
            (m0, dn_wf, [('out_file', 'inputnode.m0')]),
            (cbf_mask, dn_wf, [('out_file', 'inputnode.asl_mask')]),
            (to_asl['gm'], dn_wf, [('out_file', 'inputnode.gm')]),
            (to_asl['wm'], dn_wf, [('out_file', 'inputnode.wm')]),
            (dn_wf, outputnode, [('outputnode.cbf_denoised', 'cbf_denoised')]),
            (dn_wf, qc_wf, [('outputnode.cbf_denoised', 'inputnode.cbf_denoised')]),
        ])
        native = (dn_wf, 'outputnode.cbf_denoised')
    if settings.sr:
        sr_wf = init_sr_wf(spec=spec, settings=settings, sources=sources)
        wf.connect([
            (reg, sr_wf, [('out_xfm', 'inputnode.xfm')]),
            (inputnode, sr_wf, [('t1w', 'inputnode.t1w'), ('t1w_mask', 'inputnode.t1w_mask'),
                                ('gm', 'inputnode.gm'), ('wm', 'inputnode.wm'),
                                ('csf', 'inputnode.csf')]),
            (sr_wf, outputnode, [('outputnode.cbf_sr', 'cbf_sr')]),
        ])
        wf.connect(native[0], native[1], sr_wf, 'inputnode.cbf')
        wf.connect(sr_wf, 'outputnode.departure', qc_wf, 'inputnode.sr_departure')
