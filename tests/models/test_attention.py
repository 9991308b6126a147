"""Packed attention: packed logits equal per-example logits, and nothing custom is ever saved."""
import json

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

from tunelab.models.attention import PACKED, packed_attention, sequence_bounds


@pytest.fixture(scope="module")
def llama():
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512)
    return LlamaForCausalLM(config).eval()


def _packed(lengths, vocab=300):
    seqs = [torch.randint(0, vocab, (n,)) for n in lengths]
    ids = torch.cat(seqs)[None]
    positions = torch.cat([torch.arange(n) for n in lengths])[None]
    return seqs, ids, positions


def test_sequence_bounds_split_where_positions_restart():
    positions = torch.tensor([[0, 1, 2, 0, 1, 0, 1, 2, 3]])
    assert sequence_bounds(positions) == [[(0, 3), (3, 5), (5, 9)]]


def test_packed_logits_equal_per_example_logits(llama):
    torch.manual_seed(1)
    seqs, ids, positions = _packed([5, 17, 1, 9, 30])
    expected = torch.cat([llama(input_ids=s[None], use_cache=False).logits[0] for s in seqs])
    with packed_attention(llama):
        got = llama(input_ids=ids, position_ids=positions, use_cache=False).logits[0]
    assert (got - expected).abs().max().item() < 1e-4


def test_later_sequences_cannot_see_earlier_ones(llama):
    """Changing the first packed sequence leaves the second one's logits untouched."""
    torch.manual_seed(2)
    _, ids, positions = _packed([12, 10])
    other = ids.clone()
    other[0, :12] = torch.randint(0, 300, (12,))
    with packed_attention(llama):
        a = llama(input_ids=ids, position_ids=positions, use_cache=False).logits[0, 12:]
        b = llama(input_ids=other, position_ids=positions, use_cache=False).logits[0, 12:]
    assert torch.equal(a, b)


def test_stock_path_leaks_across_packed_sequences(llama):
    """The trap this module exists for: transformers' default cache path ignores the packing."""
    torch.manual_seed(3)
    seqs, ids, positions = _packed([12, 10])
    expected = llama(input_ids=seqs[1][None], use_cache=False).logits[0]
    leaked = llama(input_ids=ids, position_ids=positions).logits[0, 12:]
    assert (leaked - expected).abs().max().item() > 1e-3


def test_implementation_is_restored_and_never_saved(llama, tmp_path):
    before = llama.config._attn_implementation
    with packed_attention(llama):
        assert llama.config._attn_implementation == PACKED
        llama.save_pretrained(tmp_path)
    assert llama.config._attn_implementation == before
    saved = json.loads((tmp_path / "config.json").read_text())
    assert PACKED not in json.dumps(saved)
    assert AutoModelForCausalLM.from_pretrained(tmp_path).config._attn_implementation != PACKED


def test_padded_batches_fall_back_to_stock_sdpa(llama):
    torch.manual_seed(4)
    ids = torch.randint(0, 300, (2, 8))
    mask = torch.tensor([[1] * 8, [0] * 3 + [1] * 5])
    expected = llama(input_ids=ids, attention_mask=mask).logits
    with packed_attention(llama):
        got = llama(input_ids=ids, attention_mask=mask).logits
    assert (got - expected).abs().max().item() < 1e-5


