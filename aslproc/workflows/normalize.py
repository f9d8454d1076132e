"""Standard space: T1w normalization (per subject), CBF maps in the output spaces and the
regional CBF table (per run)."""

from __future__ import annotations

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from aslproc.bids.naming import derivative_path
from aslproc.interfaces.normalize import (
    PrepareAtlas,
    RegionalCBF,
    ResampleToSpace,
    SpatialNormalization,
    TemplateGrid,
)
from aslproc.utils.atlas import GM_THRESHOLD, SEITZMAN
from aslproc.utils.normalize import DICE_THRESHOLD
from aslproc.utils.template import TEMPLATE, template_spaces
from aslproc.workflows.engine import LiterateWorkflow
from aslproc.workflows.outputs import OUTPUTS, RESAMPLED, sidecar, sink_node, space_key

#: Column of the regional table for each ASL-grid CBF map (pvcWM is not a GM quantity).
REGION_COLUMNS = {'cbf': 'cbf', 'cbf_smoothed': 'cbf_smoothed', 'cbf_denoised': 'cbf_denoised',
                  'cbf_pvc_gm': 'cbf_pvcGM'}


def _xfm_meta(meta: dict, dice: float) -> dict:
    """The transform's sidecar plus the normalization check."""
    return dict(meta, NormalizationDiceGM=dice)


def init_template_wf(*, settings, entities: dict, omp_nthreads: int, sources=(),
                     name: str = 'template_wf') -> LiterateWorkflow:
    """Normalize the T1w to MNI152NLin2009aSym and prepare the template grids and the atlas.

    Workflow Graph
        .. workflow::
            :graph2use: orig

            from pathlib import Path
            from aslproc.cli.settings import Settings
            from aslproc.workflows.normalize import init_template_wf
            wf = init_template_wf(settings=Settings(Path('.'), Path('out'), 'participant'),
                                  entities={'subject': '01'}, omp_nthreads=1)

    Parameters
    ----------
    settings : Settings
        ``output_dir``, ``output_spaces`` (at least one template space), ``atlas`` and
        ``atlas_labels`` are used.
    entities : dict
        Entities of the anatomical outputs (subject, session).
    omp_nthreads : int
        Threads for ANTs.
    sources : sequence of str
        BIDS URIs of the T1w (``Sources`` of the transforms).

    Inputs
    ------
    t1w, gm
        T1w image and its GM probability.
    template_affine, template_warp, template_inverse_warp
        Template → T1w registration of the skull-stripping.

    Outputs
    -------
    to_template, from_template
        T1w → template and template → T1w transforms (ITK .h5).
    t1w_std, gm_std, dice_gm
        T1w and GM in the first template space, and the GM Dice with the template.
    reference_res1, reference_res2
        Template image on each requested grid (undefined when not requested).
    atlas, labels
        Regional atlas on the first template grid and its label table.
    """
    spaces = template_spaces(settings.output_spaces)
    first = spaces[0].res
    wf = LiterateWorkflow(name=name)
    wf.__desc__ = (
        f'The T1w image was spatially normalized to the ICBM 2009a nonlinear symmetric MNI152 '
        f'template ({TEMPLATE}, as shipped with nilearn) with the affine and SyN registration '
        'computed for the brain mask; its forward and inverse transforms were written as ITK '
        'composite transforms. As a check, the Dice overlap of the warped grey-matter '
        f'probability (> {DICE_THRESHOLD}) with the template grey matter (> {DICE_THRESHOLD}) '
        'was recorded.'
    )
    inputnode = pe.Node(niu.IdentityInterface(fields=['t1w', 'gm', 'template_affine',
                                                      'template_warp', 'template_inverse_warp']),
                        name='inputnode')
    outputnode = pe.Node(niu.IdentityInterface(
        fields=['to_template', 'from_template', 't1w_std', 'gm_std', 'dice_gm',
                'reference_res1', 'reference_res2', 'atlas', 'labels']), name='outputnode')
    normalize = pe.Node(SpatialNormalization(res=first, num_threads=omp_nthreads),
                        name='normalize', n_procs=omp_nthreads, mem_gb=2)
    grids = {s.res: pe.Node(TemplateGrid(res=s.res), name=f'template_res{s.res}')
             for s in spaces}
    atlas = pe.Node(PrepareAtlas(), name='atlas')
    if settings.atlas:
        atlas.inputs.atlas_file = str(settings.atlas)
        atlas.inputs.labels_file = str(settings.atlas_labels)
    wf.connect([
        (inputnode, normalize, [('t1w', 't1w_file'), ('gm', 'gm_file'),
                                ('template_affine', 'template_affine'),
                                ('template_warp', 'template_warp'),
                                ('template_inverse_warp', 'template_inverse_warp')]),
        (grids[first], atlas, [('out_file', 'reference')]),
        (normalize, outputnode, [('out_to_template', 'to_template'),
                                 ('out_from_template', 'from_template'),
                                 ('out_t1w', 't1w_std'), ('out_gm', 'gm_std'),
                                 ('dice_gm', 'dice_gm')]),
        (atlas, outputnode, [('out_atlas', 'atlas'), ('out_labels', 'labels')]),
    ])
    for res, node in grids.items():
        wf.connect(node, 'out_file', outputnode, f'reference_res{res}')
    for key, port in (('xfm_to_template', 'out_to_template'),
                      ('xfm_from_template', 'out_from_template')):
        ds = sink_node(key, out_dir=settings.output_dir, entities=entities, sources=sources)
        meta = pe.Node(niu.Function(function=_xfm_meta, input_names=['meta', 'dice'],
                                    output_names=['meta']), name=f'{key}_meta')
        meta.inputs.meta = dict(ds.inputs.meta, Template=TEMPLATE,
                                TemplateSource='nilearn package data (ICBM 2009a nonlinear '
                                'symmetric MNI152, mni_icbm152_*_tal_nlin_sym_09a)')
        wf.connect([(normalize, meta, [('dice_gm', 'dice')]), (meta, ds, [('meta', 'meta')]),
                    (normalize, ds, [(port, 'in_file')])])
    return wf


