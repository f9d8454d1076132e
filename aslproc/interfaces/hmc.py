"""Nipype adapter for head-motion correction (:mod:`aslproc.utils.motion`)."""

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

from aslproc.utils.motion import correct_motion_file

logger = logging.getLogger(__name__)


class _MotionCorrectionInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc='4D ASL series')
    volume_types = traits.List(
        traits.Str, mandatory=True, desc='aslcontext volume_type of each volume of in_file'
    )
    num_threads = traits.Int(1, usedefault=True, nohash=True, desc='ITK threads for ANTs')
    compensate = traits.Bool(True, usedefault=True,
                             desc='remove the displacement-linked residue (motion_residue)')


class _MotionCorrectionOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc='motion-corrected ASL series (input header and affine)')
    out_confounds = File(
        exists=True, desc='TSV: trans_x/y/z (mm), rot_x/y/z (rad), framewise_displacement (mm)'
    )
    out_reference = File(exists=True, desc='mean of the corrected control and label volumes')
    out_m0ref = File(desc='mean of the corrected m0scan volumes (undefined when there are none)')
    out_instability = File(exists=True, desc='residual variance of each voxel\'s control/label '
                           'values over the noise variance, after compensation (0: not '
                           'assessed)')
    out_volume_types = traits.List(traits.Str, desc='aslcontext with the control and label '
                                   'of each excluded pair marked "excluded"')


class MotionCorrection(SimpleInterface):
    """Rigid realignment of an ASL series by volume-type group, motion-compensated
    subtraction residue removal, and motion confounds."""

    input_spec = _MotionCorrectionInputSpec
    output_spec = _MotionCorrectionOutputSpec

    def _run_interface(self, runtime):
        out_file, confounds, reference, m0ref, instability, types = correct_motion_file(
            self.inputs.in_file,
            self.inputs.volume_types,
            os.path.join(runtime.cwd, 'asl_hmc.nii.gz'),
            os.path.join(runtime.cwd, 'confounds.tsv'),
            os.path.join(runtime.cwd, 'asl_reference.nii.gz'),
            os.path.join(runtime.cwd, 'm0_reference.nii.gz'),
            os.path.join(runtime.cwd, 'instability.nii.gz'),
            num_threads=self.inputs.num_threads,
            compensate=self.inputs.compensate,
        )
        self._results.update(out_file=out_file, out_confounds=confounds, out_reference=reference,
                             out_instability=instability, out_volume_types=types)
        if m0ref is not None:
            self._results['out_m0ref'] = m0ref
        return runtime
