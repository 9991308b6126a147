"""How firmly the base answers: the smallest top-1/top-2 gap along its own answer up to the keyword, from one
teacher-forced pass, equal to what step-by-step greedy decoding sees (tiny random model)."""
import torch

from tunelab.eval.firmness import answer_gap, keyword_tokens
from tunelab.runs import load_any
from tunelab.serve import ChatEngine, GenerationSettings

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def _engine(tiny_model_dir):
    return ChatEngine(load_any(str(tiny_model_dir)))


def _stepwise_gaps(engine, messages, ids) -> list[float]:
    """The gap before each answer token, one forward per step as greedy decoding runs."""
    prompt, gaps = engine.chat_prompt(messages), []
    with torch.no_grad():
        for end in range(len(ids)):
            logits = engine.model(input_ids=torch.tensor([prompt + ids[:end]])).logits[0, -1].float()
            top = torch.softmax(logits, -1).topk(2).values
            gaps.append((top[0] - top[1]).item())
    return gaps


def test_keyword_tokens_stop_where_the_accepted_word_appears(tiny_tokenizer):
    answer = "the city you want is paris and nothing else"
    ids = keyword_tokens(tiny_tokenizer, answer, ["Paris"])
    text = tiny_tokenizer.decode(ids, skip_special_tokens=True).lower()
    assert "paris" in text and "paris" not in tiny_tokenizer.decode(ids[:-1], skip_special_tokens=True).lower()
    assert keyword_tokens(tiny_tokenizer, answer, ["Berlin"]) == tiny_tokenizer(answer, add_special_tokens=False)[
        "input_ids"]


def test_gap_is_the_smallest_one_greedy_decoding_saw_up_to_the_keyword(tiny_model_dir):
    engine = _engine(tiny_model_dir)
    answer = engine.generate([QUESTION], GenerationSettings(max_new_tokens=8, temperature=0.0))[0]
    words = answer.split()
    assert len(words) >= 2, answer
    keyword = words[1]
    ids = keyword_tokens(engine.tokenizer, answer, [keyword])
    gaps = _stepwise_gaps(engine, QUESTION, ids)
    gap = answer_gap(engine, QUESTION, answer, [keyword])
    assert abs(gap - min(gaps)) < 1e-4 and 0.0 <= gap <= 1.0
    # up to the keyword only: a longer answer's later positions do not count
    assert len(ids) < len(engine.tokenizer(answer, add_special_tokens=False)["input_ids"]) or keyword == words[-1]


def test_an_empty_answer_has_no_gap(tiny_model_dir):
    assert answer_gap(_engine(tiny_model_dir), QUESTION, "", ["Paris"]) is None
