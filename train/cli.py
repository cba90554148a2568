"""Deprecated location of the `cc100` dispatcher: it lives in `cc100/cli.py` now.

Kept so `python -m train.cli ...` and `from train.cli import main` keep working.
"""

import sys

from cc100.cli import COMMANDS, main, usage, version  # noqa: F401

if __name__ == "__main__":
    sys.exit(main())
