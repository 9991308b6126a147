"""Per family, end to end on a tiny stand-in (tests/family_models.py): train on a few conversations with the
family's published template, then the fine-tune answers and stops on its end-of-turn token in tunelab's
generator, and the merged model's generation_config.json stops plain transformers `generate` too."""
import json

import pytest
import torch
from family_models import QA, STANDS, build_model_dir, train_stand

from tunelab.runs.loading import load_any
from tunelab.runs.merge import merge_run
from tunelab.serve.engine import ChatEngine

def answers_and_stops(engine: ChatEngine) -> list[tuple[str, str, int]]:
    """(answer, finish reason, last generated id) for each training question, greedy."""
    results = []
    for question, _ in QA:
        prompt = engine.chat_prompt([{"role": "user", "content": question}])
        with torch.inference_mode():
            out = engine.model.generate(torch.tensor([prompt]), do_sample=False, max_new_tokens=24,
                                        eos_token_id=engine.stop_ids, pad_token_id=engine.tokenizer.pad_token_id)
        new = out[0, len(prompt):].tolist()
        finish = "stop" if new and new[-1] in engine.stop_ids else "length"
        results.append((answer_text(engine.tokenizer.decode(new, skip_special_tokens=True)), finish, new[-1]))
    return results


def answer_text(text: str) -> str:
    """The answer after any (empty) think block: Qwen3's and DeepSeek-R1's templates have the model close one
    before answering."""
    return text.split("</think>")[-1].strip()


@pytest.mark.parametrize("name", sorted(STANDS))
def test_each_family_learns_to_answer_and_stop_and_its_merge_stops_in_transformers(name, tmp_path):
    stand = STANDS[name]
    model_dir = build_model_dir(stand, tmp_path / "model")
    run = train_stand(tmp_path, model_dir, {"name": "lora", "r": 8, "alpha": 16})
    engine = ChatEngine(load_any(str(run)))
    end = engine.tokenizer.convert_tokens_to_ids(stand.end_of_turn)
    results = answers_and_stops(engine)
    assert [(answer, finish) for answer, finish, _ in results] == [(a, "stop") for _, a in QA], results
    # it stopped on what training taught to end a (last) answer: the template's end-of-turn token
    assert results[0][2] == engine.tokenizer.convert_tokens_to_ids(stand.last_stop)

    merged = merge_run(run, tmp_path / "merged")
    eos = json.loads((merged / "generation_config.json").read_text())["eos_token_id"]
    eos = [eos] if isinstance(eos, int) else eos
    own = [engine.tokenizer.convert_tokens_to_ids(token) for token in stand.generation_eos]
    assert end in eos and set(own) <= set(eos)  # the end-of-turn, and the base's own list kept

    from transformers import AutoModelForCausalLM, AutoTokenizer

    plain, tokenizer = AutoModelForCausalLM.from_pretrained(merged), AutoTokenizer.from_pretrained(merged)
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": QA[0][0]}], add_generation_prompt=True,
                                           tokenize=True, return_dict=True, return_tensors="pt")
    out = plain.generate(**prompt, do_sample=False, max_new_tokens=24)  # generation_config.json decides the stop
    new = out[0, prompt["input_ids"].shape[1]:].tolist()
    assert new[-1] in eos and answer_text(tokenizer.decode(new, skip_special_tokens=True)) == QA[0][1]
