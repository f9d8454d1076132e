"""Nipype adapters for quantification: each calls one function of :mod:`aslproc.utils.quantify`."""

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

from aslproc.utils import quantify

logger = logging.getLogger(__name__)


def _out(runtime, name):
    return os.path.join(runtime.cwd, name)


class _ComputeM0InputSpec(BaseInterfaceInputSpec):
    asl_file = File(exists=True, mandatory=True, desc='motion-corrected ASL series')
    volume_types = traits.List(traits.Str, mandatory=True, desc='aslcontext of asl_file')
    m0 = traits.Dict(mandatory=True, desc='M0 conventions (aslproc.utils.cbf.m0_params)')
    m0_file = File(exists=True, desc='separate M0 scan (M0Type Separate)')


class _ComputeM0OutputSpec(TraitedSpec):
    out_file = File(exists=True, desc='M0 map on the ASL grid')


class ComputeM0(SimpleInterface):
    """M0 map on the ASL grid for any M0Type, corrected for a short TR and scaled."""

    input_spec = _ComputeM0InputSpec
    output_spec = _ComputeM0OutputSpec

    def _run_interface(self, runtime):
        m0_file = self.inputs.m0_file if self.inputs.m0_file else None
        self._results['out_file'] = quantify.compute_m0_file(
            self.inputs.asl_file, self.inputs.volume_types, self.inputs.m0,
            _out(runtime, 'm0.nii.gz'), m0_file=m0_file)
        return runtime


class _ComputeCBFInputSpec(BaseInterfaceInputSpec):
    asl_file = File(exists=True, mandatory=True, desc='motion-corrected ASL series')
    volume_types = traits.List(traits.Str, mandatory=True, desc='aslcontext of asl_file')
    m0_file = File(exists=True, mandatory=True, desc='M0 map on the ASL grid')
    mask_file = File(exists=True, mandatory=True, desc='brain mask on the ASL grid')
    params = traits.Dict(mandatory=True, desc='kinetics.quantify parameters')
    instability_file = File(exists=True, desc='motion step\'s residual-variance ratio: voxels '
                            'that fail its test get CBF from the voxels around them')


class _ComputeCBFOutputSpec(TraitedSpec):
    out_cbf = File(exists=True, desc='CBF (ml/100 g/min) from the plain average of all pairs')
    out_deltam = File(exists=True, desc='mean ΔM')
    out_unreliable = File(exists=True, desc='voxels whose CBF was filled (motion), uint8')
    out_noise = File(exists=True, desc='noise-only CBF map with the plain map\'s variance '
                     '(half the difference of the two halves of the pairs; ≥ 2 pairs)')
    out_noise_sd = File(exists=True, desc='noise SD of each voxel of the plain CBF (≥ 2 pairs)')


class ComputeCBF(SimpleInterface):
    """Plain-average ΔM and the white-paper CBF computed from it."""

    input_spec = _ComputeCBFInputSpec
    output_spec = _ComputeCBFOutputSpec

    def _run_interface(self, runtime):
        i = self.inputs
        cbf, dm, unreliable, noise, noise_sd = quantify.compute_cbf_file(
            i.asl_file, i.volume_types, i.m0_file, i.mask_file, i.params,
            _out(runtime, 'cbf.nii.gz'), _out(runtime, 'deltam.nii.gz'),
            instability_file=i.instability_file if isdefined(i.instability_file) else None,
            out_unreliable=_out(runtime, 'unreliable.nii.gz'),
            out_noise=_out(runtime, 'noise.nii.gz'), out_noise_sd=_out(runtime, 'noise_sd.nii.gz'))
        self._results.update(out_cbf=cbf, out_deltam=dm, out_unreliable=unreliable)
        if noise is not None:
            self._results.update(out_noise=noise, out_noise_sd=noise_sd)
        return runtime


