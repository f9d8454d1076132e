"""The table of derivatives (mirrors the Outputs section of DESIGN.md) and sink factories.

Every derivative aslproc writes is one row here: its datatype folder, suffix,
extension, extra entities, units and description. Workflows create their data
sinks from this table only, and a test compares a run's files against it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nipype.pipeline import engine as pe

from aslproc.interfaces.bids import DerivativesDataSink

CBF_UNITS = 'mL/100 g/min'


@dataclass(frozen=True)
class Output:
    """One kind of derivative file."""

    datatype: str
    suffix: str
    description: str
    extension: str = '.nii.gz'
    naming: dict = field(default_factory=dict)
    units: str | None = None
    quantitative: bool = False  # sidecar carries the quantification parameters
    meta: dict = field(default_factory=dict)  # fixed sidecar entries (e.g. mask Type)


OUTPUTS = {
    'anat_mask': Output('anat', 'mask', 'Brain mask of the T1w image (MNI152 template warped '
                        'to the subject)', naming={'desc': 'brain'}, meta={'Type': 'Brain'}),
    'probseg_gm': Output('anat', 'probseg', 'Grey-matter probability on the T1w grid',
                         naming={'label': 'GM'}),
    'probseg_wm': Output('anat', 'probseg', 'White-matter probability on the T1w grid',
                         naming={'label': 'WM'}),
    'probseg_csf': Output('anat', 'probseg', 'CSF probability on the T1w grid',
                          naming={'label': 'CSF'}),
    'asl_mask': Output('perf', 'mask', 'Brain mask on the ASL grid (T1w mask carried through '
                       'the ASL-to-T1w transform)', naming={'desc': 'brain'},
                       meta={'Type': 'Brain'}),
    'cbf': Output('perf', 'cbf', 'CBF from the plain average of all control/label pairs',
                  units=CBF_UNITS, quantitative=True),
    'cbf_smoothed': Output('perf', 'cbf', 'CBF with Gaussian smoothing inside the brain mask',
                           naming={'desc': 'smoothed'}, units=CBF_UNITS, quantitative=True),
    'cbf_denoised': Output('perf', 'cbf',
                           'CBF from the denoised mean ΔM (CNN; tissue means of the plain '
                           'average restored as a gain)',
                           naming={'desc': 'denoised'}, units=CBF_UNITS, quantitative=True),
    'cbf_pvc_gm': Output('perf', 'cbf', 'Partial-volume corrected grey-matter CBF (--pvc): '
                         'local linear regression of the plain CBF on the GM/WM fractions '
                         '(Asllani et al. 2008), 0 where P(GM) < 0.1; a tissue-class model',
                         naming={'desc': 'pvcGM'}, units=CBF_UNITS, quantitative=True),
    'cbf_pvc_wm': Output('perf', 'cbf', 'Partial-volume corrected white-matter CBF (--pvc), '
                         'as desc-pvcGM; 0 where P(WM) < 0.1',
                         naming={'desc': 'pvcWM'}, units=CBF_UNITS, quantitative=True),
    'cbf_sr': Output('perf', 'cbf', 'Super-resolved CBF on the T1w grid',
                     naming={'space': 'T1w', 'desc': 'sr'}, units=CBF_UNITS, quantitative=True),
    'cbf_srlinear': Output('perf', 'cbf', 'CBF resampled to the T1w grid by linear '
                           'interpolation (--sr-baseline)', units=CBF_UNITS, quantitative=True,
                           naming={'space': 'T1w', 'desc': 'srlinear'}),
    'cbf_srcubic': Output('perf', 'cbf', 'CBF resampled to the T1w grid by cubic-spline '
                          'interpolation (--sr-baseline)', units=CBF_UNITS, quantitative=True,
                          naming={'space': 'T1w', 'desc': 'srcubic'}),
    'motion_filled': Output('perf', 'mask', 'Voxels whose CBF was interpolated from the '
                            'reliable voxels around them because head motion left their '
                            'control/label values far noisier than the brain (no usable ΔM); '
                            'all zeros when nothing moved', naming={'desc': 'motionfilled'},
                            meta={'Type': 'ROI'}),
    'att': Output('perf', 'att', 'Arterial transit time fitted with CBF to the multi-delay '
                  'series (general kinetic model, Buxton et al. 1998)', units='s',
                  quantitative=True),
    'confounds': Output('perf', 'timeseries', 'Head-motion parameters and framewise '
                        'displacement of each volume', extension='.tsv',
                        naming={'desc': 'confounds'}),
    'qc': Output('perf', 'cbf', 'Quality-control metrics of the run', extension='.tsv',
                 naming={'desc': 'qc'}),
    'xfm': Output('perf', 'xfm', 'Rigid transform from the ASL reference to the T1w (ITK)',
                  extension='.mat', naming={'from': 'asl', 'to': 'T1w', 'mode': 'image'}),
}

#: Column descriptions written into the sidecars of the TSV outputs.
TSV_COLUMNS = {
    'confounds': {
        'trans_x': {'Description': 'translation along x', 'Units': 'mm'},
        'trans_y': {'Description': 'translation along y', 'Units': 'mm'},
        'trans_z': {'Description': 'translation along z', 'Units': 'mm'},
        'rot_x': {'Description': 'rotation about x', 'Units': 'rad'},
        'rot_y': {'Description': 'rotation about y', 'Units': 'rad'},
        'rot_z': {'Description': 'rotation about z', 'Units': 'rad'},
        'framewise_displacement': {'Description': 'framewise displacement (Power et al. '
                                   '2012, 50 mm head radius)', 'Units': 'mm'},
        'pair_deviation': {'Description': 'median over the brain of the squared difference '
                           "of the pair's ΔM from the pairs' median ΔM, over that of the "
                           'typical pair (1); n/a for volumes in no pair. Present when the '
                           'series moved'},
        'pair_excluded': {'Description': '1 when the pair was left out of every average '
                          '(deviation above 2 and 3.5 robust SDs above the median), else 0',
                          'Levels': {'0': 'kept', '1': 'excluded'}},
    },
    'qc': {
        'mean_fd': {'Description': 'mean framewise displacement', 'Units': 'mm'},
        'max_fd': {'Description': 'maximum framewise displacement', 'Units': 'mm'},
        'dice_asl_t1w': {'Description': 'Dice overlap of the ASL intensity mask and the T1w '
                         'brain mask on the ASL grid'},
        'mean_gm_cbf': {'Description': 'mean CBF where P(GM) > 0.7', 'Units': CBF_UNITS},
        'mean_wm_cbf': {'Description': 'mean CBF where P(WM) > 0.9', 'Units': CBF_UNITS},
        'gm_wm_ratio': {'Description': 'mean GM CBF / mean WM CBF'},
        'pct_negative_gm': {'Description': 'percentage of GM voxels with negative CBF'},
        'denoise_data_departure_sd': {
            'Description': 'largest departure of the denoised CBF from the plain average '
            '(plain minus denoised), smoothed over a lesion (10 mm FWHM), in noise SDs of the '
            'plain average at that scale and place: about 1.3 with the lesion guard on, '
            'which puts back what lies beyond 1; noise alone reaches about 4 somewhere in a '
            'brain; above 5 when the denoiser removed perfusion the data show (a lesion '
            'filled in, tissue contrast painted): look at the residual in the report'},
        'sr_data_departure_sd': {
            'Description': 'largest departure of the super-resolved CBF from its data: the '
            'output resampled back onto the ASL grid minus the linear upsampling of its input '
            '(the denoised or plain map) resampled back, smoothed over a lesion (10 mm FWHM), '
            'in noise '
            'SDs of the plain average at that scale and place: near 0 when the SR only adds '
            'detail inside ASL voxels; above 3 when it changed what the data show (a lesion '
            'erased, tissue contrast painted): look at the residual in the report'},
        'motion_filled_pct': {
            'Description': 'percentage of the brain mask whose CBF was interpolated because '
            'motion left no usable ΔM there (desc-motionfilled_mask)', 'Units': '%'},
        'mean_gm_att': {'Description': 'mean arterial transit time where P(GM) > 0.7 '
                        '(multi-delay series)', 'Units': 's'},
        'mean_wm_att': {'Description': 'mean arterial transit time where P(WM) > 0.9 '
                        '(multi-delay series)', 'Units': 's'},
    },
}
#: Description of ``_cbf`` for a multi-delay series, where it comes from the fit, not from the
#: plain average.
CBF_FIT_DESCRIPTION = ('CBF fitted voxelwise with the arterial transit time to the mean ΔM of '
                       'each delay (general kinetic model, Buxton et al. 1998)')


def sidecar(key: str, quant: dict | None = None) -> dict:
    """JSON sidecar content of an output: description, units, parameters used."""
    out = OUTPUTS[key]
    meta = {'Description': out.description, **out.meta}
    if out.units:
        meta['Units'] = out.units
    if out.quantitative and quant:
        meta.update(quant)
    meta.update(TSV_COLUMNS.get(key, {}))
    return meta


def sink_node(key: str, *, out_dir, entities: dict, quant: dict | None = None,
              sources=(), name: str | None = None) -> pe.Node:
    """A DerivativesDataSink node configured from the table; connect its ``in_file``."""
    out = OUTPUTS[key]
    return pe.Node(
        DerivativesDataSink(
            base_directory=str(out_dir), entities=dict(entities), datatype=out.datatype,
            suffix=out.suffix, extension=out.extension, naming=dict(out.naming),
            meta=sidecar(key, quant), sources=list(sources)),
        name=name or f'ds_{key}', run_without_submitting=True)


# Spatial normalization and template-space outputs (issue #15) --------------------------------
from aslproc.utils.template import (  # noqa: E402 - kept with the rows it builds
    RESOLUTION_TEXT,
    RESOLUTIONS,
    TEMPLATE,
    Space,
)

OUTPUTS['xfm_to_template'] = Output(
    'anat', 'xfm', f'T1w to {TEMPLATE} (ITK composite: inverse of the template-to-T1w affine, '
    'then the inverse SyN field); resamples T1w-space images onto the template',
    extension='.h5', naming={'from': 'T1w', 'to': TEMPLATE, 'mode': 'image'})
OUTPUTS['xfm_from_template'] = Output(
    'anat', 'xfm', f'{TEMPLATE} to T1w (ITK composite: SyN field, then the affine); resamples '
    'template-space images onto the T1w', extension='.h5',
    naming={'from': TEMPLATE, 'to': 'T1w', 'mode': 'image'})
OUTPUTS['regions'] = Output(
    'perf', 'cbf', 'Mean CBF per atlas region in template space, over the voxels of the region '
    "in the ASL field of view, in the run's brain mask and in the subject's grey matter "
    '(P(GM) > 0.5 after normalization)', extension='.tsv', naming={'desc': 'regions'})

#: ASL-grid maps that are carried into each requested output space, and their interpolator.
RESAMPLED = {'cbf': 'linear', 'cbf_smoothed': 'linear', 'cbf_denoised': 'linear',
             'cbf_pvc_gm': 'linear', 'cbf_pvc_wm': 'linear', 'asl_mask': 'nearestNeighbor'}


def space_key(key: str, space) -> str:
    """Key of :data:`OUTPUTS` for the ASL-grid output ``key`` resampled into ``space``.

    >>> space_key('cbf_denoised', Space('MNI152NLin2009aSym', 2))
    'cbf_denoised@MNI152NLin2009aSym_res2'
    """
    return f'{key}@{space.tag}'


def _resampled(key: str, space: Space) -> Output:
    base = OUTPUTS[key]
    interp = RESAMPLED[key]
    where = (f'{TEMPLATE}, {space.res} mm grid' if space.is_template else 'the T1w grid')
    how = ('through the composed ASL-to-T1w and T1w-to-template transforms'
           if space.is_template else 'through the ASL-to-T1w transform')
    meta = {**base.meta, 'Interpolation': interp}
    if space.is_template:
        meta['Resolution'] = RESOLUTION_TEXT[space.res]
    return Output(base.datatype, base.suffix,
                  f'{base.description}; resampled onto {where} {how} in one '
                  f'{"linear" if interp == "linear" else "nearest-neighbour"} interpolation',
                  extension=base.extension, naming={**space.entities, **base.naming},
                  units=base.units, quantitative=base.quantitative, meta=meta)


for _space in (Space('T1w'), *(Space(TEMPLATE, r) for r in RESOLUTIONS)):
    for _key in RESAMPLED:
        OUTPUTS[space_key(_key, _space)] = _resampled(_key, _space)

TSV_COLUMNS['regions'] = {
    'index': {'Description': 'label of the region in the atlas'},
    'name': {'Description': 'name of the region'},
    'n_voxels': {'Description': 'voxels of the region on the template grid'},
    'coverage': {'Description': 'share of the region\'s voxels inside the ASL field of view'},
    'n_voxels_gm': {'Description': 'voxels averaged: in the region, the field of view, the '
                    "run's brain mask and the subject's grey matter (P(GM) > 0.5)"},
    'cbf': {'Description': 'mean plain-average CBF', 'Units': CBF_UNITS},
    'cbf_smoothed': {'Description': 'mean smoothed CBF', 'Units': CBF_UNITS},
    'cbf_denoised': {'Description': 'mean denoised CBF', 'Units': CBF_UNITS},
    'cbf_pvcGM': {'Description': 'mean partial-volume corrected GM CBF', 'Units': CBF_UNITS},
}
