#!/usr/bin/env python3
"""BIDS-App entry point: ``run.py BIDS_DIR OUTPUT_DIR participant|group [options]``."""

import sys

from aslproc.cli.run import main

if __name__ == '__main__':
    sys.exit(main())
