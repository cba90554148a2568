"""Against code no one here wrote: transformers' XLMRobertaForMaskedLM, built from a config (no hub).

Both directions, on a padded batch of ten languages, max |logit difference| <= 1e-5 in fp32/eval.
Every weight is perturbed away from its initial value first, so a swapped or dropped bias or LayerNorm
(initialised to 0/1) cannot hide.
"""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from model.hf import (config_from_hf, config_to_hf, from_hf_state_dict, load_pretrained,
                      save_pretrained, to_hf_state_dict)
from model.xlmr import XLMRForMaskedLM, config_for

from .conftest import hf_config

transformers = pytest.importorskip("transformers")
TOL = 1e-5


def perturb(module: torch.nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)


def labels_for(ids, mask):
    labels = torch.full_like(ids, -100)
    labels[:, 1::4] = ids[:, 1::4]
    return labels.masked_fill(mask == 0, -100)


def ours_random(cfg) -> XLMRForMaskedLM:
    torch.manual_seed(0)
    model = XLMRForMaskedLM(cfg)
    perturb(model)
    return model.eval()


def hf_random(cfg):
    torch.manual_seed(1)
    model = transformers.XLMRobertaForMaskedLM(hf_config(cfg))
    perturb(model, seed=1)
    return model.eval()


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


