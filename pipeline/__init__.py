"""cc100 corpus stage: Common Crawl WET -> CCNet documents -> per-language Parquet (Apache Beam)."""

from pipeline.utils.logs import quiet_imports

quiet_imports()  # before any pipeline module imports Beam (see pipeline/utils/logs.py)