def test_gpt2_family_packs_too():
    """Learned absolute positions and Conv1D projections: packed logits still equal per-example ones."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(5)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=300, n_embd=32, n_layer=2, n_head=4, bos_token_id=0,
                                       eos_token_id=0)).eval()
    seqs, ids, positions = _packed([6, 11, 3])
    expected = torch.cat([model(input_ids=s[None], use_cache=False).logits[0] for s in seqs])
    with packed_attention(model):
        got = model(input_ids=ids, position_ids=positions, use_cache=False).logits[0]
    assert (got - expected).abs().max().item() < 1e-4


def test_packed_mode_refuses_to_guess_without_positions(llama):
    from tunelab.errors import TunelabError
    from tunelab.models.attention import packed_sdpa_attention

    q = torch.randn(1, 4, 6, 16)
    with pytest.raises(TunelabError, match="train.packing"):
        packed_sdpa_attention(llama.model.layers[0].self_attn, q, q, q, None)


# Tiny random models of each architecture packing accepts; windows of 4 tokens are smaller than the examples.
FAMILIES = {
    "llama": ("LlamaConfig", {}),
    "mistral": ("MistralConfig", {"sliding_window": 4}),
    "qwen2": ("Qwen2Config", {"sliding_window": 4, "use_sliding_window": True, "max_window_layers": 0}),
    "gemma2": ("Gemma2Config", {"sliding_window": 4, "attn_logit_softcapping": 2.0, "final_logit_softcapping": 30.0,
                                "head_dim": 16, "query_pre_attn_scalar": 16}),
    "phi3": ("Phi3Config", {"sliding_window": 4, "pad_token_id": 0}),
    "gpt2": ("GPT2Config", {"n_embd": 64, "n_layer": 2, "n_head": 4, "n_positions": 512}),
}
WINDOWED = {"mistral", "qwen2", "gemma2", "phi3"}


def _family_model(family: str):
    import transformers

    class_name, extra = FAMILIES[family]
    sizes = {} if family == "gpt2" else {
        "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "max_position_embeddings": 512}
    config = getattr(transformers, class_name)(vocab_size=300, **sizes, **extra)
    torch.manual_seed(0)
    # Gemma2 runs eager only in transformers (SDPA has no soft-cap): its own reference path is eager.
    implementation = "eager" if family == "gemma2" else "sdpa"
    return AutoModelForCausalLM.from_config(config, attn_implementation=implementation).eval()


def _packed_vs_own(model, lengths):
    torch.manual_seed(1)
    seqs, ids, positions = _packed(lengths)
    with torch.no_grad():
        expected = torch.cat([model(input_ids=s[None], use_cache=False).logits[0] for s in seqs])
        with packed_attention(model):
            got = model(input_ids=ids, position_ids=positions, use_cache=False).logits[0]
    return got, expected


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_packed_logits_equal_the_models_own_unpacked_logits(family, monkeypatch):
    """Each architecture's packed logits are its own per-example logits (fp32, within 1e-5 of the largest
    logit): sliding windows and Gemma2's soft-capped attention included. For the windowed ones, dropping the
    window (what packing did before) is visibly wrong, so the test can tell."""
    from tunelab.models import attention

    model = _family_model(family)
    got, expected = _packed_vs_own(model, [5, 17, 1, 9, 30])
    tolerance = 1e-5 * max(1.0, expected.abs().max().item())
    assert (got - expected).abs().max().item() <= tolerance
    if family in WINDOWED:
        monkeypatch.setattr(attention, "_window_mask", lambda length, window, device: None)
        windowless, _ = _packed_vs_own(model, [5, 17, 1, 9, 30])
        assert (windowless - expected).abs().max().item() > 100 * tolerance


@pytest.mark.parametrize("family", ["gemma2", "mistral"])
def test_padded_batches_under_packed_attention_keep_window_and_soft_cap(family):
    """An evaluation batch with padding (attention_mask given) inside a packed run goes through the stock
    mask, soft-cap included: the model's own logits on the real tokens."""
    model = _family_model(family)
    torch.manual_seed(4)
    ids = torch.randint(0, 300, (2, 12))
    mask = torch.ones(2, 12, dtype=torch.long)
    mask[1, 7:] = 0
    with torch.no_grad():
        expected = model(input_ids=ids, attention_mask=mask, use_cache=False).logits
        with packed_attention(model):
            got = model(input_ids=ids, attention_mask=mask, use_cache=False).logits
    real = mask.bool()
    assert (got[real] - expected[real]).abs().max().item() <= 1e-5 * max(1.0, expected.abs().max().item())


def test_soft_capped_attention_of_the_last_queries_sees_every_earlier_key():
    """With fewer queries than keys (a cached step), the causal mask lines the queries up with the last keys."""
    from tunelab.models.attention import _attend

    torch.manual_seed(5)
    query, key, value = torch.randn(1, 2, 2, 8), torch.randn(1, 2, 5, 8), torch.randn(1, 2, 5, 8)
    got = _attend(query, key, value, None, None, 3.0, 0.0)
    scores = torch.tanh(query @ key.transpose(-1, -2) * 8**-0.5 / 3.0) * 3.0
    scores[..., 0, 4] = torch.finfo(scores.dtype).min  # the first of the two queries is key 3: key 4 is its future
    expected = torch.softmax(scores, dim=-1) @ value
    assert torch.allclose(got, expected, atol=1e-6)


def test_length_groups_keep_every_span_and_pad_at_most_the_slack():
    from tunelab.models.attention import length_groups

    spans, start = [], 0
    for n in [30, 29, 3, 28, 4, 60, 1, 31]:
        spans.append((start, start + n))
        start += n
    groups = length_groups(spans, slack=0.25)
    assert sorted(s for group in groups for s in group) == spans
    for group in groups:
        lengths = [e - s for s, e in group]
        assert lengths[0] == max(lengths)
        assert lengths[0] * len(lengths) <= 1.25 * sum(lengths)
    assert [len(g) for g in groups] == [1, 4, 2, 1]  # 60 | 31 30 29 28 | 4 3 | 1


def _per_sequence_attention(query, key, value, spans):
    import torch.nn.functional as F

    return torch.cat([F.scaled_dot_product_attention(query[:, :, s:e], key[:, :, s:e], value[:, :, s:e],
                                                     is_causal=True, enable_gqa=True) for s, e in spans], dim=2)


