"""``aslproc`` entry point: validate, build one workflow per subject, run, report.

Exit status (DESIGN.md): 0 when every requested subject finished; 1 when any
subject failed (the others still run, and stderr names each failure in one line);
2 for a usage error; 65 (EX_DATAERR) when the input fails BIDS validation.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

from aslproc import __version__
from aslproc.cli.parser import parse_args
from aslproc.cli.settings import Settings

logger = logging.getLogger('aslproc')

EX_DATAERR = 65


def main(argv=None) -> int:
    """Run aslproc; returns (and, as a console script, exits with) the status code."""
    settings = parse_args(argv)
    _setup_logging(settings.verbose)
    try:
        if settings.analysis_level == 'group':
            from aslproc.cli.group import run_group

            return run_group(settings)
        return run_participants(settings)
    except KeyboardInterrupt:  # pragma: no cover - interactive
        print('aslproc: interrupted', file=sys.stderr)
        return 130


def run_participants(settings: Settings) -> int:
    """Participant level: every selected subject in turn, isolated from the others."""
    from aslproc.bids import query
    from aslproc.bids.derivatives import write_derivative_description

    if not settings.skip_bids_validation:
        status = _validate(settings)
        if status:
            return status
    try:
        subjects = query.select_participants(settings.bids_dir, list(settings.participant_label))
    except ValueError as err:
        print(f'aslproc: {err}', file=sys.stderr)
        return 1
    settings.output_dir.mkdir(parents=True, exist_ok=True)
    settings.work_dir.mkdir(parents=True, exist_ok=True)
    write_derivative_description(settings.bids_dir, settings.output_dir, __version__)
    _record_settings(settings)
    layout = query.make_layout(settings.bids_dir)
    failures = {}
    for subject in subjects:
        error = run_subject(subject, settings, layout)
        if error:
            failures[subject] = error
    for subject, error in failures.items():
        print(f'aslproc: sub-{subject} failed: {error}', file=sys.stderr)
    done = [s for s in subjects if s not in failures]
    for s in done:
        logger.info('sub-%s: outputs in %s, report %s', s, settings.output_dir / f'sub-{s}',
                    settings.output_dir / f'sub-{s}.html')
    return 1 if failures else 0


def run_subject(subject: str, settings: Settings, layout) -> str | None:
    """Build and run one subject's workflow; the error in one line, or None on success."""
    from aslproc.bids import query
    from aslproc.bids.checks import check_asl_data
    from aslproc.reports.capture import WarningCollector
    from aslproc.reports.report import write_report
    from aslproc.workflows.base import init_single_subject_wf

    start = time.time()
    runs, error = [], None
    collector = WarningCollector().start()  # warnings of 'aslproc' and 'nipype' for the report
    try:
        runs = query.collect_runs(settings.bids_dir, subject, m0_scale=settings.m0_scale,
                                  t1_blood=settings.t1_blood, layout=layout)
        for spec in runs:
            check_asl_data(spec)
        wf = init_single_subject_wf(subject=subject, runs=runs, settings=settings)
        wf.base_dir = str(settings.work_dir)
        crashdir = settings.work_dir / f'sub-{subject}' / 'crash'
        wf.config['execution'].update({'crashdump_dir': str(crashdir), 'crashfile_format': 'txt',
                                       'stop_on_first_crash': 'true'})
        logger.info('sub-%s: running %d ASL run(s)', subject, len(runs))
        _run_workflow(wf, settings, crashdir)
        methods = wf.visit_desc()
    except ValueError as err:  # includes AslMetadataError: bad input, said in one line
        error, methods = str(err), ''
    except RuntimeError as err:
        error, methods = str(err), ''
    except Exception as err:  # noqa: BLE001 - one subject must not stop the others
        logger.exception('sub-%s: unexpected error', subject)
        error, methods = f'{type(err).__name__}: {err}', ''
    warnings = collector.stop()
    try:
        write_report(settings, subject, runs, methods=methods, error=error,
                     elapsed=time.time() - start, warnings=warnings)
    except Exception:  # noqa: BLE001 - a broken report must not hide the run's status
        logger.exception('sub-%s: could not write the report', subject)
    return error


