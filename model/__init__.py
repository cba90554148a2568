"""The XLM-RoBERTa encoder (PyTorch only)."""
