"""Nipype adapters for T1w brain extraction and tissue segmentation (:mod:`aslproc.utils.anat`)."""

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

from aslproc.utils.anat import brain_mask, segment_tissues

logger = logging.getLogger(__name__)


class _BrainMaskInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc='T1w image (whole head or skull-stripped)')
    work_res_mm = traits.Float(
        2.0, usedefault=True, desc='isotropic grid (mm) for the template registration'
    )
    num_threads = traits.Int(1, usedefault=True, nohash=True, desc='ITK threads for ANTs')


class _BrainMaskOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc='brain mask (uint8) on the T1w grid')
    out_template_affine = File(exists=True, desc='MNI152 → T1w affine part (ITK .mat)')
    out_template_warp = File(exists=True, desc='MNI152 → T1w SyN warp (apply after the affine)')
    out_template_inverse_warp = File(
        exists=True, desc='inverse of the SyN warp (T1w → MNI152 with the inverted affine)')


class BrainMask(SimpleInterface):
    """Skull-strip the T1w by warping nilearn's MNI152 brain mask (offline, ANTs)."""

    input_spec = _BrainMaskInputSpec
    output_spec = _BrainMaskOutputSpec

    def _run_interface(self, runtime):
        prefix = os.path.join(runtime.cwd, 'from-MNI152_to-T1w_')
        self._results['out_file'] = brain_mask(
            self.inputs.in_file,
            os.path.join(runtime.cwd, 'desc-brain_mask.nii.gz'),
            work_res_mm=self.inputs.work_res_mm,
            out_xfm_prefix=prefix,
            num_threads=self.inputs.num_threads,
        )
        self._results['out_template_affine'] = f'{prefix}0GenericAffine.mat'
        self._results['out_template_warp'] = f'{prefix}1Warp.nii.gz'
        self._results['out_template_inverse_warp'] = f'{prefix}1InverseWarp.nii.gz'
        return runtime


class _TissueSegmentationInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc='T1w image')
    mask_file = File(exists=True, mandatory=True, desc='brain mask on the T1w grid')
    num_threads = traits.Int(1, usedefault=True, nohash=True, desc='ITK threads for ANTs')


class _TissueSegmentationOutputSpec(TraitedSpec):
    out_gm = File(exists=True, desc='grey-matter probability map on the T1w grid')
    out_wm = File(exists=True, desc='white-matter probability map on the T1w grid')
    out_csf = File(exists=True, desc='CSF probability map on the T1w grid')
    out_probseg = traits.List(File(exists=True), desc='[GM, WM, CSF] maps, in that order')


class TissueSegmentation(SimpleInterface):
    """GM/WM/CSF probability maps with Atropos (K-means start, MRF) inside the brain mask."""

    input_spec = _TissueSegmentationInputSpec
    output_spec = _TissueSegmentationOutputSpec

    def _run_interface(self, runtime):
        outs = segment_tissues(
            self.inputs.in_file,
            self.inputs.mask_file,
            *(os.path.join(runtime.cwd, f'label-{k}_probseg.nii.gz') for k in ('GM', 'WM', 'CSF')),
            num_threads=self.inputs.num_threads,
        )
        self._results.update(out_gm=outs[0], out_wm=outs[1], out_csf=outs[2])
        self._results['out_probseg'] = list(outs)
        return runtime