def _run_workflow(wf, settings: Settings, crashdir: Path) -> None:
    """Run with MultiProc (Linear for one process); a failure names its crash files."""
    before = set(crashdir.glob('crash-*')) if crashdir.exists() else set()
    plugin = 'Linear' if settings.nprocs == 1 else 'MultiProc'
    # Workers come from a fork server, not from forking this process: a fork after torch has
    # run its OpenMP pool here leaves the child waiting forever on the pool's lock (libgomp).
    args = {} if plugin == 'Linear' else {'n_procs': settings.nprocs, 'raise_insufficient': False,
                                          'mp_context': 'forkserver'}
    try:
        wf.run(plugin=plugin, plugin_args=args)
    except Exception as err:
        crashes = sorted(set(crashdir.glob('crash-*')) - before) if crashdir.exists() else []
        detail = _crash_reason(crashes[0]) if crashes else str(err).splitlines()[0]
        where = f' (crash file: {crashes[0]})' if crashes else ''
        raise RuntimeError(f'{detail}{where}') from err


def _crash_reason(crashfile: Path) -> str:
    """The last line of the traceback recorded in a nipype crash file."""
    lines = [ln.strip() for ln in crashfile.read_text(errors='replace').splitlines() if ln.strip()]
    errors = [ln for ln in lines if 'Error' in ln.split(':')[0]]
    node = next((ln.split(':', 1)[1].strip() for ln in lines if ln.startswith('Node:')), '?')
    return f'node {node}: {errors[-1] if errors else lines[-1]}'


def _validate(settings: Settings) -> int:
    """Run the BIDS validator; errors stop the run, warnings are logged."""
    from aslproc.bids.validate import BidsValidationError, validate_bids

    # The root-level bids_validator_config.json of a checkout links to this package file.
    config = Path(__file__).resolve().parents[1] / 'data' / 'bids_validator_config.json'
    try:
        warnings = validate_bids(settings.bids_dir, config_file=config)
    except FileNotFoundError as err:
        print(f'aslproc: cannot validate the input: {err} (install bids-validator-deno or '
              'use --skip-bids-validation)', file=sys.stderr)
        return EX_DATAERR
    except BidsValidationError as err:
        print(f'aslproc: the input is not valid BIDS (use --skip-bids-validation to '
              f'override):\n{err}', file=sys.stderr)
        return EX_DATAERR
    for w in warnings:
        logger.warning('BIDS validator: %s', w)
    return 0


def _record_settings(settings: Settings) -> None:
    """Write the resolved settings and package versions to the work directory."""
    from aslproc.cli.provenance import provenance

    out = settings.work_dir / 'aslproc_settings.json'
    import json

    out.write_text(json.dumps({'settings': settings.to_dict(), 'provenance': provenance()},
                              indent=2, sort_keys=True) + '\n')


def _setup_logging(verbose: int) -> None:
    level = logging.WARNING - 10 * min(verbose, 2) if verbose else logging.INFO
    logging.basicConfig(level=level, format='%(asctime)s %(name)s %(levelname)s: %(message)s',
                        datefmt='%H:%M:%S', stream=sys.stderr)
    from nipype import config
    from nipype import logging as nlogging

    config.set('logging', 'workflow_level', 'INFO' if verbose else 'WARNING')
    config.set('logging', 'interface_level', 'INFO' if verbose > 1 else 'WARNING')
    config.set('execution', 'check_version', 'false')
    os.environ.setdefault('NIPYPE_NO_ET', '1')
    nlogging.update_logging(config)


if __name__ == '__main__':  # pragma: no cover
    sys.exit(main())
