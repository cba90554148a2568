"""Reading and fetching: WET records, segments of a run, Common Crawl snapshots, downloads."""