def test_ours_exported_loads_in_hf_with_equal_logits(tmp_path, tiny_config, multilingual_batch):
    ids, mask = multilingual_batch
    ours = ours_random(tiny_config)
    save_pretrained(ours, tmp_path)
    hf, info = transformers.XLMRobertaForMaskedLM.from_pretrained(tmp_path, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    hf.eval()
    labels = labels_for(ids, mask)
    with torch.no_grad():
        a = ours(ids, mask, labels=labels)
        b = hf(input_ids=ids, attention_mask=mask, labels=labels)
    assert max_diff(a.logits, b.logits) <= TOL
    assert abs(a.loss.item() - b.loss.item()) <= TOL
    # HF re-tied the decoder to our word embeddings
    assert torch.equal(hf.lm_head.decoder.weight, ours.encoder.embeddings.word.weight)


def test_hf_weights_load_into_ours_with_equal_logits(tmp_path, tiny_config, multilingual_batch):
    ids, mask = multilingual_batch
    hf = hf_random(tiny_config)
    hf.save_pretrained(tmp_path)
    ours = load_pretrained(tmp_path)
    assert not ours.training  # eval mode, as from_pretrained
    assert ours.config == tiny_config
    with torch.no_grad():
        a = ours(ids, mask).logits
        b = hf(input_ids=ids, attention_mask=mask).logits
    assert max_diff(a, b) <= TOL
    # HF's in-memory state dict (tied decoder keys included) converts the same way
    state = from_hf_state_dict(hf.state_dict(), tiny_config)
    direct = XLMRForMaskedLM(tiny_config).eval()
    direct.load_state_dict(state)
    with torch.no_grad():
        assert max_diff(direct(ids, mask).logits, b) <= TOL


def test_round_trip_of_names_is_exact(tiny_config):
    ours = ours_random(tiny_config)
    back = from_hf_state_dict(to_hf_state_dict(ours.state_dict(), tiny_config), tiny_config)
    sd = ours.state_dict()
    assert back.keys() == sd.keys()
    assert all(torch.equal(back[k], sd[k]) for k in sd)


def test_base_and_large_param_counts_match_hf_exactly():
    """On the meta device: no memory for either 278M-parameter model."""
    expected = {"base": 278_295_186, "large": 560_142_482}  # XLM-R's published sizes with the MLM head
    for name in ("base", "large"):
        cfg = config_for(name, vocab_size=250002)
        with torch.device("meta"):
            ours = XLMRForMaskedLM(cfg)
            hf = transformers.XLMRobertaForMaskedLM(hf_config(cfg))
        assert ours.get_num_params() == hf.num_parameters() == expected[name], name


def test_config_json_reads_back_in_transformers(tmp_path, tiny_config):
    save_pretrained(ours_random(tiny_config), tmp_path)
    cfg = transformers.XLMRobertaConfig.from_pretrained(tmp_path)
    for field, value in dataclasses.asdict(tiny_config).items():
        assert getattr(cfg, field) == value, field
    assert cfg.model_type == "xlm-roberta" and cfg.hidden_act == "gelu" and cfg.tie_word_embeddings
    assert config_from_hf(json.loads((tmp_path / "config.json").read_text())) == tiny_config


def test_config_from_hf_uses_hf_defaults_and_rejects_what_we_cannot_run():
    cfg = config_from_hf({"model_type": "xlm-roberta", "vocab_size": 100, "hidden_size": 32,
                          "num_attention_heads": 2})
    hf = transformers.XLMRobertaConfig(vocab_size=100, hidden_size=32, num_attention_heads=2)
    assert (cfg.type_vocab_size, cfg.layer_norm_eps, cfg.max_position_embeddings) == \
        (hf.type_vocab_size, hf.layer_norm_eps, hf.max_position_embeddings)
    base = config_to_hf(config_for("tiny"))
    for key, value in [("hidden_act", "relu"), ("position_embedding_type", "relative_key"),
                       ("is_decoder", True), ("tie_word_embeddings", False), ("model_type", "bert")]:
        with pytest.raises(ValueError, match=key):
            config_from_hf({**base, key: value})


def test_legacy_bin_with_pooler_and_tied_copies(tmp_path, tiny_config, multilingual_batch):
    """Older exports: pytorch_model.bin, the decoder stored twice, a pooler, the position_ids buffer."""
    ids, mask = multilingual_batch
    hf = hf_random(tiny_config)
    sd = dict(hf.state_dict())
    assert "lm_head.decoder.weight" in sd and "lm_head.decoder.bias" in sd
    c = tiny_config.hidden_size
    sd["roberta.pooler.dense.weight"] = torch.zeros(c, c)
    sd["roberta.pooler.dense.bias"] = torch.zeros(c)
    sd["roberta.embeddings.position_ids"] = torch.arange(tiny_config.max_position_embeddings)[None]
    torch.save(sd, tmp_path / "pytorch_model.bin")
    (tmp_path / "config.json").write_text(json.dumps(hf.config.to_dict()))
    with pytest.warns(UserWarning, match="roberta.pooler.dense.weight"):
        ours = load_pretrained(tmp_path)
    with torch.no_grad():
        assert max_diff(ours(ids, mask).logits, hf(input_ids=ids, attention_mask=mask).logits) <= TOL


def test_sharded_safetensors_directory(tmp_path, tiny_config, multilingual_batch):
    ids, mask = multilingual_batch
    hf = hf_random(tiny_config)
    hf.save_pretrained(tmp_path, max_shard_size="40KB")
    assert (tmp_path / "model.safetensors.index.json").is_file()
    ours = load_pretrained(tmp_path)
    with torch.no_grad():
        assert max_diff(ours(ids, mask).logits, hf(input_ids=ids, attention_mask=mask).logits) <= TOL


def test_bad_directories_fail_with_a_message_naming_them(tmp_path, tiny_config):
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_pretrained(tmp_path)
    save_pretrained(ours_random(tiny_config), tmp_path)
    # a weight missing from the file
    from safetensors.torch import load_file, save_file
    sd = load_file(tmp_path / "model.safetensors")
    del sd["roberta.encoder.layer.1.output.dense.bias"]
    save_file(sd, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match="roberta.encoder.layer.1.output.dense.bias"):
        load_pretrained(tmp_path)
    # weights of another size than config.json says
    cfg = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**cfg, "vocab_size": cfg["vocab_size"] + 1}))
    save_pretrained(ours_random(tiny_config), tmp_path / "x")
    (tmp_path / "x" / "config.json").write_text(json.dumps({**cfg, "vocab_size": cfg["vocab_size"] + 1}))
    with pytest.raises(ValueError, match="do not match"):
        load_pretrained(tmp_path / "x")
