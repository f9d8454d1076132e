"""CBF quantification workflow: plain-average CBF, smoothed CBF and the QC row."""

from __future__ import annotations

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from aslproc.interfaces.cbf import ComputeCBF, ComputeQC, PartialVolumeCorrection, SmoothInMask
from aslproc.utils.pvc import KERNEL_SD_MM, MIN_FRACTION
from aslproc.workflows.engine import LiterateWorkflow
from aslproc.workflows.outputs import sink_node


def init_cbf_wf(*, spec, settings, sources=(), name: str = 'cbf_wf') -> LiterateWorkflow:
    """Quantify CBF from the motion-corrected series with the white-paper model.

    Parameters
    ----------
    spec : AslSpec
        The run; its ``quant_params`` are used and recorded in the sidecars.
    settings : Settings
        ``output_dir`` and ``smooth_fwhm`` are used.

    Inputs
    ------
    asl_series, m0, asl_mask, cbf_mask, asl_ref, gm, wm, confounds
        Motion-corrected series, M0 map, brain mask (QC), generous quantification mask,
        reference, tissue maps (ASL grid), motion confounds.
    cbf_denoised
        Denoised CBF (connected when ``settings.denoise``): the QC row measures what the
        denoiser removed.

    Outputs
    -------
    cbf, deltam, cbf_smoothed, qc
    cbf_pvc_gm, cbf_pvc_wm
        Partial-volume corrected maps (connected when ``settings.pvc``).
    """
    wf = LiterateWorkflow(name=name)
    label = {'PCASL': 'pseudo-continuous', 'CASL': 'continuous', 'PASL': 'pulsed'}
    timing = (f'labeling duration {spec.tau} s' if spec.label_type != 'PASL'
              else f'bolus cut-off delay {spec.ti1} s')
    wf.__desc__ = (
        f'CBF was quantified from the mean of the {spec.n_pairs} control/label pairs with the '
        f'single-compartment model of the ASL white paper (Alsop et al., 2015) for '
        f'{label[spec.label_type]} labeling: post-labeling delay {spec.pld} s, {timing}, '
        f'T1 of blood {spec.t1_blood} s, labeling efficiency {spec.labeling_efficiency}'
        + (f' × {spec.bs_factor:.3f} for {spec.bs_pulses} background-suppression pulses'
           if spec.bs_pulses else '')
        + ', partition coefficient 0.9 ml/g. '
        + (f'A smoothed map was made with a {settings.smooth_fwhm} mm FWHM Gaussian kernel '
           'normalised inside the brain mask.' if settings.smooth_fwhm else '')
    )
    fields = ['asl_series', 'm0', 'asl_mask', 'cbf_mask', 'asl_ref', 'gm', 'wm', 'confounds',
              'cbf_denoised']
    inputnode = pe.Node(niu.IdentityInterface(fields=fields), name='inputnode')
    outputnode = pe.Node(niu.IdentityInterface(fields=['cbf', 'deltam', 'cbf_smoothed', 'qc',
                                                       'cbf_pvc_gm', 'cbf_pvc_wm']),
                         name='outputnode')
    quant = spec.sidecar()
    cbf = pe.Node(ComputeCBF(volume_types=list(spec.volume_types),
                             params=spec.node_params()), name='compute_cbf')
    smooth = pe.Node(SmoothInMask(fwhm=settings.smooth_fwhm), name='smooth')
    qc = pe.Node(ComputeQC(extra={k: v for k, v in spec.entities.items()}), name='qc')
    ds = {key: sink_node(key, out_dir=settings.output_dir, entities=spec.entities,
                         quant=quant, sources=sources) for key in ('cbf', 'cbf_smoothed', 'qc')}
    ds['cbf_smoothed'].inputs.meta = dict(ds['cbf_smoothed'].inputs.meta,
                                          SmoothingFWHM=settings.smooth_fwhm)
    wf.connect([
        (inputnode, cbf, [('asl_series', 'asl_file'), ('m0', 'm0_file'),
                          ('cbf_mask', 'mask_file')]),
        (cbf, smooth, [('out_cbf', 'in_file')]),
        (inputnode, smooth, [('cbf_mask', 'mask_file')]),
        (cbf, qc, [('out_cbf', 'cbf_file')]),
        (inputnode, qc, [('gm', 'gm_file'), ('wm', 'wm_file'), ('confounds', 'confounds_file'),
                         ('asl_mask', 'mask_file'), ('asl_ref', 'ref_file')]),
        (cbf, ds['cbf'], [('out_cbf', 'in_file')]),
        (smooth, ds['cbf_smoothed'], [('out_file', 'in_file')]),
        (qc, ds['qc'], [('out_file', 'in_file')]),
        (cbf, outputnode, [('out_cbf', 'cbf'), ('out_deltam', 'deltam')]),
        (smooth, outputnode, [('out_file', 'cbf_smoothed')]),
        (qc, outputnode, [('out_file', 'qc')]),
    ])
    if settings.denoise:
        wf.connect(inputnode, 'cbf_denoised', qc, 'denoised_file')
    if settings.pvc:
        pvc = _add_pvc(wf, spec=spec, quant=quant, settings=settings, sources=sources,
                       inputnode=inputnode, cbf=cbf)
        wf.connect(pvc, 'out_gm', outputnode, 'cbf_pvc_gm')
        wf.connect(pvc, 'out_wm', outputnode, 'cbf_pvc_wm')
    return wf


def _add_pvc(wf, *, spec, quant, settings, sources, inputnode, cbf):
    """Opt-in partial-volume corrected GM and WM maps from the plain CBF."""
    wf.__desc__ += (
        ' Partial-volume corrected grey- and white-matter CBF maps were computed by local '
        'linear regression of the plain CBF on the grey- and white-matter fractions '
        f'(Asllani et al., 2008; Gaussian in-plane kernel of {KERNEL_SD_MM} mm SD), reported '
        f'where the tissue fraction is at least {MIN_FRACTION}.'
    )
    pvc = pe.Node(PartialVolumeCorrection(), name='pvc')
    pvc_meta = {'PartialVolumeCorrection': 'linear regression (Asllani et al. 2008)',
                'PartialVolumeKernelSDmm': KERNEL_SD_MM,
                'PartialVolumeMinFraction': MIN_FRACTION}
    wf.connect([
        (cbf, pvc, [('out_cbf', 'cbf_file')]),
        (inputnode, pvc, [('gm', 'gm_file'), ('wm', 'wm_file'), ('cbf_mask', 'mask_file')]),
    ])
    for key, port in (('cbf_pvc_gm', 'out_gm'), ('cbf_pvc_wm', 'out_wm')):
        ds = sink_node(key, out_dir=settings.output_dir, entities=spec.entities, quant=quant,
                       sources=sources)
        ds.inputs.meta = dict(ds.inputs.meta, **pvc_meta)
        wf.connect(pvc, port, ds, 'in_file')
    return pvc