def test_grouped_attention_equals_one_call_per_sequence_with_gradients():
    """Similar lengths share one padded SDPA call: outputs and the gradients of q, k and v equal one causal
    call per sequence (fp32, to float rounding) — the padding neither leaks forward nor backward."""
    from tunelab.models.attention import _grouped_causal, length_groups

    torch.manual_seed(6)
    lengths = [30, 29, 3, 28, 4, 60, 1, 31]
    spans, start = [], 0
    for n in lengths:
        spans.append((start, start + n))
        start += n
    assert any(len(g) > 1 for g in length_groups(spans))
    leaves = [torch.randn(1, h, start, 16, requires_grad=True) for h in (4, 2, 2)]
    grad_out = torch.randn(1, 4, start, 16)
    got = _grouped_causal(*leaves, spans, None, 0.0)  # [1, T, H, D]
    got.backward(grad_out.transpose(1, 2))
    got_grads = [t.grad.clone() for t in leaves]
    for t in leaves:
        t.grad = None
    expected = _per_sequence_attention(*leaves, spans)
    expected.backward(grad_out)
    assert (got - expected.transpose(1, 2)).abs().max().item() < 1e-5
    for g, e in zip(got_grads, (t.grad for t in leaves)):
        assert (g - e).abs().max().item() < 1e-5


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_packed_logits_of_similar_lengths_equal_the_models_own(family):
    """The grouped path inside a real model: rows of similar lengths (one padded call per group)."""
    model = _family_model(family)
    got, expected = _packed_vs_own(model, [20, 18, 19, 3, 4, 40, 17])
    assert (got - expected).abs().max().item() <= 1e-5 * max(1.0, expected.abs().max().item())


def test_short_bf16_attention_on_cpu_computes_in_fp32_under_autocast(monkeypatch):
    """bf16 autocast on CPU where the blocked path does not serve (dropout, long sequences): sequences shorter
    than CPU_FP32_BELOW attend in fp32 (faster there, and exact to fp32 before the one rounding to bf16);
    longer ones keep the autocast dtype."""
    import torch.nn.functional as F

    from tunelab.models import blocked_attention
    from tunelab.models.attention import CPU_FP32_BELOW, _attend, _short_on_cpu

    monkeypatch.setattr(blocked_attention, "usable", lambda *args: False)

    torch.manual_seed(7)
    q, k, v = torch.randn(1, 4, 40, 16), torch.randn(1, 2, 40, 16), torch.randn(1, 2, 40, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert _short_on_cpu(q) and not _short_on_cpu(torch.randn(1, 4, CPU_FP32_BELOW, 16))
        got = _attend(q, k, v, None, None, None, 0.0)
    assert got.dtype == torch.bfloat16
    expected = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True).to(torch.bfloat16)
    assert torch.equal(got, expected)
    assert not _short_on_cpu(q)  # fp32 without autocast: nothing to change
    assert _short_on_cpu(q.bfloat16())


def test_bf16_causal_attention_on_cpu_goes_through_the_blocked_path(monkeypatch):
    """Under bf16 autocast on CPU, a causal call without dropout is served by blocked_attention; with
    dropout, or in fp32, it is not."""
    from tunelab.models import attention, blocked_attention

    calls = []
    real = blocked_attention.causal_attention
    monkeypatch.setattr(blocked_attention, "causal_attention", lambda *a: calls.append(a) or real(*a))
    q, k, v = torch.randn(1, 4, 40, 16), torch.randn(1, 2, 40, 16), torch.randn(1, 2, 40, 16)
    attention._attend(q, k, v, None, None, None, 0.0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = attention._attend(q, k, v, None, None, None, 0.0)
        attention._attend(q, k, v, None, None, None, 0.5)
    assert len(calls) == 1 and got.dtype == torch.bfloat16


@pytest.mark.parametrize("family", ["llama", "gpt2"])  # grouped-query and multi-head
def test_packed_bf16_logits_are_as_close_to_fp32_as_the_models_own_bf16_logits(family):
    """Under bf16 autocast on CPU, packed rows go through the blocked attention: their logits differ from the
    model's own fp32 logits by no more than the model's own unpacked bf16 run does (x1.5 and a bf16 eps)."""
    from tunelab.models import blocked_attention

    model = _family_model(family)
    torch.manual_seed(1)
    lengths = [5, 17, 1, 9, 30, 12]
    seqs, ids, positions = _packed(lengths)
    calls = []
    real = blocked_attention.causal_attention
    with torch.no_grad():
        exact = torch.cat([model(input_ids=s[None], use_cache=False).logits[0] for s in seqs])
        with torch.autocast("cpu", dtype=torch.bfloat16):
            own = torch.cat([model(input_ids=s[None], use_cache=False).logits[0] for s in seqs])
            with packed_attention(model):
                blocked_attention.causal_attention = lambda *a: calls.append(a) or real(*a)
                try:
                    got = model(input_ids=ids, position_ids=positions, use_cache=False).logits[0]
                finally:
                    blocked_attention.causal_attention = real
    assert calls  # the blocked path served it
    own_error = ((own.float() - exact).norm() / exact.norm()).item()
    error = ((got.float() - exact).norm() / exact.norm()).item()
    assert error <= 1.5 * own_error + 2.0 ** -8
