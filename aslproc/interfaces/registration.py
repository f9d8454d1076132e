"""Nipype adapters for ASL ↔ T1w registration (:mod:`aslproc.utils.registration`)."""

from __future__ import annotations

import logging
import os

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    SimpleInterface,
    TraitedSpec,
    isdefined,
    traits,
)

from aslproc.utils.registration import (
    ants_threads,
    register_asl_to_t1w,
    resample_to_asl,
    resample_to_t1w,
)

logger = logging.getLogger(__name__)

_INTERPOLATIONS = ('linear', 'nearestNeighbor', 'genericLabel', 'bSpline', 'lanczosWindowedSinc')


class _RegisterToT1wInputSpec(BaseInterfaceInputSpec):
    asl_ref = File(exists=True, mandatory=True, desc='ASL reference (M0 or mean control), 3D')
    t1w_file = File(exists=True, mandatory=True, desc='T1w image')
    t1w_mask = File(exists=True, desc='T1w brain mask: restricts the metric to the brain')
    num_threads = traits.Int(1, usedefault=True, nohash=True, desc='ITK threads for ANTs')


class _RegisterToT1wOutputSpec(TraitedSpec):
    out_xfm = File(
        exists=True, desc='ITK rigid transform resampling ASL-space images onto the T1w grid'
    )


class RegisterToT1w(SimpleInterface):
    """Rigid (6 DOF) mutual-information registration of the ASL reference to the T1w."""

    input_spec = _RegisterToT1wInputSpec
    output_spec = _RegisterToT1wOutputSpec

    def _run_interface(self, runtime):
        mask = self.inputs.t1w_mask if isdefined(self.inputs.t1w_mask) else None
        self._results['out_xfm'] = register_asl_to_t1w(
            self.inputs.asl_ref,
            self.inputs.t1w_file,
            mask,
            os.path.join(runtime.cwd, 'from-asl_to-T1w_mode-image_xfm.mat'),
            num_threads=self.inputs.num_threads,
        )
        return runtime


class _ResampleInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc='3D image to resample')
    reference_file = File(exists=True, mandatory=True, desc='image that defines the output grid')
    xfm = File(exists=True, mandatory=True, desc='ASL → T1w transform of RegisterToT1w')
    interpolation = traits.Enum(
        *_INTERPOLATIONS, usedefault=True, desc='ANTs interpolator (linear keeps mask fractions)'
    )
    num_threads = traits.Int(1, usedefault=True, nohash=True, desc='ITK threads for ANTs')


class _ResampleOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc='in_file on the grid of reference_file')


class ResampleToAsl(SimpleInterface):
    """Carry a T1w-space map (mask, probseg) onto the ASL grid (inverse of the transform)."""

    input_spec = _ResampleInputSpec
    output_spec = _ResampleOutputSpec

    def _run_interface(self, runtime):
        with ants_threads(self.inputs.num_threads):
            self._results['out_file'] = resample_to_asl(
                self.inputs.in_file,
                self.inputs.reference_file,
                self.inputs.xfm,
                os.path.join(runtime.cwd, 'space-asl.nii.gz'),
                interpolation=self.inputs.interpolation,
            )
        return runtime


class ResampleToT1w(SimpleInterface):
    """Carry an ASL-space 3D map (CBF, reference) onto the T1w grid."""

    input_spec = _ResampleInputSpec
    output_spec = _ResampleOutputSpec

    def _run_interface(self, runtime):
        with ants_threads(self.inputs.num_threads):
            self._results['out_file'] = resample_to_t1w(
                self.inputs.in_file,
                self.inputs.reference_file,
                self.inputs.xfm,
                os.path.join(runtime.cwd, 'space-T1w.nii.gz'),
                interpolation=self.inputs.interpolation,
            )
        return runtime
