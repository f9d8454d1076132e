"""CBF quantification workflow: plain-average CBF, smoothed CBF and the plain map's noise model."""

from __future__ import annotations

import logging

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from aslproc.interfaces.cbf import (
    ComputeCBF,
    FitMultiDelay,
    PartialVolumeCorrection,
    SmoothInMask,
)
from aslproc.utils.pvc import KERNEL_SD_MM, MIN_FRACTION
from aslproc.workflows.engine import LiterateWorkflow
from aslproc.workflows.outputs import CBF_FIT_DESCRIPTION, sink_node

logger = logging.getLogger(__name__)

#: Why the denoiser does not run on a multi-delay series (logged, and written to the sidecar
#: of ``_cbf`` as ``DenoisingSkipped``).
DENOISE_MULTIDELAY_SKIP = ('the denoiser was trained on the mean ΔM of single-delay series; '
                           'it is not applied to multi-delay data')


def _merge_meta(meta: dict, info: dict) -> dict:
    """A sink's sidecar content plus what the multi-delay fit recorded."""
    return dict(meta, **info)


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
    asl_series, m0, cbf_mask, gm, wm
        Motion-corrected series, M0 map, generous quantification mask, tissue maps (ASL
        grid; for ``--pvc``).
    instability
        The motion step's residual-variance ratio (all zeros when nothing was assessed):
        voxels that fail its test get their CBF from the voxels around them.
    volume_types
        The motion step's aslcontext, in which excluded pairs are marked (the run's own
        aslcontext until connected).

    Outputs
    -------
    cbf, deltam, cbf_smoothed, unreliable
        For a multi-delay series (``spec.multi_delay``) the CBF comes from the fit of CBF and
        arrival time (also written, as ``_att``), ``deltam`` holds the mean ΔM of each
        delay, the denoiser's map is not used, and no motion fill is made (``unreliable``
        stays unconnected).
    noise, noise_sd
        The plain map's noise model (single delay, at least 2 pairs), that the QC numbers of
        the learned stages count in (:func:`aslproc.workflows.qc.init_qc_wf`).
    att
        Arrival-time map (multi-delay).
    cbf_pvc_gm, cbf_pvc_wm
        Partial-volume corrected maps (connected when ``settings.pvc``).
    """
    wf = LiterateWorkflow(name=name)
    wf.__desc__ = _description(spec, settings)
    fields = ['asl_series', 'm0', 'cbf_mask', 'gm', 'wm', 'instability', 'volume_types']
    inputnode = pe.Node(niu.IdentityInterface(fields=fields), name='inputnode')
    inputnode.inputs.volume_types = list(spec.volume_types)
    outputnode = pe.Node(niu.IdentityInterface(
        fields=['cbf', 'deltam', 'cbf_smoothed', 'unreliable', 'noise', 'noise_sd', 'att',
                'cbf_pvc_gm', 'cbf_pvc_wm']), name='outputnode')
    quant = spec.sidecar()
    if spec.multi_delay:
        cbf = pe.Node(FitMultiDelay(volume_types=list(spec.volume_types),
                                    params=spec.fit_params(),
                                    att_smooth_mm=float(settings.att_smooth),
                                    device=str(settings.device),
                                    num_threads=max(1, int(settings.omp_nthreads or 1))),
                      name='fit_multidelay', mem_gb=1)
    else:
        cbf = pe.Node(ComputeCBF(volume_types=list(spec.volume_types),
                                 params=spec.node_params()), name='compute_cbf')
    smooth = pe.Node(SmoothInMask(fwhm=settings.smooth_fwhm), name='smooth')
    keys = ('cbf', 'cbf_smoothed') + (() if spec.multi_delay else ('motion_filled',))
    ds = {key: sink_node(key, out_dir=settings.output_dir, entities=spec.entities,
                         quant=quant, sources=sources) for key in keys}
    ds['cbf_smoothed'].inputs.meta = dict(ds['cbf_smoothed'].inputs.meta,
                                          SmoothingFWHM=settings.smooth_fwhm)
    if spec.multi_delay:
        _add_multidelay_sinks(wf, spec=spec, settings=settings, quant=quant, sources=sources,
                              fit=cbf, ds=ds, outputnode=outputnode)
    wf.connect([
        (inputnode, cbf, [('asl_series', 'asl_file'), ('m0', 'm0_file'),
                          ('cbf_mask', 'mask_file')]),
        (cbf, smooth, [('out_cbf', 'in_file')]),
        (inputnode, smooth, [('cbf_mask', 'mask_file')]),
        (cbf, ds['cbf'], [('out_cbf', 'in_file')]),
        (smooth, ds['cbf_smoothed'], [('out_file', 'in_file')]),
        (cbf, outputnode, [('out_cbf', 'cbf'), ('out_deltam', 'deltam')]),
        (smooth, outputnode, [('out_file', 'cbf_smoothed')]),
    ])
    if not spec.multi_delay:
        wf.connect([
            (inputnode, cbf, [('instability', 'instability_file'),
                              ('volume_types', 'volume_types')]),
            (cbf, ds['motion_filled'], [('out_unreliable', 'in_file')]),
            (cbf, outputnode, [('out_unreliable', 'unreliable'), ('out_noise', 'noise'),
                               ('out_noise_sd', 'noise_sd')]),
        ])
    if settings.pvc:
        pvc = _add_pvc(wf, spec=spec, quant=quant, settings=settings, sources=sources,
                       inputnode=inputnode, cbf=cbf)
        wf.connect(pvc, 'out_gm', outputnode, 'cbf_pvc_gm')
        wf.connect(pvc, 'out_wm', outputnode, 'cbf_pvc_wm')
    return wf


def _description(spec, settings) -> str:
    """Methods text of the quantification, from the parameters actually used."""
    label = {'PCASL': 'pseudo-continuous', 'CASL': 'continuous', 'PASL': 'pulsed'}
    timing = (f'labeling duration {spec.tau} s' if spec.label_type != 'PASL'
              else f'bolus cut-off delay {spec.ti1} s')
    common = (f'{timing}, T1 of blood {spec.t1_blood} s, labeling efficiency '
              f'{spec.labeling_efficiency}'
              + (f' × {spec.bs_factor:.3f} for {spec.bs_pulses} background-suppression pulses'
                 if spec.bs_pulses else '')
              + ', partition coefficient 0.9 ml/g. ')
    if spec.multi_delay:
        what = 'inversion times' if spec.label_type == 'PASL' else 'post-labeling delays'
        smooth_mm = float(settings.att_smooth)
        text = (
            f'CBF and arterial transit time (ATT) were fitted voxelwise to the mean ΔM of each '
            f'of the {len(spec.delays)} {what} '
            f'({", ".join(f"{d:g}" for d in spec.delays)} s; '
            f'{", ".join(str(n) for n in spec.pairs_per_delay)} pairs) with the general kinetic '
            f'model (Buxton et al., 1998) in the single-compartment form of the multi-delay '
            f'consensus, for {label[spec.label_type]} labeling: {common}'
            'The fit was a weighted least squares by variable projection (CBF linear; ATT by '
            'grid and golden-section search within bounds)'
            + (f', the ATT fitted to ΔM smoothed inside the brain ({smooth_mm:g} mm SD) and '
               "each voxel's CBF to its own data at that ATT. " if smooth_mm > 0 else '. ')
        )
        if settings.denoise:
            text += f'The denoiser was not applied: {DENOISE_MULTIDELAY_SKIP}. '
    else:
        text = (f'CBF was quantified from the mean of the {spec.n_pairs} control/label pairs '
                'with the single-compartment model of the ASL white paper (Alsop et al., 2015) '
                f'for {label[spec.label_type]} labeling: post-labeling delay {spec.pld} s, '
                + common)
    if settings.smooth_fwhm:
        text += (f'A smoothed map was made with a {settings.smooth_fwhm} mm FWHM Gaussian '
                 'kernel normalised inside the brain mask.')
    return text


def _add_multidelay_sinks(wf, *, spec, settings, quant, sources, fit, ds, outputnode):
    """``_att`` and the fit's record in the sidecars of ``_cbf``, ``desc-smoothed`` and
    ``_att``; the arrival times go out for the QC row."""
    ds['att'] = sink_node('att', out_dir=settings.output_dir, entities=spec.entities,
                          quant=quant, sources=sources)
    extra = {}
    if settings.denoise:
        logger.warning('%s: denoising skipped: %s', spec.asl_file.name, DENOISE_MULTIDELAY_SKIP)
        extra['DenoisingSkipped'] = DENOISE_MULTIDELAY_SKIP
    ds['cbf'].inputs.meta = dict(ds['cbf'].inputs.meta, Description=CBF_FIT_DESCRIPTION,
                                 **extra)
    for key in ('cbf', 'cbf_smoothed', 'att'):
        merge = pe.Node(niu.Function(function=_merge_meta, input_names=['meta', 'info'],
                                     output_names=['meta']), name=f'{key}_fit_meta')
        merge.inputs.meta = ds[key].inputs.meta
        wf.connect([(fit, merge, [('info', 'info')]), (merge, ds[key], [('meta', 'meta')])])
    wf.connect([(fit, ds['att'], [('out_att', 'in_file')]),
                (fit, outputnode, [('out_att', 'att')])])


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

