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
