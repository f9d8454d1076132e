"""The standard template aslproc ships (through nilearn) and the output spaces it can write.

nilearn carries, as package data, the ICBM 2009a *nonlinear symmetric* MNI152 T1, grey- and
white-matter maps at 1 mm (``mni_icbm152_{t1,gm,wm}_tal_nlin_sym_09a_converted.nii.gz``), and
builds its brain mask and 2 mm versions from them; nothing is downloaded. In TemplateFlow's
naming that template is ``MNI152NLin2009aSym``. (nilearn's docstrings call it "asymmetrical
ICBM152 2009, release a"; the file names, which say ``nlin_sym_09a``, are what is shipped.)

The grids are nilearn's, not TemplateFlow's: ``res-1`` is the 197 × 233 × 189 grid of 1 mm
voxels with its first voxel at (−98, −134, −72) mm, ``res-2`` is 99 × 117 × 95 voxels of 2 mm
with the same origin (TemplateFlow's ``res-2`` of this template is 97 × 115 × 97 from
(−96, −132, −78)). The sidecars say so in ``Resolution``.

Output spaces follow fMRIPrep's ``--output-spaces`` convention: ``asl`` (the ASL grid),
``T1w`` (the subject's T1w grid) and ``MNI152NLin2009aSym[:res-1|res-2]`` (the template; no
``res`` modifier means ``res-2``).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import nibabel as nib
import numpy as np

logger = logging.getLogger(__name__)

#: TemplateFlow identifier of the template nilearn ships.
TEMPLATE = 'MNI152NLin2009aSym'
#: Template resolutions (mm) on offer, and the one used without a ``res`` modifier.
RESOLUTIONS = (1, 2)
DEFAULT_RES = 2
#: Non-template spaces: the ASL grid and the T1w grid.
NATIVE_SPACES = ('asl', 'T1w')
#: The default of ``--output-spaces``.
DEFAULT_SPACES = ('asl', f'{TEMPLATE}:res-{DEFAULT_RES}')
#: What each ``res`` label means (the ``Resolution`` field of template-space sidecars).
RESOLUTION_TEXT = {
    1: "1 mm isotropic: nilearn's 1 mm grid of the ICBM 2009a nonlinear symmetric MNI152 "
       'template (197 x 233 x 189 voxels, first voxel at -98, -134, -72 mm)',
    2: "2 mm isotropic: nilearn's 2 mm grid of the ICBM 2009a nonlinear symmetric MNI152 "
       'template (99 x 117 x 95 voxels, first voxel at -98, -134, -72 mm; not the '
       'TemplateFlow res-2 grid)',
}


class SpaceError(ValueError):
    """An output space aslproc cannot write."""


@dataclass(frozen=True)
class Space:
    """One output space: a name and, for the template, a resolution (mm).

    >>> s = Space(TEMPLATE, 2)
    >>> str(s), s.is_template, s.entities
    ('MNI152NLin2009aSym:res-2', True, {'space': 'MNI152NLin2009aSym', 'res': '2'})
    >>> Space('T1w').entities, Space('asl').entities
    ({'space': 'T1w'}, {})
    """

    name: str
    res: int | None = None

    @property
    def is_template(self) -> bool:
        return self.name == TEMPLATE

    @property
    def entities(self) -> dict:
        """Entities this space adds to a file name (none for the ASL grid)."""
        if self.name == 'asl':
            return {}
        if self.is_template:
            return {'space': self.name, 'res': str(self.res)}
        return {'space': self.name}

    @property
    def tag(self) -> str:
        """Identifier safe in node names and output keys.

        >>> Space(TEMPLATE, 1).tag, Space('T1w').tag
        ('MNI152NLin2009aSym_res1', 'T1w')
        """
        return f'{self.name}_res{self.res}' if self.is_template else self.name

    def __str__(self) -> str:
        return f'{self.name}:res-{self.res}' if self.is_template else self.name


def parse_space(text: str) -> Space:
    """Read one ``--output-spaces`` item (fMRIPrep convention).

    >>> parse_space('MNI152NLin2009aSym'), parse_space('MNI152NLin2009aSym:res-1')
    (Space(name='MNI152NLin2009aSym', res=2), Space(name='MNI152NLin2009aSym', res=1))
    >>> parse_space('T1w')
    Space(name='T1w', res=None)
    >>> parse_space('MNI152NLin2009cAsym')  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    aslproc.utils.template.SpaceError: unknown output space 'MNI152NLin2009cAsym': aslproc ...
    """
    name, *mods = str(text).strip().split(':')
    choices = (f"aslproc writes asl, T1w and {TEMPLATE}[:res-1|:res-2] (the template nilearn "
               'ships; nothing is downloaded)')
    if name in NATIVE_SPACES:
        if mods:
            raise SpaceError(f'output space {text!r}: {name} takes no modifiers')
        return Space(name)
    if name != TEMPLATE:
        raise SpaceError(f'unknown output space {text!r}: {choices}')
    res = DEFAULT_RES
    for mod in mods:
        key, _, value = mod.partition('-')
        if key != 'res' or not value.isdigit() or int(value) not in RESOLUTIONS:
            raise SpaceError(f'output space {text!r}: unknown modifier {mod!r}; {TEMPLATE} '
                             'takes res-1 (1 mm) or res-2 (2 mm)')
        res = int(value)
    return Space(TEMPLATE, res)


def parse_spaces(items) -> tuple[Space, ...]:
    """Several spaces, duplicates dropped, order kept.

    >>> [str(s) for s in parse_spaces(['asl', 'MNI152NLin2009aSym', 'T1w',
    ...                                'MNI152NLin2009aSym:res-2'])]
    ['asl', 'MNI152NLin2009aSym:res-2', 'T1w']
    """
    return tuple(dict.fromkeys(parse_space(t) for t in items))


def template_spaces(items) -> tuple[Space, ...]:
    """The template spaces among ``items`` (strings or :class:`Space`), in order."""
    spaces = [s if isinstance(s, Space) else parse_space(s) for s in items]
    return tuple(s for s in spaces if s.is_template)


def _loader(kind: str):
    from nilearn import datasets

    loaders = {'T1': datasets.load_mni152_template, 'GM': datasets.load_mni152_gm_template,
               'WM': datasets.load_mni152_wm_template, 'mask': datasets.load_mni152_brain_mask}
    if kind not in loaders:
        raise ValueError(f'unknown template image {kind!r}; one of {sorted(loaders)}')
    return loaders[kind]


def template_image(kind: str, res: int) -> nib.Nifti1Image:
    """The template's ``'T1'``, ``'GM'``, ``'WM'`` or brain ``'mask'`` on the ``res`` grid
    (float32; T1 scaled to [0, 1], probabilities in [0, 1], mask 0/1)."""
    if res not in RESOLUTIONS:
        raise SpaceError(f'{TEMPLATE} has no res-{res} grid here; one of {RESOLUTIONS}')
    img = _loader(kind)(resolution=res)
    data = np.asarray(img.dataobj, dtype=np.float32)
    out = nib.Nifti1Image(data, img.affine)
    out.header.set_xyzt_units('mm')
    return out


def write_template(kind: str, res: int, out_file) -> str:
    """Write :func:`template_image` to ``out_file`` (the reference grid of a template space)."""
    template_image(kind, res).to_filename(os.fspath(out_file))
    return os.fspath(out_file)
