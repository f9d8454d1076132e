"""Single-compartment ASL kinetic models: the one source of the physics in aslproc.

The pipeline's quantification, the denoiser's training loss and the phantom
simulator all call these functions, so a change here changes all three alike.

Every function works on plain Python floats, numpy arrays *or* torch tensors
(whatever the signal argument is, the result is of the same kind), broadcasts
its parameters (a per-slice post-labeling delay is an array that broadcasts
along the last spatial axis), and never touches disk.

Units: times in seconds, CBF in ml/100 g/min, M0 and ΔM in the same arbitrary
signal units, λ in ml/g.

References
----------
Alsop DC et al. Recommended implementation of arterial spin-labeled perfusion
MRI for clinical applications (the "white paper"). MRM 73:102-116, 2015.
Buxton RB et al. A general kinetic model for quantitative perfusion imaging
with arterial spin labeling. MRM 40:383-396, 1998.
"""

from __future__ import annotations

import logging
import math

import numpy as np

logger = logging.getLogger(__name__)

#: Blood-brain partition coefficient λ (ml/g), white paper Table 1.
BLOOD_BRAIN_PARTITION = 0.9
#: ml/g/s -> ml/100 g/min.
UNIT_CONVERSION = 6000.0
#: T1 of arterial blood (s) by field strength (T), white paper Table 1 (1.5 T: Lu 2004).
T1_BLOOD = {1.5: 1.35, 3.0: 1.65}
#: T1 of grey matter (s) by field strength (T), for the M0 saturation-recovery correction
#: (Wansapura et al., JMRI 9:531-538, 1999).
T1_TISSUE = {1.5: 1.1, 3.0: 1.33}
#: Default labeling efficiency α at the labeling plane, white paper Table 1.
LABELING_EFFICIENCY = {'PCASL': 0.85, 'CASL': 0.68, 'PASL': 0.98}
#: Fraction of the label that survives one background-suppression inversion pulse
#: (white paper section "Background suppression": about 0.95 per pulse).
BS_EFFICIENCY_PER_PULSE = 0.95


class AslMetadataError(ValueError):
    """Acquisition parameters that cannot give a valid quantification."""


def _is_torch(x) -> bool:
    return type(x).__module__.split('.')[0] == 'torch'


def _like(*args):
    """The first torch tensor among ``args`` (else the first argument): the array kind of
    the result, so that a tensor arrival time or delay makes the model run in torch."""
    return next((a for a in args if _is_torch(a)), args[0])


class _Namespace:
    """The few array operations the models need, in numpy or in torch.

    Parameters given as floats or numpy arrays are converted to tensors of the
    signal's dtype and device, so gradients flow through the signal argument.
    """

    def __init__(self, like):
        self.torch = _is_torch(like)
        if self.torch:
            import torch

            self.lib, self.dtype, self.device = torch, like.dtype, like.device
        else:
            self.lib = np

    def asarray(self, x):
        if self.torch:
            return self.lib.as_tensor(x, dtype=self.dtype, device=self.device)
        return np.asarray(x, dtype=float)

    def exp(self, x):
        return self.lib.exp(self.asarray(x))

    def where(self, cond, a, b):
        return self.lib.where(cond, a, b)

    def clip(self, x, lo, hi):
        x = self.asarray(x)
        return self.lib.clamp(x, lo, hi) if self.torch else np.clip(x, lo, hi)


def t1_blood(field_strength: float | None) -> float:
    """T1 of arterial blood (s) for a field strength in tesla.

    Uses the white paper's 1.65 s at 3 T and 1.35 s at 1.5 T; other fields
    take the nearest tabulated value, and an unknown field assumes 3 T.

    >>> t1_blood(3)
    1.65
    >>> t1_blood(1.5)
    1.35
    >>> t1_blood(None)
    1.65
    """
    if field_strength is None:
        return T1_BLOOD[3.0]
    key = min(T1_BLOOD, key=lambda k: abs(k - float(field_strength)))
    return T1_BLOOD[key]


def t1_tissue(field_strength: float | None) -> float:
    """T1 of grey matter (s) used to correct an M0 acquired with a short TR.

    >>> t1_tissue(3.0)
    1.33
    """
    if field_strength is None:
        return T1_TISSUE[3.0]
    key = min(T1_TISSUE, key=lambda k: abs(k - float(field_strength)))
    return T1_TISSUE[key]


