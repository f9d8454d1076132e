"""Run the official BIDS validator (``bids-validator-deno``) and turn its JSON report into Python.

The validator ships as a Python wheel (a Deno runtime plus the bundled validator);
it reads its schema from the bundle, so it needs no network. Errors stop aslproc
with a :class:`BidsValidationError` that lists each issue code, its message and the
files it affects; warnings are returned for the caller to log.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

logger = logging.getLogger(__name__)

EXECUTABLE = 'bids-validator-deno'
#: Files listed per issue before "and N more".
MAX_FILES = 5
#: Error kinds listed in a BidsValidationError before "and N more".
MAX_KINDS = 20


class BidsValidationError(ValueError):
    """The BIDS validator found errors in a dataset."""


def find_validator() -> str:
    """Path of ``bids-validator-deno``: next to the running Python first, else on PATH."""
    local = Path(sys.executable).parent / EXECUTABLE
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    found = shutil.which(EXECUTABLE)
    if found:
        return found
    raise FileNotFoundError(
        f'{EXECUTABLE} not found next to {sys.executable} or on PATH; install it with '
        f'"pip install bids-validator-deno" or run with --skip-bids-validation'
    )


def _env() -> dict:
    """Environment for the validator: no Deno update check (no network), no prompts, no colour."""
    return {**os.environ, 'DENO_NO_UPDATE_CHECK': '1', 'DENO_NO_PROMPT': '1', 'NO_COLOR': '1'}


def _paragraph(text, limit: int = 200) -> str:
    r"""First paragraph of a validator message on one line, cut at ``limit`` characters.

    >>> _paragraph('Field description: The arterial\nspin labeling type.\n\nMore.')
    'Field description: The arterial spin labeling type.'
    """
    para = ' '.join(str(text or '').strip().split('\n\n')[0].split())
    return para if len(para) <= limit else para[: limit - 3].rstrip() + '...'


def _files(issues) -> str:
    files = sorted({f for i in issues for f in [i.get('location'), *(i.get('affects') or [])]
                    if f})
    if not files:
        return ''
    more = f' and {len(files) - MAX_FILES} more' if len(files) > MAX_FILES else ''
    return ' [' + ', '.join(files[:MAX_FILES]) + more + ']'


def summarize_issues(issues: list[dict], code_messages: dict, detail: bool = True) -> list[str]:
    """One line per issue kind: code, message, affected files (at most :data:`MAX_FILES`).

    With ``detail`` (errors) each (code, sub-code) gets a line with the issue's own
    message, e.g. the description of a missing field; without (warnings) a code gets
    one line that lists its sub-codes, so 50 missing recommended keys make one line.

    >>> issues = [{'code': 'SIDECAR_KEY_REQUIRED', 'subCode': 'M0Type', 'location': '/a.nii'},
    ...           {'code': 'SIDECAR_KEY_REQUIRED', 'subCode': 'M0Type', 'location': '/b.nii'}]
    >>> summarize_issues(issues, {'SIDECAR_KEY_REQUIRED': 'Sidecar lacks a required key.'})
    ['SIDECAR_KEY_REQUIRED (M0Type): Sidecar lacks a required key. [/a.nii, /b.nii]']
    """
    groups: dict[tuple, list[dict]] = {}
    for issue in issues:
        key = (issue.get('code', '?'), issue.get('subCode') if detail else None)
        groups.setdefault(key, []).append(issue)
    lines = []
    for (code, sub), group in groups.items():
        text = _paragraph(code_messages.get(code))
        if detail:
            extra = _paragraph(group[0].get('issueMessage'))
            text = f'{text} {extra}'.strip() if extra and extra != text else text
            head = f'{code} ({sub})' if sub else code
        else:
            subs = list(dict.fromkeys(i['subCode'] for i in group if i.get('subCode')))
            more = f' and {len(subs) - 8} more' if len(subs) > 8 else ''
            head = f'{code} ({", ".join(subs[:8])}{more})' if subs else code
        lines.append(f'{head}: {text}{_files(group)}')
    return lines


def parse_report(report: dict) -> tuple[list[str], list[str]]:
    """Error and warning lines of a validator JSON report (issues set to 'ignore' are dropped)."""
    block = report.get('issues', {})
    issues = block.get('issues', []) if isinstance(block, dict) else list(block)
    messages = block.get('codeMessages', {}) if isinstance(block, dict) else {}
    errors = [i for i in issues if i.get('severity') == 'error']
    warnings = [i for i in issues if i.get('severity') == 'warning']
    return summarize_issues(errors, messages), summarize_issues(warnings, messages, False)


def validate_bids(bids_dir, config_file=None, derivative: bool = False,
                  timeout: float = 600.0) -> list[str]:
    """Validate a dataset with ``bids-validator-deno`` and return its warnings.

    Parameters
    ----------
    bids_dir : path-like
        Dataset root.
    config_file : path-like, optional
        Validator configuration (``--config``) that re-classifies issues.
    derivative : bool
        Validate as a derivative dataset (``--datasetTypes derivative``).
    timeout : float
        Seconds before the validator is stopped.

    Returns
    -------
    list of str
        One line per warning code (with the files it affects).

    Raises
    ------
    BidsValidationError
        When the validator reports errors; the message lists them.
    """
    bids_dir = Path(bids_dir)
    if not bids_dir.is_dir():
        raise BidsValidationError(f'BIDS dataset folder not found: {bids_dir}')
    cmd = [find_validator(), str(bids_dir), '--json']
    if config_file is not None:
        cmd += ['--config', str(config_file)]
    if derivative:
        cmd += ['--datasetTypes', 'derivative']
    logger.info('running %s', ' '.join(cmd))
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=_env(),
                              stdin=subprocess.DEVNULL, check=False)
    except subprocess.TimeoutExpired as err:
        raise BidsValidationError(f'the BIDS validator did not finish within {timeout:.0f} s '
                                  f'on {bids_dir}') from err
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError as err:
        tail = (proc.stderr or proc.stdout).strip()[-2000:]
        raise BidsValidationError(f'the BIDS validator failed on {bids_dir} (exit code '
                                  f'{proc.returncode}): {tail}') from err
    errors, warnings = parse_report(report)
    if errors:
        shown = errors[:MAX_KINDS] + ([f'... and {len(errors) - MAX_KINDS} more kinds']
                                      if len(errors) > MAX_KINDS else [])
        raise BidsValidationError(
            f'BIDS validation of {bids_dir} found {len(errors)} kind(s) of error:\n  '
            + '\n  '.join(shown))
    if proc.returncode not in (0, 16):
        raise BidsValidationError(f'the BIDS validator exited with code {proc.returncode} on '
                                  f'{bids_dir}: {proc.stderr.strip()[-2000:]}')
    for line in warnings:
        logger.debug('BIDS validator warning: %s', line)
    return warnings
