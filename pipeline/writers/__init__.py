"""Writing and reporting: per-language Parquet, stats.json, the dataset card, the HTML report."""