def background_suppression_factor(n_pulses: int | None, per_pulse: float = BS_EFFICIENCY_PER_PULSE
                                  ) -> float:
    """Fraction of ΔM left after ``n_pulses`` background-suppression inversions.

    .. math:: \\alpha_{BS} = 0.95^{n}

    >>> round(background_suppression_factor(4), 6)
    0.814506
    >>> background_suppression_factor(0)
    1.0
    """
    n = int(n_pulses or 0)
    if n < 0:
        raise AslMetadataError(f'BackgroundSuppressionNumberPulses must be >= 0, got {n}')
    return float(per_pulse**n)


def m0_saturation_correction(tr: float, t1: float) -> float:
    """Factor that scales an M0 acquired with repetition time ``tr`` (s) to full recovery.

    A saturation-recovery M0 reaches :math:`1-e^{-TR/T_1}` of its equilibrium value,
    so the measured M0 is divided by that fraction (white paper, "M0 image").

    >>> round(m0_saturation_correction(2.0, 1.33), 4)
    1.2858
    >>> round(m0_saturation_correction(10.0, 1.33), 4)
    1.0005
    """
    if tr is None or not math.isfinite(tr) or tr <= 0:
        raise AslMetadataError(
            f'RepetitionTimePreparation of the M0 must be a positive number of seconds, got {tr!r}'
        )
    return 1.0 / (1.0 - math.exp(-tr / t1))


def pcasl_cbf(delta_m, m0, pld, tau, t1b=1.65, alpha=0.85, lam=BLOOD_BRAIN_PARTITION):
    """CBF (ml/100 g/min) from (P)CASL ΔM, white paper eq. 1.

    .. math::
        f = \\frac{6000\\,\\lambda\\,\\Delta M\\,e^{PLD/T_{1b}}}
                  {2\\,\\alpha\\,T_{1b}\\,M_0\\,(1-e^{-\\tau/T_{1b}})}

    Parameters
    ----------
    delta_m, m0 : array-like
        Control minus label, and the equilibrium magnetization, same units.
    pld, tau : float or array-like
        Post-labeling delay and labeling duration (s).
    t1b, alpha, lam : float
        T1 of blood (s), total labeling efficiency, partition coefficient (ml/g).

    Examples
    --------
    ΔM = 1 % of M0 at PLD 1.8 s and τ 1.8 s gives
    5400·e^(1.8/1.65) / (280.5·(1 − e^(−1.8/1.65))) = 86.30 ml/100 g/min:

    >>> round(float(pcasl_cbf(1.0, 100.0, 1.8, 1.8)), 2)
    86.3
    """
    xp = _Namespace(delta_m)
    pld, tau = xp.asarray(pld), xp.asarray(tau)
    num = UNIT_CONVERSION * lam * delta_m * xp.exp(pld / t1b)
    return num / (2.0 * alpha * t1b * m0 * (1.0 - xp.exp(-tau / t1b)))


def pasl_cbf(delta_m, m0, ti, ti1, t1b=1.65, alpha=0.98, lam=BLOOD_BRAIN_PARTITION):
    """CBF (ml/100 g/min) from PASL ΔM with QUIPSS II / Q2TIPS, white paper eq. 2.

    .. math::
        f = \\frac{6000\\,\\lambda\\,\\Delta M\\,e^{TI/T_{1b}}}{2\\,\\alpha\\,TI_1\\,M_0}

    ``ti`` is the inversion time (BIDS PostLabelingDelay for PASL) and ``ti1`` the
    bolus cut-off delay (BIDS BolusCutOffDelayTime), both in seconds.

    ΔM = 1 % of M0, TI 1.8 s, TI1 0.8 s: 5400·e^(1.8/1.65) / (2·0.98·0.8·100) = 102.52:

    >>> round(float(pasl_cbf(1.0, 100.0, 1.8, 0.8)), 2)
    102.52
    """
    xp = _Namespace(delta_m)
    ti, ti1 = xp.asarray(ti), xp.asarray(ti1)
    return UNIT_CONVERSION * lam * delta_m * xp.exp(ti / t1b) / (2.0 * alpha * ti1 * m0)


