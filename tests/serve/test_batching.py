"""The batching engine on tiny fp32 models: greedy answers decoded in a batch that requests join at staggered
steps equal one-at-a-time `generate`, for every architecture family (sliding windows and soft-capping
included); n answers, seeds, log-probabilities, stop strings, cancellation and timeouts."""
import time

import pytest
import torch

from tunelab.runs import load_any
from tunelab.serve import ChatEngine, GenerationSettings
from tunelab.serve.batching import Batcher
from tunelab.serve.jobs import Job, Lane, RequestTimeout

QUESTIONS = ["What is your name?", "Hi", "Tell me a long story about a cat who sat on a mat all day long.",
             "Why?", "Name three colours of the rainbow, please, and say why each one is there."]


def _engine(model_dir) -> ChatEngine:
    return ChatEngine(load_any(str(model_dir), torch.float32), "cpu")


def _prompts(engine: ChatEngine) -> list[list[int]]:
    prompts = [engine.chat_prompt([{"role": "user", "content": question}]) for question in QUESTIONS]
    assert len({len(prompt) for prompt in prompts}) == len(prompts)  # mixed lengths: padding inside the batch
    return prompts


def _staggered(engine: ChatEngine, prompts: list[list[int]], settings: GenerationSettings, every: int = 3,
               n: int = 1) -> list[list]:
    """Request i arrives after i * `every` decoding steps of the ones before it; returns each one's answers."""
    batcher, lane = Batcher(max_batch=16, own_thread=False), Lane(engine)  # driven by hand on this thread
    jobs = []
    for prompt in prompts:
        jobs.append(Job(lane, prompt, settings, n=n))
        batcher.submit(jobs[-1])
        for _ in range(every):
            batcher.step_once()
    while not all(job.result.done() for job in jobs):
        batcher.step_once()
    return [job.result.result() for job in jobs]


def test_greedy_answers_in_a_staggered_batch_equal_one_at_a_time(tiny_model_dir):
    engine = _engine(tiny_model_dir)
    prompts, settings = _prompts(engine), GenerationSettings(24, 0.0)
    alone = [engine.complete(prompt, settings) for prompt in prompts]
    batched = _staggered(engine, prompts, settings)
    assert [answers[0].text for answers in batched] == [answer.text for answer in alone]
    assert [answers[0].completion_tokens for answers in batched] == [answer.completion_tokens for answer in alone]
    assert [answers[0].finish_reason for answers in batched] == [answer.finish_reason for answer in alone]
    assert len({answer.text for answer in alone}) > 1  # the prompts lead to different answers


def test_batched_logprobs_equal_a_full_forward_of_each_answer(tiny_tokenizer, tmp_path):
    """Small weights (flat attention), so a padding row that were attended to, or a wrong position, would move
    every log-probability: each answer's are recomputed by one unpadded forward over prompt + answer."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tiny_tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, eos_token_id=tiny_tokenizer.eos_token_id)
    LlamaForCausalLM(config).save_pretrained(tmp_path)
    tiny_tokenizer.save_pretrained(tmp_path)
    engine = _engine(tmp_path)
    prompts = _prompts(engine)
    batched = _staggered(engine, prompts, GenerationSettings(16, 0.0, top_logprobs=0), every=2)
    for prompt, (answer,) in zip(prompts, batched):
        tokens = [t for t in answer.token_ids if t not in engine.special_ids]
        assert [entry.token_id for entry in answer.logprobs] == tokens and tokens
        with torch.inference_mode():
            logits = engine.model(torch.tensor([prompt + answer.token_ids])).logits[0].float()
        positions = [len(prompt) - 1 + i for i, t in enumerate(answer.token_ids) if t not in engine.special_ids]
        expected = [logits[p].log_softmax(-1)[t].item() for p, t in zip(positions, tokens)]
        assert [entry.logprob for entry in answer.logprobs] == pytest.approx(expected, abs=1e-4)


def _family_dir(kind: str, tokenizer, folder) -> str:
    import transformers

    torch.manual_seed(0)
    common = dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, initializer_range=0.5,
                  bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    configs = {
        "mistral": lambda: transformers.MistralConfig(**common, sliding_window=4),
        "qwen2": lambda: transformers.Qwen2Config(**common, use_sliding_window=True, sliding_window=4,
                                                  max_window_layers=0),
        "gemma2": lambda: transformers.Gemma2Config(**common, head_dim=8, sliding_window=4,
                                                    attn_logit_softcapping=5.0, final_logit_softcapping=3.0),
        "phi3": lambda: transformers.Phi3Config(**common, pad_token_id=tokenizer.eos_token_id),
        "gpt2": lambda: transformers.GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=4,
                                                initializer_range=0.5, bos_token_id=tokenizer.bos_token_id,
                                                eos_token_id=tokenizer.eos_token_id),
    }
    model = transformers.AutoModelForCausalLM.from_config(configs[kind]())
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.mark.parametrize("kind", ["mistral", "qwen2", "gemma2", "phi3", "gpt2"])
def test_every_family_batches_exactly_sliding_windows_and_softcaps_included(kind, tiny_tokenizer, tmp_path):
    """Prompts longer than the 4-token window: the batch's full-history cache must still attend only inside it."""
    engine = _engine(_family_dir(kind, tiny_tokenizer, tmp_path / kind))
    prompts, settings = _prompts(engine), GenerationSettings(12, 0.0)
    alone = [engine.complete(prompt, settings).text for prompt in prompts]
    assert [answers[0].text for answers in _staggered(engine, prompts, settings, every=2)] == alone


