"""The XLM-RoBERTa encoder (PyTorch only): model/xlmr.py is the model, model/hf.py the Hugging Face
format (export and import), model/export.py the `cc100 export` command."""

from model.hf import load_pretrained, save_pretrained
from model.xlmr import XLMRConfig, XLMRForMaskedLM, config_for

__all__ = ["XLMRConfig", "XLMRForMaskedLM", "config_for", "load_pretrained", "save_pretrained"]
