"""One version everywhere: the ``version`` file is the single source; everything else that
states a version (package metadata, ``aslproc --version``, container files) must agree."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.version import Version

import aslproc

ROOT = Path(__file__).resolve().parents[1]
VERSION = (ROOT / 'version').read_text().strip()


def test_version_file_is_pep440():
    assert str(Version(VERSION)) == VERSION
    assert (ROOT / 'version').read_text() in {VERSION, VERSION + '\n'}


def test_package_version():
    assert aslproc.__version__ == VERSION
    assert metadata.version('aslproc') == VERSION, 'stale install: rerun make install'


@pytest.mark.parametrize('command', [['aslproc'], [sys.executable, str(ROOT / 'run.py')]],
                         ids=['console-script', 'run.py'])
def test_cli_version(command):
    exe = Path(sys.executable).parent / command[0]
    if command == ['aslproc']:
        assert exe.is_file(), 'the aslproc console script is not installed (make install)'
        command = [str(exe)]
    proc = subprocess.run([*command, '--version'], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f'aslproc {VERSION}'


def test_dockerfile_version_defaults():
    text = (ROOT / 'Dockerfile').read_text()
    defaults = re.findall(r'^ARG VERSION=(\S+)\s*$', text, re.M)
    assert defaults, 'the Dockerfile has no ARG VERSION default'
    assert set(defaults) == {VERSION}
    assert '--build-arg VERSION=$(cat version) -t aslproc:$(cat version)' in text


def test_singularity_def_version():
    text = (ROOT / 'Singularity.def').read_text()
    assert re.search(r'^From:\s*(\S+)\s*$', text, re.M).group(1) == f'aslproc:{VERSION}'
    assert re.search(r'org\.opencontainers\.image\.version\s+(\S+)', text).group(1) == VERSION
    assert f'aslproc {VERSION}:' in text.split('%help', 1)[1]
