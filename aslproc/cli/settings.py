"""The resolved settings of one aslproc invocation, passed down explicitly."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from aslproc.utils.template import DEFAULT_SPACES, parse_spaces


@dataclass(frozen=True)
class Settings:
    """Everything the command line decided; no module reads global state instead.

    Attributes mirror the command-line options (see ``aslproc --help``).
    """

    bids_dir: Path
    output_dir: Path
    analysis_level: str
    participant_label: tuple = ()
    work_dir: Path = Path('work')
    nprocs: int = 1
    omp_nthreads: int = 1
    skip_bids_validation: bool = False
    m0_scale: float = 1.0
    t1_blood: float | None = None
    smooth_fwhm: float = 5.0
    motion_compensation: bool = True
    device: str = 'auto'
    denoise: bool = True
    denoise_pv: bool = False
    denoise_adapt: int = 0
    lesion_guard: float = 10.0
    pvc: bool = False
    sr: bool = True
    sr_iters: int | None = None
    sr_levels: int | None = None
    sr_baseline: bool = False
    verbose: int = 0
    att_smooth: float = 8.0
    output_spaces: tuple = DEFAULT_SPACES
    atlas: Path | None = None
    atlas_labels: Path | None = None

    @property
    def spaces(self) -> tuple:
        """``output_spaces`` as :class:`~aslproc.utils.template.Space` objects."""
        return parse_spaces(self.output_spaces)

    @property
    def normalize(self) -> bool:
        """Whether a template space is requested (the T1w is then normalized)."""
        return any(s.is_template for s in self.spaces)

    def to_dict(self) -> dict:
        """JSON-ready form (paths as strings)."""
        return {k: (str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v)
                for k, v in dataclasses.asdict(self).items()}

    def dumps(self) -> str:
        """The settings as indented JSON, as recorded in the work directory."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + '\n'
