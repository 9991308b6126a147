"""Row-by-row choice of the next token: OpenAI's penalties and biases, nucleus filtering as transformers does it,
and seeded sampling."""
import torch

from tunelab.serve.engine import GenerationSettings
from tunelab.serve.sampling import generator_for, next_tokens, penalize, sample


def test_penalties_and_biases_follow_openais_formula():
    logits = torch.zeros(1, 8)
    settings = GenerationSettings(presence_penalty=1.0, frequency_penalty=0.5, logit_bias={7: 100.0, 1: -3.0})
    penalize(logits, settings, [3, 3, 5])
    assert logits.tolist() == [[0.0, -3.0, 0.0, -2.0, 0.0, -1.5, 0.0, 100.0]]


def test_an_adjusted_row_changes_the_choice_but_not_the_reported_logprob():
    logits = torch.tensor([[0.0, 5.0, 1.0], [0.0, 5.0, 1.0]])
    settings = [GenerationSettings(top_logprobs=0)] * 2
    ban = lambda row: row.__setitem__((0, 1), float("-inf"))  # noqa: E731
    tokens, logprobs = next_tokens(logits, settings, [None, None], [ban, None])
    assert tokens == [2, 1]
    assert logprobs[0].logprob == torch.log_softmax(logits[0], -1)[2].item()


def test_top_p_keeps_the_smallest_set_reaching_p_as_transformers_does():
    from transformers.generation.logits_process import TopPLogitsWarper

    logits = torch.tensor([2.0, 1.0, 0.5, -1.0, -3.0])
    settings = GenerationSettings(temperature=1.0, top_p=0.7, seed=0)
    kept = TopPLogitsWarper(0.7)(None, logits[None].clone())[0] > float("-inf")
    drawn = {sample(logits, settings, generator_for(settings, i)) for i in range(200)}
    assert drawn == set(torch.nonzero(kept).flatten().tolist())


def test_a_seed_draws_the_same_tokens_and_greedy_needs_no_generator():
    settings = GenerationSettings(temperature=1.0, seed=42)
    logits = torch.randn(50)
    first, again = (sample(logits, settings, generator_for(settings)) for _ in range(2))
    assert first == again and generator_for(GenerationSettings()) is None
    generator = generator_for(settings)
    draws = [sample(logits, settings, generator) for _ in range(20)]
    assert len(set(draws)) > 1