def test_n_answers_share_one_prompt_and_seeds_reproduce_them(tiny_model_dir):
    engine = _engine(tiny_model_dir)
    prompt = _prompts(engine)[:1]
    sampled = GenerationSettings(16, 1.0, seed=7)
    first = [answer.text for answer in _staggered(engine, prompt, sampled, n=3)[0]]
    again = [answer.text for answer in _staggered(engine, prompt, sampled, n=3)[0]]
    other = [answer.text for answer in _staggered(engine, prompt, GenerationSettings(16, 1.0, seed=8), n=3)[0]]
    assert first == again and len(set(first)) == 3 and other != first
    greedy = _staggered(engine, prompt, GenerationSettings(16, 0.0), n=2)[0]
    assert [answer.index for answer in greedy] == [0, 1] and greedy[0].text == greedy[1].text


def test_logprobs_are_the_models_own_and_greedy_picks_the_top_one(tiny_model_dir):
    engine = _engine(tiny_model_dir)
    prompt = _prompts(engine)[0]
    answer = _staggered(engine, [prompt], GenerationSettings(6, 0.0, top_logprobs=3))[0][0]
    assert answer.logprobs and all(len(entry.top) == 3 for entry in answer.logprobs)
    assert all(entry.token_id == entry.top[0][0] and entry.logprob == entry.top[0][1] for entry in answer.logprobs)
    with torch.inference_mode():
        logits = engine.model(torch.tensor([prompt])).logits[0, -1].float()
    expected = logits.log_softmax(-1)[answer.logprobs[0].token_id].item()
    assert answer.logprobs[0].logprob == pytest.approx(expected, abs=1e-4)
    assert _staggered(engine, [prompt], GenerationSettings(6, 0.0))[0][0].logprobs is None


def test_a_stop_string_cuts_the_answer_and_its_logprobs(tiny_model_dir):
    engine = _engine(tiny_model_dir)
    prompt = _prompts(engine)[0]
    whole = engine.complete(prompt, GenerationSettings(24, 0.0)).text
    stop = whole[len(whole) // 2:len(whole) // 2 + 2]
    cut = _staggered(engine, [prompt], GenerationSettings(24, 0.0, top_logprobs=0))[0][0]
    job_answer = None
    batcher, lane = Batcher(), Lane(engine)
    job_answer = batcher.submit(Job(lane, prompt, GenerationSettings(24, 0.0, top_logprobs=0), stops=[stop]))
    answer = job_answer.result(timeout=60)[0]
    batcher.close()
    assert answer.text == whole[:whole.index(stop)] and answer.finish_reason == "stop"
    assert len(answer.logprobs) < len(cut.logprobs)


def test_cancelled_and_expired_requests_leave_the_batch_and_the_rest_goes_on(tiny_model_dir):
    engine = _engine(tiny_model_dir)
    prompts = _prompts(engine)[:3]
    batcher, lane = Batcher(own_thread=False), Lane(engine)
    long = GenerationSettings(400, 0.0)
    going, leaving = Job(lane, prompts[0], GenerationSettings(20, 0.0)), Job(lane, prompts[1], long)
    late = Job(lane, prompts[2], long, deadline=time.monotonic() + 3600)
    for job in (going, leaving, late):
        batcher.submit(job)
    batcher.step_once()
    assert batcher.decoding == 3
    leaving.cancelled.set()
    late.deadline = time.monotonic() - 1
    batcher.step_once()
    assert batcher.decoding == 1 and leaving.result.result() is None
    with pytest.raises(RequestTimeout):
        late.result.result()
    while not going.result.done():
        batcher.step_once()
    assert going.result.result()[0].text == engine.complete(prompts[0], GenerationSettings(20, 0.0)).text


def test_a_full_batch_makes_newcomers_wait(tiny_model_dir):
    engine = _engine(tiny_model_dir)
    batcher, lane = Batcher(max_batch=2, own_thread=False), Lane(engine)
    jobs = [Job(lane, prompt, GenerationSettings(50, 0.0)) for prompt in _prompts(engine)[:3]]
    for job in jobs:
        batcher.submit(job)
    batcher.step_once()
    assert batcher.decoding == 2 and batcher.waiting == 1
    jobs[2].deadline = time.monotonic() - 1   # its time runs out while it waits
    batcher.step_once()
    assert batcher.waiting == 0 and batcher.decoding == 2
    with pytest.raises(RequestTimeout):
        jobs[2].result.result()


def test_a_bf16_model_batches_too(tiny_model_dir):
    """What `--dtype auto` serves on a CPU with native bf16: logits in bf16, chosen in fp32."""
    engine = ChatEngine(load_any(str(tiny_model_dir), torch.bfloat16), "cpu")
    answers = _staggered(engine, _prompts(engine), GenerationSettings(8, 0.0, top_logprobs=1), every=2, n=2)
    for first, second in answers:
        assert first.text == second.text and 1 <= first.completion_tokens <= 8
        assert all(entry.logprob <= 0 for entry in first.logprobs)
