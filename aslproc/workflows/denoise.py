"""ΔM denoising workflow: the CNN (then the partial-volume regression) on the mean ΔM, and
the CBF quantified from it."""

from __future__ import annotations

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from aslproc.interfaces.denoise import DenoiseASL
from aslproc.models import DENOISER_WEIGHTS
from aslproc.workflows.engine import LiterateWorkflow
from aslproc.workflows.outputs import sink_node


def _model_meta(meta: dict, name: str, sha256: str) -> dict:
    """The sink's sidecar content plus the model that made the map."""
    return dict(meta, DenoisingModel=name, DenoisingModelSHA256=sha256)


def _pv_meta(enabled: bool) -> dict:
    """Sidecar fields that describe the partial-volume regression after the CNN."""
    from aslproc.utils import pvreg

    if not enabled:
        return {'DenoisingPartialVolumeRegression': False}
    return {'DenoisingPartialVolumeRegression': True,
            'DenoisingPartialVolumeWidthsMM': list(pvreg.WIDTHS_MM),
            'DenoisingPartialVolumeNoiseSD': pvreg.GAMMA,
            'DenoisingPartialVolumeAgreementSD': pvreg.AGREE,
            'DenoisingPartialVolumeTestWidthMM': pvreg.POOL_MM}


def init_denoise_wf(*, spec, settings, sources=(), name: str = 'denoise_wf'
                    ) -> LiterateWorkflow:
    """Denoise the mean ΔM with the shipped CNN and write ``desc-denoised_cbf``.

    Parameters
    ----------
    spec : AslSpec
        The run; its ``quant_params`` are used and recorded in the sidecar.
    settings : Settings
        ``output_dir``, ``device``, ``omp_nthreads`` and ``denoise_pv`` are used.
    sources : sequence of str
        BIDS URIs of the raw inputs (``Sources`` of the sidecar).

    Inputs
    ------
    asl_series, m0, asl_mask, gm, wm
        Motion-corrected series, M0 map, quantification mask and GM/WM fractions on the ASL
        grid (the fractions restore the tissue means of the plain average).
    instability
        The motion step's residual-variance ratio: voxels motion left without a usable ΔM
        enter the network with the filled value of the plain map, not as outliers.
    volume_types
        The motion step's aslcontext, excluded pairs marked (the run's own until connected).

    Outputs
    -------
    cbf_denoised, deltam_denoised
        CBF from the denoised mean ΔM, and that ΔM.
    """
    wf = LiterateWorkflow(name=name)
    wf.__desc__ = (
        f'A second CBF map was computed from the mean ΔM of the {spec.n_pairs} pairs after '
        'denoising with a residual convolutional network applied slice by slice (after '
        'DeepASL, Ulas et al., 2018), trained on simulated data with a loss that combines the '
        'noise error and the error of the CBF given by the same kinetic model. The network '
        'sees ΔM in CBF-like units for the slice and its two neighbours, and the noise level '
        'estimated from the spread of the pairs. The tissue means of the plain-average CBF, '
        'which noise does not bias, were restored as a gain: the denoised map was multiplied '
        'by 1 + a·GM + b·WM + c, with the three coefficients chosen so that its grey-matter-'
        'weighted, white-matter-weighted and plain means over the brain equal those of the '
        'plain map, so that a focal lesion keeps its contrast relative to its tissue.'
    )
    if settings.denoise_adapt:
        wf.__desc__ = wf.__desc__.replace('after denoising with', (
            f'after denoising with a copy of the network fine-tuned on the scan itself '
            f'({settings.denoise_adapt} Adam steps, learning rate 1e-4; Noise2Noise, Lehtinen '
            'et al., 2018: at each step the network denoised the mean ΔM of a random half of '
            'the pairs and was scored against the mean of the other half) from'), 1)
    if settings.lesion_guard:
        wf.__desc__ += (
            f' A lesion guard then restored, from the plain average, what the network had '
            f'removed at the scale of a focal lesion (Gaussian of {settings.lesion_guard:g} mm '
            'FWHM) beyond one standard deviation of the noise at that scale (soft threshold, '
            'repeated up to 8 times on what was left). The noise was modelled voxel by voxel: '
            'the ΔM noise SD of the scan, measured robustly from the difference of the two '
            'halves of the pairs, times the CBF of a unit ΔM in each voxel, carried through '
            'the smoothing and scaled to the measured noise at that scale.'
        )
    if settings.denoise_pv:
        wf.__desc__ += (
            ' This map was then replaced, voxel by voxel, by a local '
            'partial-volume regression of the plain average on the grey- and white-matter '
            'fractions (Asllani et al., 2008; Gaussian windows of 3 to 12 mm), taking the '
            'widest window whose fit, and that of every narrower one, matched the plain '
            'average within two standard deviations of its noise and the network\'s map '
            'within three robust standard deviations of their difference over the brain '
            '(both averaged over 4.5 mm), so that perfusion the fractions do not explain, '
            'such as a focal deficit, keeps the network\'s value.'
        )
    inputnode = pe.Node(niu.IdentityInterface(fields=['asl_series', 'm0', 'asl_mask', 'gm',
                                                      'wm', 'instability', 'volume_types']),
                        name='inputnode')
    inputnode.inputs.volume_types = list(spec.volume_types)
    outputnode = pe.Node(niu.IdentityInterface(fields=['cbf_denoised', 'deltam_denoised']),
                         name='outputnode')
    denoise = pe.Node(
        DenoiseASL(volume_types=list(spec.volume_types),
                   params=spec.node_params(),
                   # explicit, so that the node's hash (and nipype's cache) follows the file
                   weights=str(DENOISER_WEIGHTS),
                   tissue_refine=settings.denoise_pv,
                   guard_fwhm=float(settings.lesion_guard),
                   adapt_steps=int(settings.denoise_adapt),
                   device=settings.device, num_threads=settings.omp_nthreads),
        name='denoise', n_procs=settings.omp_nthreads, mem_gb=1)
    ds = sink_node('cbf_denoised', out_dir=settings.output_dir, entities=spec.entities,
                   quant=spec.sidecar(), sources=sources)
    meta = pe.Node(niu.Function(function=_model_meta, input_names=['meta', 'name', 'sha256'],
                                output_names=['meta']), name='denoise_meta')
    meta.inputs.meta = dict(ds.inputs.meta, **_pv_meta(settings.denoise_pv),
                            LesionGuardFWHM=float(settings.lesion_guard),
                            DenoiserAdaptationSteps=int(settings.denoise_adapt))
    wf.connect([
        (inputnode, denoise, [('asl_series', 'asl_file'), ('m0', 'm0_file'),
                              ('asl_mask', 'mask_file'), ('gm', 'gm_file'),
                              ('wm', 'wm_file'), ('instability', 'instability_file'),
                              ('volume_types', 'volume_types')]),
        (denoise, meta, [('model_name', 'name'), ('model_sha256', 'sha256')]),
        (meta, ds, [('meta', 'meta')]),
        (denoise, ds, [('out_cbf', 'in_file')]),
        (denoise, outputnode, [('out_cbf', 'cbf_denoised'),
                               ('out_deltam', 'deltam_denoised')]),
    ])
    return wf
