"""Deduplication: exact paragraphs (cc_net's SHA-1) and near-duplicate documents (MinHash)."""