def pcasl_signal(cbf, m0, pld, tau, att=0.0, t1b=1.65, alpha=0.85, lam=BLOOD_BRAIN_PARTITION):
    """ΔM of (P)CASL from CBF with arterial transit time, Buxton's model with T1 tissue = T1 blood.

    Readout at ``t = tau + pld`` after the start of labeling; label arrives after ``att``:

    - ``pld >= att``: the white-paper signal (exact inverse of :func:`pcasl_cbf`);
    - ``att - tau <= pld < att``: partial bolus, :math:`2\\alpha M_0 f T_{1b} e^{-att/T_{1b}}
      (1-e^{-(\\tau+PLD-att)/T_{1b}})/\\lambda`;
    - earlier: no signal.

    >>> dm = pcasl_signal(86.3, 100.0, 1.8, 1.8)
    >>> round(float(dm), 3)
    1.0
    >>> float(pcasl_signal(60.0, 100.0, 0.5, 0.5, att=1.5))
    0.0
    """
    xp = _Namespace(_like(cbf, att, pld))
    pld, tau, att = xp.asarray(pld), xp.asarray(tau), xp.asarray(att)
    scale = 2.0 * alpha * m0 * (cbf / UNIT_CONVERSION) * t1b / lam
    full = scale * xp.exp(-pld / t1b) * (1.0 - xp.exp(-tau / t1b))
    arrived = xp.clip(tau + pld - att, 0.0, None)
    partial = scale * xp.exp(-att / t1b) * (1.0 - xp.exp(-arrived / t1b))
    return xp.where(pld >= att, full, partial)


def pasl_signal(cbf, m0, ti, ti1, att=0.0, t1b=1.65, alpha=0.98, lam=BLOOD_BRAIN_PARTITION):
    """ΔM of PASL (QUIPSS II) from CBF with arterial transit time, Buxton's model.

    - ``ti >= att + ti1``: white-paper signal :math:`2\\alpha M_0 f TI_1 e^{-TI/T_{1b}}/\\lambda`;
    - ``att <= ti < att + ti1``: :math:`2\\alpha M_0 f (TI-att) e^{-TI/T_{1b}}/\\lambda`;
    - earlier: no signal.

    >>> round(float(pasl_signal(102.52, 100.0, 1.8, 0.8)), 3)
    1.0
    """
    xp = _Namespace(_like(cbf, att, ti))
    ti, ti1, att = xp.asarray(ti), xp.asarray(ti1), xp.asarray(att)
    bolus = xp.lib.minimum(xp.clip(ti - att, 0.0, None), ti1)
    return 2.0 * alpha * m0 * (cbf / UNIT_CONVERSION) * xp.exp(-ti / t1b) * bolus / lam


def quantify(delta_m, m0, params: dict):
    """CBF from ΔM and M0 with the parameters of one acquisition.

    ``params`` is the quantification dictionary that :class:`aslproc.bids.AslSpec`
    produces (keys: ``label_type``, ``pld``, ``tau`` or ``ti1``, ``t1_blood``,
    ``alpha`` — labeling times background-suppression efficiency — and ``lam``).

    >>> p = dict(label_type='PCASL', pld=1.8, tau=1.8, t1_blood=1.65, alpha=0.85, lam=0.9)
    >>> round(float(quantify(1.0, 100.0, p)), 2)
    86.3
    """
    kind = params['label_type']
    common = dict(t1b=params['t1_blood'], alpha=params['alpha'], lam=params['lam'])
    if kind in ('PCASL', 'CASL'):
        return pcasl_cbf(delta_m, m0, params['pld'], params['tau'], **common)
    if kind == 'PASL':
        return pasl_cbf(delta_m, m0, params['pld'], params['ti1'], **common)
    raise AslMetadataError(f'ArterialSpinLabelingType must be PCASL, CASL or PASL, got {kind!r}')


