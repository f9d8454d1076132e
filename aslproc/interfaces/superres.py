"""Nipype adapter of the super-resolution stage.

Calls :func:`aslproc.utils.superres.superres_file`; device and threads are not hashed.
"""

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

from aslproc.utils import superres

logger = logging.getLogger(__name__)


class _SuperResolveInputSpec(BaseInterfaceInputSpec):
    cbf_file = File(exists=True, mandatory=True, desc='CBF on the ASL grid')
    t1w_file = File(exists=True, mandatory=True, desc='T1w image (guide and output grid)')
    xfm_file = File(exists=True, mandatory=True, desc='ASL→T1w rigid transform (ITK .mat)')
    mask_file = File(exists=True, desc='brain mask on the T1w grid (default: CBF support)')
    gm_file = File(exists=True, desc='GM probability on the T1w grid (guide, detail regressor)')
    wm_file = File(exists=True, desc='WM probability on the T1w grid (guide, detail regressor)')
    csf_file = File(exists=True, desc='CSF probability on the T1w grid: with it, tissue-border '
                    'voxels are split into two classes by their T1w intensity')
    levels = traits.Int(0, usedefault=True, desc='pyramid steps (0: steps of about 0.75)')
    iters = traits.Int(-1, usedefault=True,
                       desc='GAN iterations per level (0: guided detail only; -1: the '
                       'device default, 2000 on CUDA and 0 on the CPU)')
    seed = traits.Int(0, usedefault=True, desc='random seed of the fit')
    baseline = traits.Bool(False, usedefault=True,
                           desc='also write linear and cubic-spline resamplings')
    device = traits.Str('auto', usedefault=True, nohash=True, desc="'auto', 'cpu' or 'cuda'")
    num_threads = traits.Int(1, usedefault=True, nohash=True, desc='CPU threads of torch')


class _SuperResolveOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc='super-resolved CBF on the T1w grid')
    out_linear = File(desc='linear resampling of the CBF to the T1w grid (baseline)')
    out_cubic = File(desc='cubic-spline resampling of the CBF to the T1w grid (baseline)')
    info = traits.Dict(desc='schedule, iterations, seed, device, time and consistency')
    out_departure = File(exists=True, desc='what the SR changed in the values its data fix '
                         '(output minus linear upsampling, both resampled back onto the ASL '
                         'grid; QC)')


class SuperResolve(SimpleInterface):
    """Per-subject multi-scale GAN super-resolution of CBF onto the T1w grid."""

    input_spec = _SuperResolveInputSpec
    output_spec = _SuperResolveOutputSpec

    def _run_interface(self, runtime):
        i = self.inputs
        res = superres.superres_file(
            i.cbf_file, i.t1w_file, i.xfm_file, i.mask_file or None,
            os.path.join(runtime.cwd, 'sr_cbf.nii.gz'), levels=i.levels or None,
            iters=None if i.iters < 0 else i.iters, seed=i.seed, device=i.device,
            num_threads=i.num_threads, baseline=i.baseline,
            gm_file=i.gm_file or None, wm_file=i.wm_file or None,
            csf_file=i.csf_file or None)
        self._results.update(out_file=res['out_file'], info=res['info'],
                             out_departure=res['departure_file'])
        if i.baseline:
            self._results.update(out_linear=res['linear_file'], out_cubic=res['cubic_file'])
        return runtime
