"""Super-resolution workflow: CBF from the ASL grid onto the T1w grid (multi-scale GAN)."""

from __future__ import annotations

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from aslproc.interfaces.superres import SuperResolve
from aslproc.utils.superres import CPU_ITERS, GPU_ITERS, sr_sidecar
from aslproc.workflows.engine import LiterateWorkflow
from aslproc.workflows.outputs import sidecar, sink_node


def init_sr_wf(*, spec, settings, sources=(), name: str = 'sr_wf') -> LiterateWorkflow:
    """Super-resolve the native-grid CBF onto the T1w grid, fitted on the subject alone.

    Parameters
    ----------
    spec : AslSpec
        The run; its entities name the outputs and its ``sidecar()`` fills the JSON.
    settings : Settings
        ``output_dir``, ``device``, ``omp_nthreads`` and, when present, ``sr_iters``
        (per level; None: 2000 on CUDA, 0 on the CPU), ``sr_levels`` (0: automatic) and
        ``sr_baseline`` (also write linear and cubic-spline resamplings).

    Inputs
    ------
    cbf
        CBF on the ASL grid (the denoised map when there is one, else the plain average).
    xfm
        ASL→T1w rigid transform (ITK).
    t1w, t1w_mask
        The T1w image (guide and output grid) and its brain mask.
    gm, wm, csf
        GM, WM and CSF probabilities on the T1w grid (guide channels and detail regressors;
        tissue-border voxels are split into two classes by their T1w intensity).

    Outputs
    -------
    cbf_sr
        Super-resolved CBF on the T1w grid.
    info
        What the fit did (the sidecar's SR entries).
    departure
        What the SR changed in the values its data fix, on the ASL grid (for the QC row).
    """
    iters = getattr(settings, 'sr_iters', None)
    levels = int(getattr(settings, 'sr_levels', 0) or 0)
    baseline = bool(getattr(settings, 'sr_baseline', False))
    device = str(getattr(settings, 'device', 'auto'))
    nthreads = int(getattr(settings, 'omp_nthreads', 1) or 1)
    wf = LiterateWorkflow(name=name)
    gan = (
        'the residuals of a pyramid of 3D U-Net generators (grids from the ASL voxel to the '
        'T1w voxel in steps of about 0.75, '
        + (f'{levels} levels' if levels else 'automatic number of levels')
        + ') that read the upsampled map of the level below, the normalised T1w and its GM '
        'and WM probabilities, trained '
        'with a Markovian patch critic (WGAN-GP), a zero-shot reconstruction loss on the '
        "subject's own ASL data degraded by one pyramid step and a low-pass consistency loss ("
        + (f'{iters} iterations per level)' if iters else
           f'{GPU_ITERS} iterations per level on a GPU; not used on the CPU'
           + (f', {CPU_ITERS} there' if CPU_ITERS else '') + ')'))
    if iters == 0:
        gan = 'no generator residuals (--sr-iters 0: the guided detail alone)'
    wf.__desc__ = (
        'CBF was super-resolved onto the T1w grid for each subject from its own data, after '
        'the unsupervised multi-scale GAN of Cui, Gong et al. A detail layer was added to '
        'the linear upsampling of the ASL-grid CBF: the grey- and white-matter anatomy '
        '(tissue probabilities of the T1w, with every voxel at a tissue border split into '
        'its own and one neighbouring tissue by a two-class mixture of its T1w intensity '
        'between the local means of the two classes) finer than an ASL voxel, scaled by a '
        'fit of CBF '
        "against the tissue fractions in the subject's own data (with a constant, the "
        'perfusion that does not depend on tissue, which was not allowed to be negative), '
        'plus '
        f'{gan}. What the ASL acquisition would see of that layer (its values at the ASL '
        'voxel centres and, as far as both can be met, its means over the point-spread '
        'function) was removed first, so the result resampled back onto the ASL grid equals '
        'the linear upsampling resampled back.'
    )
    inputnode = pe.Node(niu.IdentityInterface(fields=['cbf', 'xfm', 't1w', 't1w_mask', 'gm',
                                                      'wm', 'csf']),
                        name='inputnode')
    outputnode = pe.Node(niu.IdentityInterface(fields=['cbf_sr', 'info', 'departure']),
                         name='outputnode')
    sr = pe.Node(SuperResolve(levels=levels, iters=-1 if iters is None else int(iters),
                              baseline=baseline,
                              device=device, num_threads=nthreads),
                 name='super_resolve', n_procs=nthreads, mem_gb=4.0)
    quant = spec.sidecar()
    ds = sink_node('cbf_sr', out_dir=settings.output_dir, entities=spec.entities, quant=quant,
                   sources=sources)
    meta = pe.Node(niu.Function(function=sr_sidecar, input_names=['meta', 'info'],
                                output_names=['meta']), name='sr_meta')
    meta.inputs.meta = sidecar('cbf_sr', quant)
    wf.connect([
        (inputnode, sr, [('cbf', 'cbf_file'), ('xfm', 'xfm_file'), ('t1w', 't1w_file'),
                         ('t1w_mask', 'mask_file'), ('gm', 'gm_file'), ('wm', 'wm_file'),
                         ('csf', 'csf_file')]),
        (sr, meta, [('info', 'info')]),
        (sr, ds, [('out_file', 'in_file')]),
        (meta, ds, [('meta', 'meta')]),
        (sr, outputnode, [('out_file', 'cbf_sr'), ('info', 'info'),
                          ('out_departure', 'departure')]),
    ])
    if baseline:
        for key, port in (('cbf_srlinear', 'out_linear'), ('cbf_srcubic', 'out_cubic')):
            wf.connect(sr, port, sink_node(key, out_dir=settings.output_dir,
                                           entities=spec.entities, quant=quant,
                                           sources=sources), 'in_file')
    return wf