def forward(cbf, m0, params: dict, att=0.0):
    """ΔM that an acquisition with ``params`` measures for a CBF map (inverse of :func:`quantify`).

    >>> p = dict(label_type='PASL', pld=1.8, ti1=0.8, t1_blood=1.65, alpha=0.98, lam=0.9)
    >>> round(float(forward(quantify(2.0, 100.0, p), 100.0, p)), 6)
    2.0
    """
    kind = params['label_type']
    common = dict(t1b=params['t1_blood'], alpha=params['alpha'], lam=params['lam'])
    if kind in ('PCASL', 'CASL'):
        return pcasl_signal(cbf, m0, params['pld'], params['tau'], att=att, **common)
    if kind == 'PASL':
        return pasl_signal(cbf, m0, params['pld'], params['ti1'], att=att, **common)
    raise AslMetadataError(f'ArterialSpinLabelingType must be PCASL, CASL or PASL, got {kind!r}')


def kinetic_curve(params: dict, att, pld=None):
    """ΔM/M0 per unit CBF (per ml/100 g/min) of the general kinetic model, arrival time ``att``.

    The single-compartment model of Buxton et al. (1998) in the form of the multi-delay
    consensus (T1 of tissue = T1 of blood, no outflow): :func:`pcasl_signal` for PCASL/CASL,
    :func:`pasl_signal` (QUIPSS II / Q2TIPS, bolus duration TI1) for PASL. ΔM is linear in
    CBF, ``ΔM = CBF · M0 · kinetic_curve(params, att, pld)``; ``pld`` (default
    ``params['pld']``) is the PLD, or TI for PASL, and broadcasts against ``att``. Torch in
    either argument gives a torch result.

    PCASL, τ 1.8 s, PLD 1.8 s, bolus arrived: 2·0.85·1.65·e^(−1.8/1.65)·(1 − e^(−1.8/1.65))
    / (6000·0.9) = 1.1587e-4; arrival 1.5 s at PLD 0.5 s (0.8 s of the bolus in):
    2·0.85·1.65·e^(−1.5/1.65)·(1 − e^(−0.8/1.65)) / 5400 = 8.041e-5; PASL, TI 1 s, TI1 0.8 s,
    arrival 0.5 s (0.5 s of the bolus in): 2·0.98·e^(−1/1.65)·0.5 / 5400 = 9.900e-5:

    >>> p = dict(label_type='PCASL', pld=1.8, tau=1.8, t1_blood=1.65, alpha=0.85, lam=0.9)
    >>> [round(float(kinetic_curve(p, a, d)) * 1e5, 3) for a, d in ((0.5, 1.8), (1.5, 0.5))]
    [11.587, 8.041]
    >>> q = dict(label_type='PASL', ti1=0.8, t1_blood=1.65, alpha=0.98, lam=0.9)
    >>> round(float(kinetic_curve(q, 0.5, 1.0)) * 1e5, 3)
    9.9
    """
    return forward(1.0, 1.0, params if pld is None else dict(params, pld=pld), att=att)


def full_bolus_time(params: dict, pld=None):
    """Latest arrival time (s) for which the whole bolus is in the voxel at the readout.

    After it the general kinetic model no longer depends on the arrival time (T1 of tissue =
    T1 of blood): a voxel whose every delay is past this time bounds its ATT from above
    only. (P)CASL: the PLD; PASL: TI − TI1.

    >>> full_bolus_time(dict(label_type='PCASL'), 1.5)
    1.5
    >>> round(full_bolus_time(dict(label_type='PASL', ti1=0.7), 1.5), 6)
    0.8
    """
    pld = params['pld'] if pld is None else pld
    kind = params['label_type']
    if kind in ('PCASL', 'CASL'):
        return pld
    if kind == 'PASL':
        return pld - params['ti1']
    raise AslMetadataError(f'ArterialSpinLabelingType must be PCASL, CASL or PASL, got {kind!r}')


def safe_cbf(delta_m, m0, params: dict, m0_floor: float):
    """:func:`quantify` where ``m0 > m0_floor`` and 0 elsewhere (no division blow-up).

    >>> p = dict(label_type='PCASL', pld=1.8, tau=1.8, t1_blood=1.65, alpha=0.85, lam=0.9)
    >>> safe_cbf(np.array([1.0, 1.0]), np.array([100.0, 0.0]), p, 1.0).round(2).tolist()
    [86.3, 0.0]
    """
    xp = _Namespace(delta_m)
    ok = xp.asarray(m0) > m0_floor
    safe_m0 = xp.where(ok, xp.asarray(m0), xp.asarray(1.0))
    return xp.where(ok, quantify(delta_m, safe_m0, params), xp.asarray(0.0))
