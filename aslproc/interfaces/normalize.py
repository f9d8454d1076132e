"""Nipype adapters for spatial normalization, output spaces and regional CBF
(:mod:`aslproc.utils.normalize`, :mod:`aslproc.utils.template`, :mod:`aslproc.utils.atlas`)."""

from __future__ import annotations

import logging
import os

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    InputMultiObject,
    SimpleInterface,
    TraitedSpec,
    isdefined,
    traits,
)

from aslproc.utils.atlas import prepare_atlas, regional_table
from aslproc.utils.normalize import normalize_t1w, resample_to_space
from aslproc.utils.registration import ants_threads
from aslproc.utils.template import RESOLUTIONS, TEMPLATE, write_template

logger = logging.getLogger(__name__)

_INTERPOLATIONS = ('linear', 'nearestNeighbor', 'genericLabel', 'bSpline', 'lanczosWindowedSinc')


class _SpatialNormalizationInputSpec(BaseInterfaceInputSpec):
    t1w_file = File(exists=True, mandatory=True, desc='T1w image')
    gm_file = File(exists=True, mandatory=True, desc='GM probability on the T1w grid')
    template_affine = File(exists=True, mandatory=True,
                           desc='template → T1w affine of the skull-stripping registration')
    template_warp = File(exists=True, mandatory=True, desc='its SyN field')
    template_inverse_warp = File(exists=True, mandatory=True, desc='its inverse SyN field')
    res = traits.Enum(*RESOLUTIONS, usedefault=True, desc='template grid (mm) of the outputs')
    num_threads = traits.Int(1, usedefault=True, nohash=True, desc='ITK threads for ANTs')


class _SpatialNormalizationOutputSpec(TraitedSpec):
    out_to_template = File(exists=True, desc='T1w → template composite transform (ITK .h5)')
    out_from_template = File(exists=True, desc='template → T1w composite transform (ITK .h5)')
    out_t1w = File(exists=True, desc='T1w resampled onto the template grid')
    out_gm = File(exists=True, desc='GM probability resampled onto the template grid')
    dice_gm = traits.Float(desc='Dice of the warped GM (> 0.5) with the template GM (> 0.5)')


class SpatialNormalization(SimpleInterface):
    """Normalization transforms from the skull-stripping registration, and their check."""

    input_spec = _SpatialNormalizationInputSpec
    output_spec = _SpatialNormalizationOutputSpec

    def _run_interface(self, runtime):
        i, cwd = self.inputs, runtime.cwd
        outs = {'out_to_template': f'from-T1w_to-{TEMPLATE}_mode-image_xfm.h5',
                'out_from_template': f'from-{TEMPLATE}_to-T1w_mode-image_xfm.h5',
                'out_t1w': f'space-{TEMPLATE}_T1w.nii.gz',
                'out_gm': f'space-{TEMPLATE}_label-GM_probseg.nii.gz'}
        outs = {k: os.path.join(cwd, v) for k, v in outs.items()}
        found = normalize_t1w(i.t1w_file, i.gm_file, i.template_affine, i.template_warp,
                              i.template_inverse_warp, res=i.res, num_threads=i.num_threads,
                              **outs)
        self._results.update(outs, dice_gm=found['dice_gm'])
        return runtime


class _TemplateGridInputSpec(BaseInterfaceInputSpec):
    res = traits.Enum(*RESOLUTIONS, mandatory=True, desc='grid spacing (mm)')


class _TemplateGridOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc='template T1 on that grid (reference of a space)')


class TemplateGrid(SimpleInterface):
    """Write the template T1 at one resolution: the reference grid of a template space."""

    input_spec = _TemplateGridInputSpec
    output_spec = _TemplateGridOutputSpec

    def _run_interface(self, runtime):
        self._results['out_file'] = write_template(
            'T1', self.inputs.res, os.path.join(runtime.cwd, f'tpl-{TEMPLATE}_res-'
                                                f'{self.inputs.res}_T1w.nii.gz'))
        return runtime


