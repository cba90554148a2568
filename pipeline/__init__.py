"""cc100 corpus stage: Common Crawl WET -> CCNet documents -> per-language Parquet (Apache Beam)."""