def _uri(settings, entities, key) -> str:
    """BIDS URI (``bids::<path>``) of a derivative of this dataset."""
    o = OUTPUTS[key]
    path = derivative_path(settings.output_dir, entities, datatype=o.datatype, suffix=o.suffix,
                           extension=o.extension, **o.naming)
    return 'bids::' + path.relative_to(settings.output_dir).as_posix()


def init_asl_std_wf(*, spec, settings, maps, anat_entities: dict, omp_nthreads: int,
                    name: str = 'asl_std_wf') -> LiterateWorkflow:
    """Resample one run's ASL-grid maps into the output spaces; regional CBF in the template.

    Parameters
    ----------
    spec : AslSpec
        The run (entities, quantification parameters for the sidecars).
    settings : Settings
        ``output_dir`` and ``output_spaces`` are used (``asl`` itself needs nothing here).
    maps : sequence of str
        Keys of :data:`~aslproc.workflows.outputs.RESAMPLED` that this run produces.
    anat_entities : dict
        Entities of the subject's anatomical outputs (for the ``Sources`` of the sidecars).
    omp_nthreads : int
        Threads for ANTs.

    Inputs
    ------
    cbf, cbf_smoothed, cbf_denoised, cbf_pvc_gm, cbf_pvc_wm, asl_mask
        ASL-grid maps (those in ``maps`` are connected).
    xfm
        ASL → T1w rigid transform.
    t1w
        The T1w image (grid of the ``T1w`` space).
    to_template, reference_res1, reference_res2, gm_std, atlas, labels
        From :func:`init_template_wf` (template spaces only).

    Outputs
    -------
    regions
        The regional CBF table (undefined without a template space).
    """
    spaces = [s for s in settings.spaces if s.name != 'asl']
    templates = [s for s in spaces if s.is_template]
    wf = LiterateWorkflow(name=name)
    cbf_maps = [k for k in maps if k != 'asl_mask']
    wf.__desc__ = (
        f'The ASL-grid CBF maps ({len(cbf_maps)}) were resampled into '
        + ', '.join(f'{s.name}' + (f' ({s.res} mm)' if s.is_template else '') for s in spaces)
        + ' in a single linear interpolation each, through the ASL-to-T1w transform'
        + (' composed with the T1w-to-template transform' if templates else '')
        + '; the brain mask by nearest neighbour.'
    )
    inputnode = pe.Node(niu.IdentityInterface(
        fields=[*RESAMPLED, 'xfm', 't1w', 'to_template', 'reference_res1', 'reference_res2',
                'gm_std', 'atlas', 'labels']), name='inputnode')
    outputnode = pe.Node(niu.IdentityInterface(fields=['regions']), name='outputnode')
    quant = spec.sidecar()
    resampled = {}
    for space in spaces:
        xfms = pe.Node(niu.Merge(2 if space.is_template else 1), name=f'xfms_{space.tag}')
        ref = f'reference_res{space.res}' if space.is_template else 't1w'
        if space.is_template:
            wf.connect([(inputnode, xfms, [('to_template', 'in1'), ('xfm', 'in2')])])
        else:
            wf.connect(inputnode, 'xfm', xfms, 'in1')
        for key in maps:
            node = pe.Node(ResampleToSpace(interpolation=RESAMPLED[key],
                                           num_threads=omp_nthreads),
                           name=f'{key}_to_{space.tag}', n_procs=omp_nthreads)
            skey = space_key(key, space)
            srcs = [_uri(settings, spec.entities, key), _uri(settings, spec.entities, 'xfm')]
            if space.is_template:
                srcs.append(_uri(settings, anat_entities, 'xfm_to_template'))
            ds = sink_node(skey, out_dir=settings.output_dir, entities=spec.entities,
                           quant=quant, sources=srcs, name=f'ds_{key}_{space.tag}')
            wf.connect([(inputnode, node, [(key, 'in_file'), (ref, 'reference')]),
                        (xfms, node, [('out', 'xfms')]), (node, ds, [('out_file', 'in_file')])])
            resampled[(key, space)] = node
    if templates:
        _add_regions(wf, spec=spec, settings=settings, space=templates[0], maps=cbf_maps,
                     inputnode=inputnode, outputnode=outputnode, resampled=resampled,
                     omp_nthreads=omp_nthreads)
    return wf


