"""BIDS input and output of aslproc: discovery, metadata parsing into AslSpec, checks.

pybids is imported only when :func:`make_layout` or :func:`collect_runs` runs, so
importing this package stays cheap.
"""

from aslproc.bids.checks import check_asl_data
from aslproc.bids.derivatives import (
    atomic_copy,
    atomic_write_json,
    atomic_write_text,
    write_derivative_description,
)
from aslproc.bids.metadata import build_spec, read_aslcontext
from aslproc.bids.query import collect_runs, list_participants, make_layout, select_participants
from aslproc.bids.spec import AslSpec
from aslproc.bids.validate import BidsValidationError, find_validator, validate_bids

__all__ = [
    'AslSpec',
    'BidsValidationError',
    'atomic_copy',
    'atomic_write_json',
    'atomic_write_text',
    'build_spec',
    'check_asl_data',
    'collect_runs',
    'find_validator',
    'list_participants',
    'make_layout',
    'read_aslcontext',
    'select_participants',
    'validate_bids',
    'write_derivative_description',
]