class _FitMultiDelayInputSpec(BaseInterfaceInputSpec):
    asl_file = File(exists=True, mandatory=True, desc='motion-corrected multi-delay ASL series')
    volume_types = traits.List(traits.Str, mandatory=True, desc='aslcontext of asl_file')
    m0_file = File(exists=True, mandatory=True, desc='M0 map on the ASL grid')
    mask_file = File(exists=True, mandatory=True, desc='brain mask on the ASL grid')
    params = traits.Dict(mandatory=True, desc='AslSpec.fit_params(): model parameters, '
                         'per-volume delays, slice timing')
    att_smooth_mm = traits.Float(mandatory=True, desc='SD (mm) of the in-brain smoothing of '
                                 'ΔM that the arrival time is fitted to (0: none)')
    device = traits.Str('auto', usedefault=True, nohash=True, desc="'auto', 'cpu' or 'cuda'")
    num_threads = traits.Int(1, usedefault=True, nohash=True, desc='CPU threads for torch')


class _FitMultiDelayOutputSpec(TraitedSpec):
    out_cbf = File(exists=True, desc='CBF (ml/100 g/min) fitted with the general kinetic model')
    out_att = File(exists=True, desc='arterial transit time (s)')
    out_deltam = File(exists=True, desc='mean ΔM of each delay (4D, delays ascending)')
    info = traits.Dict(desc='fit settings and device, for the sidecars')


class FitMultiDelay(SimpleInterface):
    """CBF and arrival time fitted voxelwise to a multi-delay series (general kinetic model)."""

    input_spec = _FitMultiDelayInputSpec
    output_spec = _FitMultiDelayOutputSpec

    def _run_interface(self, runtime):
        i = self.inputs
        cbf, att, dm, info = quantify.fit_multidelay_file(
            i.asl_file, i.volume_types, i.m0_file, i.mask_file, i.params,
            _out(runtime, 'cbf.nii.gz'), _out(runtime, 'att.nii.gz'),
            _out(runtime, 'deltam.nii.gz'), device=i.device, num_threads=i.num_threads,
            att_smooth_mm=i.att_smooth_mm)
        self._results.update(out_cbf=cbf, out_att=att, out_deltam=dm, info=info)
        return runtime


class _SmoothInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc='3D map to smooth')
    mask_file = File(exists=True, mandatory=True, desc='mask that bounds the smoothing')
    fwhm = traits.Float(mandatory=True, desc='Gaussian FWHM in mm (0: no smoothing)')


class _SmoothOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc='smoothed map')


class SmoothInMask(SimpleInterface):
    """Gaussian smoothing normalised inside the brain mask (the classic smoothed CBF)."""

    input_spec = _SmoothInputSpec
    output_spec = _SmoothOutputSpec

    def _run_interface(self, runtime):
        self._results['out_file'] = quantify.smooth_file(
            self.inputs.in_file, self.inputs.mask_file, self.inputs.fwhm,
            _out(runtime, 'smoothed.nii.gz'))
        return runtime


class _PVCInputSpec(BaseInterfaceInputSpec):
    cbf_file = File(exists=True, mandatory=True, desc='plain CBF map on the ASL grid')
    gm_file = File(exists=True, mandatory=True, desc='GM fraction on the ASL grid')
    wm_file = File(exists=True, mandatory=True, desc='WM fraction on the ASL grid')
    mask_file = File(exists=True, mandatory=True, desc='quantification mask')


class _PVCOutputSpec(TraitedSpec):
    out_gm = File(exists=True, desc='partial-volume corrected GM CBF')
    out_wm = File(exists=True, desc='partial-volume corrected WM CBF')


class PartialVolumeCorrection(SimpleInterface):
    """GM and WM CBF by local linear regression on the tissue fractions (opt-in ``--pvc``)."""

    input_spec = _PVCInputSpec
    output_spec = _PVCOutputSpec

    def _run_interface(self, runtime):
        out_gm, out_wm = quantify.pvc_file(
            self.inputs.cbf_file, self.inputs.gm_file, self.inputs.wm_file,
            self.inputs.mask_file, _out(runtime, 'cbf_pvcGM.nii.gz'),
            _out(runtime, 'cbf_pvcWM.nii.gz'))
        self._results.update(out_gm=out_gm, out_wm=out_wm)
        return runtime


