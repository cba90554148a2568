"""Quality: language identification, scoring models (SentencePiece + KenLM), perplexity, buckets."""
