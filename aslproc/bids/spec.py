"""The typed description of one ASL run: everything quantification needs, parsed once.

``AslSpec`` is built from the BIDS sidecars by :func:`aslproc.bids.metadata.build_spec`
and then passed down explicitly; no later layer reads the raw metadata again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from aslproc import kinetics

logger = logging.getLogger(__name__)

#: Volume types the BIDS specification allows in ``*_aslcontext.tsv``.
VOLUME_TYPES = ('control', 'label', 'm0scan', 'deltam', 'cbf', 'noRF')
#: Values of the ``M0Type`` field.
M0_TYPES = ('Included', 'Separate', 'Estimate', 'Absent')


@dataclass(frozen=True)
class AslSpec:
    """One ASL run and the parameters its CBF is quantified with.

    Attributes
    ----------
    asl_file, aslcontext_file, metadata_file : Path
        The ``*_asl.nii[.gz]`` series, its ``*_aslcontext.tsv`` and ``*_asl.json``.
    t1w_file : Path
        The T1w image of the same subject (and session when there is one).
    entities : dict
        BIDS entities of the ASL file kept in output names (subject, session, acquisition, run).
    volume_types : tuple of str
        One entry of :data:`VOLUME_TYPES` per volume of the series.
    label_type : str
        ``'PCASL'``, ``'CASL'`` or ``'PASL'``.
    pld : float
        PostLabelingDelay (s); for PASL this is the inversion time TI. For a multi-delay
        series, the longest delay (:attr:`delays` lists them all).
    volume_plds : tuple of float or None
        Multi-delay series only: the PostLabelingDelay (TI for PASL) of every volume, 0.0 for
        m0scan and noRF volumes; None when every perfusion volume has the delay ``pld``.
    slice_timing : tuple of float or None
        SliceTiming (s) of a 2D readout; each slice's PLD is ``pld + slice_timing[k]``.
    tau : float or None
        LabelingDuration (s) for (P)CASL.
    ti1 : float or None
        Bolus cut-off delay time TI1 (s) for PASL with QUIPSS II / Q2TIPS.
    ti1s : float or None
        End of the Q2TIPS saturation train TI1s (s), the second BolusCutOffDelayTime value.
    labeling_efficiency : float
        α at the labeling plane (LabelingEfficiency, or the white-paper default).
    bs_pulses : int
        Number of background-suppression pulses (0 without background suppression).
    t1_blood : float
        T1 of arterial blood (s).
    field_strength : float or None
        MagneticFieldStrength (T).
    m0_type : str
        One of :data:`M0_TYPES`.
    m0_file : Path or None
        Separate ``*_m0scan.nii[.gz]`` when ``m0_type == 'Separate'``.
    m0_estimate : float or None
        M0Estimate when ``m0_type == 'Estimate'``.
    m0_tr : float or None
        RepetitionTimePreparation (s) of the M0 volumes (of the control volumes when
        ``m0_type == 'Absent'``), used for the saturation-recovery correction.
    m0_scale : float
        Factor the M0 is multiplied by (``--m0-scale``), e.g. for a receive-gain difference.
    """

    asl_file: Path
    aslcontext_file: Path
    metadata_file: Path
    t1w_file: Path
    entities: dict
    volume_types: tuple
    label_type: str
    pld: float
    tau: float | None = None
    ti1: float | None = None
    slice_timing: tuple | None = None
    labeling_efficiency: float = 0.85
    bs_pulses: int = 0
    t1_blood: float = 1.65
    field_strength: float | None = None
    m0_type: str = 'Included'
    m0_file: Path | None = None
    m0_estimate: float | None = None
    m0_tr: float | None = None
    m0_scale: float = 1.0
    extra: dict = field(default_factory=dict)
    volume_plds: tuple | None = None
    ti1s: float | None = None

    @property
    def multi_delay(self) -> bool:
        """Whether the perfusion volumes were acquired at more than one delay."""
        return self.volume_plds is not None

    @property
    def delays(self) -> tuple:
        """The distinct delays (s) of the perfusion volumes, ascending (one for single-PLD).

        >>> from pathlib import Path
        >>> s = AslSpec(Path('a'), Path('b'), Path('c'), Path('d'), {}, ('m0scan', 'control',
        ...             'label', 'control', 'label'), 'PCASL', 2.0, tau=1.8,
        ...             volume_plds=(0.0, 2.0, 2.0, 1.0, 1.0))
        >>> s.delays, s.pairs_per_delay
        ((1.0, 2.0), (1, 1))
        """
        if not self.multi_delay:
            return (self.pld,)
        return tuple(sorted({d for d, t in zip(self.volume_plds, self.volume_types, strict=True)
                             if t in ('control', 'label', 'deltam')}))

    @property
    def pairs_per_delay(self) -> tuple:
        """Control/label pairs (plus deltam volumes) acquired at each of :attr:`delays`."""
        if not self.multi_delay:
            return (self.n_pairs + self.volume_types.count('deltam'),)
        count = {d: 0 for d in self.delays}
        for d, t in zip(self.volume_plds, self.volume_types, strict=True):
            if t in ('control', 'deltam'):
                count[d] += 1
        return tuple(count[d] for d in self.delays)

    @property
    def bs_factor(self) -> float:
        """ΔM fraction that survives background suppression (0.95 per pulse)."""
        return kinetics.background_suppression_factor(self.bs_pulses)

    @property
    def alpha(self) -> float:
        """Total labeling efficiency: labeling-plane α times the background-suppression factor."""
        return self.labeling_efficiency * self.bs_factor

    @property
    def n_pairs(self) -> int:
        """Number of control/label pairs in the series."""
        return min(self.volume_types.count('control'), self.volume_types.count('label'))

    @property
    def t1_tissue(self) -> float:
        """Grey-matter T1 (s) at this field strength, for the short-TR M0 correction."""
        return kinetics.t1_tissue(self.field_strength)

    def pld_map(self, n_slices: int):
        """PLD (s) of each slice along the last axis: a scalar for 3D, an array for 2D."""
        if not self.slice_timing:
            return self.pld
        st = np.asarray(self.slice_timing, dtype=float)
        if st.size != n_slices:
            raise kinetics.AslMetadataError(
                f'{self.metadata_file}: SliceTiming has {st.size} entries but the ASL series '
                f'has {n_slices} slices (BIDS: one entry per slice)'
            )
        return self.pld + st

    def quant_params(self, n_slices: int | None = None) -> dict:
        """The parameter dictionary of :func:`aslproc.kinetics.quantify`."""
        pld = self.pld if n_slices is None else self.pld_map(n_slices)
        return {
            'label_type': self.label_type,
            'pld': pld,
            'tau': self.tau,
            'ti1': self.ti1,
            't1_blood': self.t1_blood,
            'alpha': self.alpha,
            'lam': kinetics.BLOOD_BRAIN_PARTITION,
        }

    def node_params(self) -> dict:
        """:meth:`quant_params` with a per-slice PLD as a plain list, so that nipype can hash
        and store it (the file layer broadcasts it along the slices again).

        >>> from pathlib import Path
        >>> s = AslSpec(Path('a'), Path('b'), Path('c'), Path('d'), {'subject': '01'},
        ...             ('control', 'label'), 'PCASL', 1.8, tau=1.8, slice_timing=(0.0, 0.05))
        >>> s.node_params()['pld']
        [1.8, 1.85]
        """
        n_slices = len(self.slice_timing) if self.slice_timing else None
        params = self.quant_params(n_slices)
        if hasattr(params['pld'], 'tolist'):
            params['pld'] = params['pld'].tolist()
        return params

    def fit_params(self) -> dict:
        """Node-ready parameters of the multi-delay fit: :meth:`quant_params` without the
        PLD, plus the per-volume delays and the slice timing (a plain list, or None).

        >>> from pathlib import Path
        >>> s = AslSpec(Path('a'), Path('b'), Path('c'), Path('d'), {}, ('control', 'label'),
        ...             'PASL', 1.0, ti1=0.7, volume_plds=(1.0, 1.0))
        >>> p = s.fit_params()
        >>> p['volume_plds'], p['ti1'], p['slice_timing']
        ([1.0, 1.0], 0.7, None)
        """
        params = self.quant_params()
        del params['pld']
        params['volume_plds'] = list(self.volume_plds or ())
        params['slice_timing'] = list(self.slice_timing) if self.slice_timing else None
        return params

    def sidecar(self) -> dict:
        """Quantification parameters actually used, for the JSON sidecars of derived maps."""
        out = {
            'ArterialSpinLabelingType': self.label_type,
            'PostLabelingDelay': list(self.delays) if self.multi_delay else self.pld,
            'LabelingEfficiency': self.labeling_efficiency,
            'BackgroundSuppressionNumberPulses': self.bs_pulses,
            'BackgroundSuppressionFactor': round(self.bs_factor, 6),
            'TotalLabelingEfficiency': round(self.alpha, 6),
            'T1Blood': self.t1_blood,
            'BloodBrainPartitionCoefficient': kinetics.BLOOD_BRAIN_PARTITION,
            'M0Type': self.m0_type,
            'M0Scale': self.m0_scale,
            'Pairs': self.n_pairs,
        }
        if self.multi_delay:
            out['PairsPerDelay'] = list(self.pairs_per_delay)
        if self.label_type == 'PASL':
            out['BolusCutOffDelayTime'] = self.ti1  # the bolus duration of the model
        else:
            out['LabelingDuration'] = self.tau
        if self.slice_timing:
            out['SliceTiming'] = list(self.slice_timing)
        if self.m0_estimate is not None:
            out['M0Estimate'] = self.m0_estimate
        if self.m0_tr is not None:
            out['M0RepetitionTime'] = self.m0_tr
            out['T1Tissue'] = self.t1_tissue
        if self.field_strength is not None:
            out['MagneticFieldStrength'] = self.field_strength
        return out