class _QCInputSpec(BaseInterfaceInputSpec):
    cbf_file = File(exists=True, mandatory=True, desc='CBF map on the ASL grid')
    gm_file = File(exists=True, mandatory=True, desc='GM probability on the ASL grid')
    wm_file = File(exists=True, mandatory=True, desc='WM probability on the ASL grid')
    confounds_file = File(exists=True, mandatory=True, desc='confounds TSV with FD')
    mask_file = File(exists=True, mandatory=True, desc='T1w brain mask on the ASL grid')
    ref_file = File(exists=True, mandatory=True, desc='ASL reference image')
    extra = traits.Dict(desc='columns prepended to the row (e.g. run entities)')
    noise_file = File(exists=True, desc='noise-only map of the plain CBF (ComputeCBF)')
    noise_sd_file = File(exists=True, desc='noise SD of each voxel of the plain CBF: with '
                         'noise_file, the noise SDs the learned stages\' numbers count in')
    denoised_file = File(exists=True, desc='denoised CBF (adds denoise_data_departure_sd; '
                         'needs the noise files)')
    unreliable_file = File(exists=True, desc='voxels whose CBF motion left to be filled '
                           '(adds motion_filled_pct)')
    sr_departure_file = File(exists=True, desc='what the super-resolution changed in the '
                             'values its data fix, ASL grid (adds sr_data_departure_sd; '
                             'needs the noise files)')
    att_file = File(exists=True, desc='arrival-time map (adds the mean GM/WM arrival times)')
    quant_mask_file = File(exists=True, desc='quantification mask, where the learned stages '
                           'and the lesion guard work: their numbers are measured inside it '
                           '(default mask_file)')


class _QCOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc='one-row QC TSV')


class ComputeQC(SimpleInterface):
    """QC row: motion, ASL/T1w mask overlap, tissue CBF."""

    input_spec = _QCInputSpec
    output_spec = _QCOutputSpec

    def _run_interface(self, runtime):
        i = self.inputs
        self._results['out_file'] = quantify.qc_file(
            i.cbf_file, i.gm_file, i.wm_file, i.confounds_file, i.mask_file, i.ref_file,
            _out(runtime, 'qc.tsv'), extra=i.extra or None,
            denoised_file=i.denoised_file if isdefined(i.denoised_file) else None,
            noise_file=i.noise_file if isdefined(i.noise_file) else None,
            noise_sd_file=i.noise_sd_file if isdefined(i.noise_sd_file) else None,
            unreliable_file=i.unreliable_file if isdefined(i.unreliable_file) else None,
            sr_departure_file=(i.sr_departure_file if isdefined(i.sr_departure_file)
                               else None),
            att_file=i.att_file if isdefined(i.att_file) else None,
            quant_mask_file=i.quant_mask_file if isdefined(i.quant_mask_file) else None)
        return runtime


class _BinarizeInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc='map to threshold')
    threshold = traits.Float(0.5, usedefault=True, desc='voxels above this are kept')
    dilate_inplane = traits.Int(0, usedefault=True, desc='in-plane dilation (voxels)')


class _BinarizeOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc='uint8 mask')


class Binarize(SimpleInterface):
    """Threshold a (resampled) probability or mask into a binary mask."""

    input_spec = _BinarizeInputSpec
    output_spec = _BinarizeOutputSpec

    def _run_interface(self, runtime):
        self._results['out_file'] = quantify.binarize_file(
            self.inputs.in_file, self.inputs.threshold, _out(runtime, 'mask.nii.gz'),
            dilate_inplane=self.inputs.dilate_inplane)
        return runtime