class _PrepareAtlasInputSpec(BaseInterfaceInputSpec):
    reference = File(exists=True, mandatory=True, desc='template image defining the grid')
    atlas_file = File(exists=True, desc='user label image in template space (else Seitzman)')
    labels_file = File(exists=True, desc='label table of atlas_file (index, name)')


class _PrepareAtlasOutputSpec(TraitedSpec):
    out_atlas = File(exists=True, desc='label image on the reference grid')
    out_labels = File(exists=True, desc='label table (index, name, ...)')


class PrepareAtlas(SimpleInterface):
    """The regional atlas on the template grid (Seitzman spheres or the user's atlas)."""

    input_spec = _PrepareAtlasInputSpec
    output_spec = _PrepareAtlasOutputSpec

    def _run_interface(self, runtime):
        i = self.inputs
        atlas, labels = prepare_atlas(
            i.reference, os.path.join(runtime.cwd, 'atlas_dseg.nii.gz'),
            os.path.join(runtime.cwd, 'atlas_dseg.tsv'),
            atlas_file=i.atlas_file if isdefined(i.atlas_file) else None,
            labels_file=i.labels_file if isdefined(i.labels_file) else None)
        self._results.update(out_atlas=atlas, out_labels=labels)
        return runtime


class _ResampleToSpaceInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc='3D map on the ASL grid')
    reference = File(exists=True, mandatory=True, desc='image on the output grid')
    xfms = InputMultiObject(File(exists=True), mandatory=True,
                            desc='ANTs transform list, output side first')
    interpolation = traits.Enum(*_INTERPOLATIONS, usedefault=True,
                                desc='ANTs interpolator (linear for CBF, nearest for masks)')
    fov = traits.Bool(False, usedefault=True,
                      desc='resample the field of view of in_file (ones) instead of its values')
    num_threads = traits.Int(1, usedefault=True, nohash=True, desc='ITK threads for ANTs')


class _ResampleToSpaceOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc='in_file on the reference grid')


class ResampleToSpace(SimpleInterface):
    """Carry an ASL-grid map into an output space in one interpolation."""

    input_spec = _ResampleToSpaceInputSpec
    output_spec = _ResampleToSpaceOutputSpec

    def _run_interface(self, runtime):
        i = self.inputs
        with ants_threads(i.num_threads):
            self._results['out_file'] = resample_to_space(
                i.in_file, i.reference, list(i.xfms), os.path.join(runtime.cwd, 'space.nii.gz'),
                interpolation=i.interpolation, fov=i.fov)
        return runtime


class _RegionalCBFInputSpec(BaseInterfaceInputSpec):
    atlas = File(exists=True, mandatory=True, desc='label image on the template grid')
    labels = File(exists=True, mandatory=True, desc='its label table')
    gm_file = File(exists=True, mandatory=True, desc="subject's GM probability, template grid")
    mask_file = File(exists=True, mandatory=True, desc='brain mask of the run, template grid')
    fov_file = File(exists=True, mandatory=True, desc='ASL field of view, template grid')
    cbf_files = InputMultiObject(File(exists=True), mandatory=True,
                                 desc='CBF maps on the template grid')
    map_names = traits.List(traits.Str, mandatory=True, desc='column name of each CBF map')


class _RegionalCBFOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc='TSV: one row per region')


class RegionalCBF(SimpleInterface):
    """Mean CBF per region in the subject's grey matter, voxel counts and coverage."""

    input_spec = _RegionalCBFInputSpec
    output_spec = _RegionalCBFOutputSpec

    def _run_interface(self, runtime):
        i = self.inputs
        self._results['out_file'] = regional_table(
            i.atlas, i.labels, i.gm_file, i.mask_file, i.fov_file, list(i.cbf_files),
            list(i.map_names), os.path.join(runtime.cwd, 'desc-regions_cbf.tsv'))
        return runtime
