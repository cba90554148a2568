"""`python -m cc100` is the `cc100` command."""

import sys

from cc100.cli import main

sys.exit(main())
