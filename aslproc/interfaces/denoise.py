"""Nipype adapter of the ΔM denoiser: calls :func:`aslproc.utils.denoise.denoise_file`."""

from __future__ import annotations

import logging
import os

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    SimpleInterface,
    TraitedSpec,
    traits,
)

from aslproc.models import infer
from aslproc.utils import denoise

logger = logging.getLogger(__name__)


class _DenoiseASLInputSpec(BaseInterfaceInputSpec):
    asl_file = File(exists=True, mandatory=True, desc='motion-corrected ASL series')
    volume_types = traits.List(traits.Str, mandatory=True, desc='aslcontext of asl_file')
    m0_file = File(exists=True, mandatory=True, desc='M0 map on the ASL grid')
    mask_file = File(exists=True, mandatory=True, desc='brain mask on the ASL grid')
    params = traits.Dict(mandatory=True, desc='kinetics.quantify parameters')
    weights = File(exists=True, desc='denoiser weight file (default: the shipped weights)')
    gm_file = File(exists=True, desc='GM fraction on the ASL grid (tissue-mean restoration '
                   'and partial-volume regression)')
    wm_file = File(exists=True, desc='WM fraction on the ASL grid (tissue-mean restoration '
                   'and partial-volume regression)')
    tissue_refine = traits.Bool(False, usedefault=True,
                                desc='adaptive partial-volume regression after the CNN '
                                '(needs gm_file and wm_file)')
    instability_file = File(exists=True, desc='motion step\'s residual-variance ratio (voxels '
                            'that fail its test enter with the filled plain value)')
    guard_fwhm = traits.Float(10.0, usedefault=True, desc='lesion guard scale (mm FWHM; 0: off)')
    adapt_steps = traits.Int(0, usedefault=True, desc='steps of per-scan Noise2Noise '
                             'fine-tuning before denoising (0: the shipped network as is)')
    device = traits.Str('auto', usedefault=True, nohash=True, desc="'auto', 'cpu' or 'cuda'")
    num_threads = traits.Int(1, usedefault=True, nohash=True, desc='CPU threads for torch')


class _DenoiseASLOutputSpec(TraitedSpec):
    out_cbf = File(exists=True, desc='CBF (ml/100 g/min) from the denoised mean ΔM')
    out_deltam = File(exists=True, desc='denoised mean ΔM')
    model_name = traits.Str(desc='name of the denoiser weights')
    model_sha256 = traits.Str(desc='SHA-256 of the weight file')


class DenoiseASL(SimpleInterface):
    """Denoise the mean ΔM with the CNN and quantify CBF from it."""

    input_spec = _DenoiseASLInputSpec
    output_spec = _DenoiseASLOutputSpec

    def _run_interface(self, runtime):
        i = self.inputs
        weights = i.weights if i.weights else None
        cbf, dm = denoise.denoise_file(
            i.asl_file, i.volume_types, i.m0_file, i.mask_file, i.params,
            os.path.join(runtime.cwd, 'cbf_denoised.nii.gz'),
            os.path.join(runtime.cwd, 'deltam_denoised.nii.gz'),
            device=i.device, num_threads=i.num_threads, weights=weights,
            gm_file=i.gm_file or None, wm_file=i.wm_file or None,
            tissue_refine=i.tissue_refine, instability_file=i.instability_file or None,
            guard_fwhm=i.guard_fwhm, adapt_steps=i.adapt_steps)
        _, info = infer.load_denoiser(weights)
        self._results.update(out_cbf=cbf, out_deltam=dm, model_name=info['name'],
                             model_sha256=info['sha256'])
        return runtime
