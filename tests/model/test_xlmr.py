"""The encoder on its own: config checks, fairseq positions, padding, the masked-only head, gradients,
initialisation, torch.compile without graph breaks, bf16 autocast."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from model.xlmr import (PRESETS, XLMRConfig, XLMRForMaskedLM, config_for, position_ids_from,
                        unwrap_state_dict)


def make_model(cfg, seed=0, **kw) -> XLMRForMaskedLM:
    torch.manual_seed(seed)
    return XLMRForMaskedLM(cfg, **kw)


def mlm_labels(ids: torch.Tensor, attention_mask: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """-100 everywhere except ~30% of the real tokens, whose label is some other id."""
    g = torch.Generator().manual_seed(seed)
    pick = (torch.rand(ids.shape, generator=g) < 0.3) & attention_mask.bool()
    pick[0, 1] = True  # at least one target
    labels = torch.randint(3, 40, ids.shape, generator=g)
    return torch.where(pick, labels, torch.full_like(labels, -100))


# ---------------------------------------------------------------- config


@pytest.mark.parametrize("field,value", [
    ("hidden_size", 0), ("num_hidden_layers", -1), ("vocab_size", 2.5), ("num_attention_heads", True),
    ("pad_token_id", 250002), ("eos_token_id", -1), ("hidden_dropout_prob", 1.0),
    ("attention_probs_dropout_prob", -0.1), ("layer_norm_eps", 0.0), ("initializer_range", 0),
    ("max_position_embeddings", 2),
])
def test_config_rejects_bad_field_naming_it(field, value):
    with pytest.raises(ValueError, match=field):
        XLMRConfig(**{field: value})


def test_config_rejects_heads_not_dividing_hidden():
    with pytest.raises(ValueError, match="num_attention_heads"):
        XLMRConfig(hidden_size=100, num_attention_heads=3)


def test_presets_match_the_issue_and_take_overrides():
    shapes = {name: (c.num_hidden_layers, c.hidden_size, c.num_attention_heads, c.intermediate_size)
              for name, c in ((n, config_for(n)) for n in PRESETS)}
    assert shapes == {"tiny": (2, 64, 2, 128), "small": (4, 256, 4, 1024),
                      "base": (12, 768, 12, 3072), "large": (24, 1024, 16, 4096)}
    base = config_for("base")
    assert (base.vocab_size, base.max_position_embeddings, base.pad_token_id, base.layer_norm_eps,
            base.hidden_dropout_prob, base.type_vocab_size) == (250002, 514, 1, 1e-5, 0.1, 1)
    assert base.max_seq_len == 512
    assert config_for("tiny", vocab_size=1000).vocab_size == 1000
    with pytest.raises(ValueError, match="preset"):
        config_for("huge")


def test_config_from_dict_round_trip_and_unknown_key():
    cfg = config_for("small", vocab_size=777)
    assert XLMRConfig.from_dict(dataclasses.asdict(cfg)) == cfg
    with pytest.raises(ValueError, match="hidden_act"):
        XLMRConfig.from_dict({**dataclasses.asdict(cfg), "hidden_act": "relu"})


# ---------------------------------------------------------------- positions and padding


def test_positions_start_after_padding_idx_and_padding_keeps_it():
    ids = torch.tensor([[0, 57, 99, 2, 1, 1],     # right padding
                        [1, 1, 0, 57, 99, 2]])    # left padding
    assert position_ids_from(ids, pad_token_id=1).tolist() == [[2, 3, 4, 5, 1, 1], [1, 1, 2, 3, 4, 5]]


def test_padding_does_not_change_real_tokens(tiny_config, multilingual_batch):
    ids, mask = multilingual_batch
    model = make_model(tiny_config).eval()
    with torch.no_grad():
        batched = model(ids, mask).logits
        inferred = model(ids).logits  # attention_mask=None: padding inferred from pad_token_id
        for i in range(ids.size(0)):
            n = int(mask[i].sum())
            alone = model(ids[i:i + 1, :n]).logits[0]
            torch.testing.assert_close(batched[i, :n], alone, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(inferred, batched, atol=0, rtol=0)
    assert (mask == 0).any(), "the batch must actually be padded"


def test_fully_padded_row_gives_no_nan(tiny_config, multilingual_batch):
    ids, mask = multilingual_batch
    ids2 = torch.cat([ids, torch.ones_like(ids[:1])])  # a row of nothing but <pad>
    mask2 = torch.cat([mask, torch.zeros_like(mask[:1])])
    model = make_model(tiny_config).eval()
    with torch.no_grad():
        out = model(ids2, mask2).logits
        ref = model(ids, mask).logits
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[:-1], ref, atol=1e-6, rtol=1e-6)
    # and in training, with labels, the loss and every gradient stay finite
    model.train()
    labels = mlm_labels(ids2, mask2)
    loss = model(ids2, mask2, labels=labels).loss
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_rejects_inputs_longer_than_the_positions(tiny_config):
    model = make_model(tiny_config)
    with pytest.raises(ValueError, match="512"):
        model(torch.full((1, 513), 5))


# ---------------------------------------------------------------- head and loss


def test_outputs_without_labels(tiny_config, multilingual_batch):
    ids, mask = multilingual_batch
    out = make_model(tiny_config)(ids, mask)
    assert out.logits.shape == (*ids.shape, tiny_config.vocab_size)
    assert out.loss is None


def test_loss_is_mean_cross_entropy_over_targets(tiny_config, multilingual_batch):
    ids, mask = multilingual_batch
    labels = mlm_labels(ids, mask)
    model = make_model(tiny_config).eval()
    with torch.no_grad():
        out = model(ids, mask, labels=labels)
    targets = labels != -100
    logp = out.logits.log_softmax(-1)[targets]  # (N, V)
    expected = -logp.gather(1, labels[targets][:, None]).mean()
    torch.testing.assert_close(out.loss, expected)


def test_masked_only_head_equals_full_head(tiny_config, multilingual_batch):
    ids, mask = multilingual_batch
    labels = mlm_labels(ids, mask)
    targets = labels != -100
    full = make_model(tiny_config).eval()
    part = make_model(tiny_config, masked_only=True).eval()
    out_full = full(ids, mask, labels=labels)
    out_part = part(ids, mask, labels=labels)
    assert out_part.logits.shape == (int(targets.sum()), tiny_config.vocab_size)
    torch.testing.assert_close(out_part.logits, out_full.logits[targets], atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(out_part.loss, out_full.loss, atol=1e-6, rtol=1e-6)
    out_full.loss.backward()
    out_part.loss.backward()
    for (name, a), b in zip(full.named_parameters(), part.parameters()):
        torch.testing.assert_close(b.grad, a.grad, atol=1e-6, rtol=1e-5, msg=name)
    # the per-call switch overrides the constructor's choice, both ways
    with torch.no_grad():
        assert full(ids, mask, labels=labels, masked_only=True).logits.dim() == 2
        assert part(ids, mask, labels=labels, masked_only=False).logits.dim() == 3
        assert part(ids, mask).logits.dim() == 3  # no labels: every position


def test_decoder_is_tied_to_word_embeddings(tiny_config):
    model = make_model(tiny_config)
    names = [n for n, _ in model.named_parameters()]
    assert not any("decoder" in n for n in names)
    with torch.no_grad():
        model.encoder.embeddings.word.weight[7].fill_(0.5)  # changes the output row of token 7
    h = torch.randn(3, tiny_config.hidden_size)
    logits = model.lm_head(h, model.encoder.embeddings.word.weight)
    x = model.lm_head.ln(F.gelu(model.lm_head.dense(h)))
    torch.testing.assert_close(logits[:, 7], x.sum(-1) * 0.5 + model.lm_head.bias[7])


def test_gradients_reach_every_parameter(tiny_config, multilingual_batch):
    ids, mask = multilingual_batch
    labels = mlm_labels(ids, mask)
    for masked_only in (False, True):
        model = make_model(tiny_config, masked_only=masked_only).train()
        model(ids, mask, labels=labels).loss.backward()
        for name, p in model.named_parameters():
            assert p.grad is not None, name
            assert torch.isfinite(p.grad).all(), name
            assert p.grad.abs().sum() > 0, name


def test_dropout_only_in_training(tiny_config, multilingual_batch):
    ids, mask = multilingual_batch
    model = make_model(tiny_config)
    with torch.no_grad():
        model.train()
        a, b = model(ids, mask).logits, model(ids, mask).logits
        assert not torch.equal(a, b)
        model.eval()
        torch.testing.assert_close(model(ids, mask).logits, model(ids, mask).logits, atol=0, rtol=0)


# ---------------------------------------------------------------- init and size


def test_bert_initialisation():
    cfg = config_for("small", vocab_size=5000)
    model = make_model(cfg)
    emb = model.encoder.embeddings
    assert abs(emb.word.weight[2:].std().item() - 0.02) < 0.001
    assert abs(model.encoder.layers[0].mlp.fc.weight.std().item() - 0.02) < 0.001
    assert emb.word.weight[cfg.pad_token_id].abs().sum() == 0
    assert emb.position.weight[cfg.pad_token_id].abs().sum() == 0
    for name, p in model.named_parameters():
        if name.endswith("bias"):
            assert p.abs().sum() == 0, name
        if ".ln" in name and name.endswith("weight"):
            assert torch.all(p == 1), name


def test_num_params_by_hand(tiny_config):
    c, V, F_, L = tiny_config.hidden_size, tiny_config.vocab_size, tiny_config.intermediate_size, 2
    per_layer = (3 * c * c + 3 * c) + (c * c + c) + (c * F_ + F_) + (F_ * c + c) + 2 * 2 * c
    embeddings = V * c + 514 * c + 1 * c + 2 * c
    head = c * c + c + 2 * c + V  # dense, LayerNorm, bias; the decoder weight is the embedding
    model = make_model(tiny_config)
    assert model.get_num_params() == embeddings + L * per_layer + head
    assert model.get_num_params(non_embedding=True) == 2 * c + L * per_layer + head


def test_unwrap_state_dict_strips_compile_and_ddp_prefixes():
    t = torch.zeros(1)
    sd = {"_orig_mod.a": t, "module.b": t, "module._orig_mod.c": t, "_orig_mod.module.d": t, "e": t}
    assert list(unwrap_state_dict(sd)) == ["a", "b", "c", "d", "e"]


# ---------------------------------------------------------------- compile and autocast


@pytest.mark.parametrize("masked_only", [False, True])
def test_compiles_without_graph_breaks(tiny_config, multilingual_batch, masked_only):
    """fullgraph=True makes any graph break an error; aot_eager also traces the backward."""
    torch._dynamo.reset()
    ids, mask = multilingual_batch
    labels = mlm_labels(ids, mask)
    eager = make_model(tiny_config, masked_only=masked_only).eval()
    model = make_model(tiny_config, masked_only=masked_only).eval()
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    out_c = compiled(ids, mask, labels=labels)
    out_e = eager(ids, mask, labels=labels)
    torch.testing.assert_close(out_c.logits, out_e.logits, atol=1e-5, rtol=1e-5)
    out_c.loss.backward()
    out_e.loss.backward()
    for (name, a), b in zip(eager.named_parameters(), model.parameters()):
        torch.testing.assert_close(b.grad, a.grad, atol=1e-5, rtol=1e-4, msg=name)
    # a compiled model's state dict carries `_orig_mod.`; unwrapped, it loads into a plain model
    plain = XLMRForMaskedLM(tiny_config)
    plain.load_state_dict(unwrap_state_dict(compiled.state_dict()))


@pytest.mark.slow
def test_compiles_with_inductor(tiny_config, multilingual_batch):
    """The real backend: generated C++ kernels give the same logits as eager."""
    torch._dynamo.reset()
    ids, mask = multilingual_batch
    model = make_model(tiny_config).eval()
    compiled = torch.compile(model, backend="inductor", fullgraph=True)
    with torch.no_grad():
        torch.testing.assert_close(compiled(ids, mask).logits, model(ids, mask).logits,
                                   atol=1e-4, rtol=1e-4)


def test_bf16_autocast_trains(tiny_config, multilingual_batch):
    ids, mask = multilingual_batch
    labels = mlm_labels(ids, mask)
    model = make_model(tiny_config, masked_only=True).eval()
    ref = model(ids, mask, labels=labels).loss.item()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(ids, mask, labels=labels)
    assert out.logits.dtype == torch.bfloat16
    assert out.loss.dtype == torch.float32
    assert abs(out.loss.item() - ref) < 0.05 * abs(ref)
    out.loss.backward()
    for name, p in model.named_parameters():
        assert p.grad.dtype == torch.float32 and torch.isfinite(p.grad).all(), name


def test_tiny_model_learns_a_batch(tiny_config, multilingual_batch):
    """End to end sanity: a few AdamW steps on one batch drive the masked-LM loss well down."""
    ids, mask = multilingual_batch
    labels = mlm_labels(ids, mask)
    model = make_model(tiny_config, masked_only=True).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(25):
        loss = model(ids, mask, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0], losses


# ---------------------------------------------------------------- no mask without padding


def test_attention_gets_a_mask_only_when_the_batch_has_padding(tiny_config, multilingual_batch,
                                                              monkeypatch):
    """Packed rows without padding run SDPA with attn_mask=None (its fastest kernels); the result
    equals the masked computation, and padded rows still never see their padding."""
    ids, mask = multilingual_batch
    full = ids[:, :8].clone()  # the first 8 tokens of every sentence: no padding
    assert (full != tiny_config.pad_token_id).all()
    model = make_model(tiny_config).eval()
    masks = []
    sdpa = F.scaled_dot_product_attention

    def spy(*args, attn_mask=None, **kw):
        masks.append(attn_mask)
        return sdpa(*args, attn_mask=attn_mask, **kw)

    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    with torch.no_grad():
        fast = model(full).logits
        assert masks and all(m is None for m in masks)
        masks.clear()
        forced = model(full, padded=True).logits  # an all-True mask through the masked path
        assert masks and all(m is not None and bool(m.all()) for m in masks)
        torch.testing.assert_close(fast, forced, atol=1e-6, rtol=1e-6)
        masks.clear()
        told = model(full, padded=False).logits  # the caller knows: no check, no mask
        assert all(m is None for m in masks)
        torch.testing.assert_close(told, fast, atol=0, rtol=0)
        masks.clear()
        model(ids)  # padded: masked
        assert masks and all(m is not None and not bool(m.all()) for m in masks)
