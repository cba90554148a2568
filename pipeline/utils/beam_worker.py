"""Entry point of the local runner's worker processes (`--workers N`).

Beam starts each worker as `python -m apache_beam.runners.worker.sdk_worker_main`; starting it
through this module instead imports `pipeline` first (pipeline/utils/logs.py), so a worker logs in
the same format as the main process and without Beam's import and start-up chatter.
"""

import sys

import pipeline  # noqa: F401  (its import sets up logging before Beam is imported)
from apache_beam.runners.worker import sdk_worker_main

if __name__ == "__main__":
    sdk_worker_main.main(sys.argv)