def _add_regions(wf, *, spec, settings, space, maps, inputnode, outputnode, resampled,
                 omp_nthreads):
    """Field of view in the template, then the regional table of the run's CBF maps."""
    columns = [k for k in maps if k in REGION_COLUMNS]
    atlas = (f'the user atlas {settings.atlas.name}' if settings.atlas else
             'the 300 regions of Seitzman et al. (2020; spheres of 4-5 mm radius)')
    wf.__desc__ += (
        f' Regional CBF was computed in {space.name} ({space.res} mm) for {atlas}: the mean of '
        "each map over the region's voxels inside the ASL field of view, the brain mask and "
        f"the subject's own grey matter (P(GM) > {GM_THRESHOLD}), with voxel counts and the "
        'share of each region covered by the field of view.'
    )
    fov = pe.Node(ResampleToSpace(fov=True, num_threads=omp_nthreads), name=f'fov_{space.tag}')
    merge = pe.Node(niu.Merge(len(columns)), name='region_maps')
    regions = pe.Node(RegionalCBF(map_names=[REGION_COLUMNS[k] for k in columns]),
                      name='regions')
    ds = sink_node('regions', out_dir=settings.output_dir, entities=spec.entities,
                   sources=[_uri(settings, spec.entities, space_key(k, space)) for k in columns])
    ds.inputs.meta = dict(sidecar('regions'), Atlas=(str(settings.atlas) if settings.atlas
                                                     else SEITZMAN),
                          Space=TEMPLATE, Resolution=OUTPUTS[space_key('cbf', space)]
                          .meta['Resolution'], GreyMatterThreshold=GM_THRESHOLD)
    wf.connect([
        (inputnode, fov, [('asl_mask', 'in_file'), (f'reference_res{space.res}', 'reference')]),
        (inputnode, regions, [('atlas', 'atlas'), ('labels', 'labels'), ('gm_std', 'gm_file')]),
        (resampled[('asl_mask', space)], regions, [('out_file', 'mask_file')]),
        (fov, regions, [('out_file', 'fov_file')]),
        (merge, regions, [('out', 'cbf_files')]),
        (regions, ds, [('out_file', 'in_file')]),
        (regions, outputnode, [('out_file', 'regions')]),
    ])
    wf.connect(wf.get_node(f'xfms_{space.tag}'), 'out', fov, 'xfms')
    for i, key in enumerate(columns, start=1):
        wf.connect(resampled[(key, space)], 'out_file', merge, f'in{i}')


def run_maps(settings, multi_delay: bool = False) -> list[str]:
    """The ASL-grid outputs a run writes that go into the other output spaces (no denoised
    map for a multi-delay series: the denoiser skips it).

    >>> from pathlib import Path
    >>> from aslproc.cli.settings import Settings
    >>> run_maps(Settings(Path('.'), Path('o'), 'participant', denoise=False, pvc=True))
    ['cbf', 'cbf_smoothed', 'cbf_pvc_gm', 'cbf_pvc_wm', 'asl_mask']
    """
    denoised = settings.denoise and not multi_delay
    return ['cbf', 'cbf_smoothed', *(['cbf_denoised'] if denoised else []),
            *(['cbf_pvc_gm', 'cbf_pvc_wm'] if settings.pvc else []), 'asl_mask']


def connect_spaces(wf, *, spec, settings, anat_wf, asl_wf, template_wf, anat_entities,
                   omp_nthreads, name):
    """Add one run's :func:`init_asl_std_wf` to ``wf`` and connect it to the anatomical,
    template (None without a template space) and ASL workflows."""
    maps = run_maps(settings, spec.multi_delay)
    std_wf = init_asl_std_wf(spec=spec, settings=settings, maps=maps,
                             anat_entities=anat_entities, omp_nthreads=omp_nthreads, name=name)
    wf.connect([
        (asl_wf, std_wf, [(f'outputnode.{k}', f'inputnode.{k}') for k in (*maps, 'xfm')]),
        (anat_wf, std_wf, [('outputnode.t1w', 'inputnode.t1w')]),
    ])
    if template_wf is not None:
        fields = ['to_template', 'gm_std', 'atlas', 'labels'] + [
            f'reference_res{s.res}' for s in template_spaces(settings.output_spaces)]
        wf.connect([(template_wf, std_wf, [(f'outputnode.{k}', f'inputnode.{k}')
                                           for k in fields])])
    return std_wf
