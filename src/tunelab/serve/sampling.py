"""The next token of each row of a decoding batch, under that row's own settings: greedy or sampled
(temperature, top-p) with the row's own random generator, and the log-probabilities it asked for.

transformers' logits processors take one setting for a whole batch; the batching engine mixes greedy and
sampled requests, each with its own seed, so the choice is made row by row here (a few vector operations
per row; the forward pass dominates a step).
"""
from __future__ import annotations

import random
from typing import Callable

import torch

from tunelab.serve.engine import GenerationSettings, TokenLogprob

MAX_TOP_LOGPROBS = 20   # as OpenAI's API


def generator_for(settings: GenerationSettings, index: int = 0) -> torch.Generator | None:
    """The random source of one answer: seeded from the request's seed (answer `index` of n gets seed + index),
    else from the system's entropy. Greedy answers need none."""
    if settings.temperature <= 0:
        return None
    seed = settings.seed + index if settings.seed is not None else random.SystemRandom().getrandbits(63)
    return torch.Generator().manual_seed(seed % 2**63)


def next_tokens(logits: torch.Tensor, settings: list[GenerationSettings], generators: list[torch.Generator | None],
                adjust: list[Callable[[torch.Tensor], None] | None] | None = None,
                ) -> tuple[list[int], list[TokenLogprob | None]]:
    """`logits`: [rows, vocab] at the last position. Returns each row's token and, where its settings ask,
    the token's log-probability with the top alternatives. `adjust`: per row, None or a function that changes the
    logits in place before the choice (biases, penalties, a grammar's mask); log-probabilities stay the model's."""
    logits = logits.float().cpu()   # chosen on the CPU: row generators, grammar masks and penalties live there
    choosable = logits
    if adjust and any(adjust):
        choosable = logits.clone()
        for row, change in enumerate(adjust):
            if change is not None:
                change(choosable[row:row + 1])
    greedy = choosable.argmax(-1).tolist()
    tokens, logprobs = [], []
    for row, (setting, generator) in enumerate(zip(settings, generators)):
        token = sample(choosable[row], setting, generator) if setting.temperature > 0 else greedy[row]
        tokens.append(token)
        logprobs.append(token_logprob(logits[row], token, setting.top_logprobs)
                        if setting.top_logprobs is not None else None)
    return tokens, logprobs


def sample(logits: torch.Tensor, settings: GenerationSettings, generator: torch.Generator | None) -> int:
    """Temperature, then nucleus (top-p) filtering as transformers' TopPLogitsWarper does it (the smallest set of
    tokens whose probability reaches top_p, at least one), then one draw."""
    scores = logits / settings.temperature
    if settings.top_p < 1.0:
        ordered, order = torch.sort(scores, descending=False)
        cumulative = ordered.softmax(-1).cumsum(-1)
        remove = cumulative <= (1 - settings.top_p)
        remove[-1] = False
        scores = scores.scatter(0, order[remove], float("-inf"))
    return int(torch.multinomial(scores.softmax(-1), 1, generator=generator))


def token_logprob(logits: torch.Tensor, token: int, top: int) -> TokenLogprob:
    logprobs = logits.log_softmax(-1)
    alternatives = []
    if top > 0:
        values, ids = logprobs.topk(min(top, MAX_TOP_LOGPROBS))
        alternatives = list(zip(ids.tolist(), values.tolist()))
    return TokenLogprob(token, float(logprobs[token]), alternatives)


def penalize(logits: torch.Tensor, settings: GenerationSettings, answer: list[int]) -> None:
    """OpenAI's logit_bias, presence and frequency penalties, in place on one row's [1, vocab] logits: each token
    already in the answer loses presence_penalty once and frequency_penalty per time it appeared."""
    if settings.logit_bias:
        ids = torch.tensor(list(settings.logit_bias), device=logits.device)
        logits[0, ids] += torch.tensor(list(settings.logit_bias.values()), dtype=logits.dtype, device=logits.device)
    if answer and (settings.presence_penalty or settings.frequency_penalty):
        ids, counts = torch.tensor(answer, device=logits.device).unique(return_counts=True)
        logits[0, ids] -= counts.to(logits.dtype) * settings.frequency_penalty + settings.presence_penalty


def adjusts(settings: GenerationSettings) -> bool:
    return bool(settings.logit_bias or settings.presence_penalty or settings.frequency_penalty)
