"""The contracts between cc100's stages, in one place.

Standard library only: the Airflow DAGs and the report import it without Beam or torch.
Every stage's output directory keeps its run metadata in META_DIR (a dot-directory, so the
Parquet readers -- pyarrow, pandas, polars, duckdb, Hugging Face `datasets` -- skip it), and
MARKER_FILE in it proves that the directory was written by that stage: a stage replaces or
deletes only directories that carry its own marker.
"""

from __future__ import annotations

META_DIR = ".cc100"
MARKER_FILE = "stage.json"  # {"stage": "<name>", "format_version": <int>, ...}
