"""Vocabulary, token shards and masked-LM pretraining on the cc100 corpus."""
