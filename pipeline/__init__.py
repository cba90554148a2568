"""cc100 corpus stage: Common Crawl WET -> CCNet documents -> per-language Parquet (Apache Beam)."""

from pipeline.logs import quiet_imports

quiet_imports()  # before any pipeline module imports Beam (see pipeline/logs.py)
