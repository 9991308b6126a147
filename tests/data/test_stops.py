"""Stop ids from one function: EOS, the model's generation config (int or list), the end-of-turn token the
template renders, and the family table; a generator stops on each of them."""
import json
import shutil

import pytest
from transformers import AutoTokenizer, GenerationConfig

from tunelab.data.stops import END_OF_TURN, config_eos_ids, end_of_turn_id, stop_token_ids
from tunelab.data.templates import TEMPLATES

GEMMA_STYLE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<start_of_turn>' + ('model' if message['role'] == 'assistant' else message['role']) + '\n'"
    " + message['content'] + '<end_of_turn>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)
PHI3_STYLE = (
    "{% for message in messages %}{{ '<|' + message['role'] + '|>\n' + message['content'] + '<|end|>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% else %}{{ eos_token }}{% endif %}"
)
FAMILIES = {
    "gemma": (GEMMA_STYLE, ["<start_of_turn>", "<end_of_turn>"], "<end_of_turn>"),
    "phi3": (PHI3_STYLE, ["<|user|>", "<|assistant|>", "<|end|>"], "<|end|>"),
    "llama3": (TEMPLATES["llama3"], ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"], "<|eot_id|>"),
}


def _family_tokenizer(tiny_tokenizer_dir, family):
    template, specials, _ = FAMILIES[family]
    tokenizer = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    tokenizer.add_special_tokens({"additional_special_tokens": specials})
    tokenizer.chat_template = template
    return tokenizer


@pytest.mark.parametrize("family", list(FAMILIES))
def test_the_end_of_turn_token_each_family_renders_is_a_stop_id(family, tiny_tokenizer_dir):
    tokenizer = _family_tokenizer(tiny_tokenizer_dir, family)
    end = tokenizer.convert_tokens_to_ids(FAMILIES[family][2])
    assert end_of_turn_id(tokenizer) == end
    assert end in stop_token_ids(tokenizer) and tokenizer.eos_token_id in stop_token_ids(tokenizer)
    assert FAMILIES[family][2] in END_OF_TURN


def test_the_generation_configs_eos_ids_are_kept_int_or_list(tiny_tokenizer):
    extra = [5, 7, 9]
    assert set(extra) <= set(stop_token_ids(tiny_tokenizer, GenerationConfig(eos_token_id=extra)))
    assert 11 in stop_token_ids(tiny_tokenizer, GenerationConfig(eos_token_id=11))
    assert config_eos_ids({"eos_token_id": [1, 2]}) == [1, 2] and config_eos_ids(None) == []
    # the template's own end-of-turn (<|im_end|>, which is also EOS here) stays
    assert tiny_tokenizer.convert_tokens_to_ids("<|im_end|>") in stop_token_ids(tiny_tokenizer, GenerationConfig())


def test_a_family_token_the_template_does_not_use_is_not_a_stop(tiny_tokenizer_dir):
    tokenizer = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    tokenizer.add_special_tokens({"additional_special_tokens": ["<end_of_turn>"]})  # in the vocabulary only
    assert tokenizer.convert_tokens_to_ids("<end_of_turn>") not in stop_token_ids(tokenizer)


def _with_eos_ids(tiny_model_dir, model_dir, eos_ids):
    shutil.copytree(tiny_model_dir, model_dir)
    config = json.loads((model_dir / "generation_config.json").read_text())
    config["eos_token_id"] = eos_ids
    (model_dir / "generation_config.json").write_text(json.dumps(config))
    return model_dir


def _chat_cli(model_dir, monkeypatch, capsys) -> str:
    """`tunelab chat`, one question typed in: the answer it streams."""
    from tunelab.cli.main import main

    lines = iter(["What is your name?", "/exit"])
    monkeypatch.setattr("builtins.input", lambda prompt="": next(lines))
    capsys.readouterr()
    assert main(["chat", "--model", str(model_dir), "--max-new-tokens", "12"]) == 0
    return capsys.readouterr().out.split("assistant> ", 1)[1].strip()


def _generate_cli(model_dir, tmp_path) -> str:
    from tunelab.cli.main import main

    prompts, out = tmp_path / "prompts.jsonl", tmp_path / f"{model_dir.name}.jsonl"
    prompts.write_text(json.dumps({"prompt": "What is your name?"}) + "\n")
    assert main(["generate", "--model", str(model_dir), "--input", str(prompts), "--output", str(out),
                 "--max-new-tokens", "12"]) == 0
    return json.loads(out.read_text())["response"].strip()


def _served(model_dir) -> list[tuple[str, str]]:
    """`tunelab serve`'s chat completion, whole and streamed: (text, finish_reason) each."""
    import torch
    from fastapi.testclient import TestClient

    from tunelab.serve.api import create_app
    from tunelab.serve.limits import ServeSettings
    from tunelab.serve.models import ModelSpec, load_registry

    registry = load_registry([ModelSpec("m", str(model_dir))], torch.float32, "cpu")
    body = {"model": "m", "messages": [{"role": "user", "content": "What is your name?"}], "max_tokens": 12,
            "temperature": 0}
    with TestClient(create_app(registry, ServeSettings())) as client:
        choice = client.post("/v1/chat/completions", json=body).json()["choices"][0]
        events = [json.loads(block[len("data: "):]) for block in
                  client.post("/v1/chat/completions", json={**body, "stream": True}).text.split("\n\n")
                  if block.startswith("data: {")]
    streamed = "".join(e["choices"][0]["delta"].get("content") or "" for e in events)
    finish = [e["choices"][0]["finish_reason"] for e in events if e["choices"][0]["finish_reason"]]
    return [(choice["message"]["content"].strip(), choice["finish_reason"]), (streamed.strip(), finish[-1])]


def test_generation_stops_on_each_id_the_model_directory_lists(tiny_model_dir, tmp_path, monkeypatch, capsys):
    """A model directory whose generation_config.json lists extra EOS ids stops on each of them in
    `tunelab generate`, `tunelab chat` and `tunelab serve` (whole and streamed). The ids are the tokens
    greedy decoding emits first, so each one cuts the answer at a known place."""
    from tunelab.runs import load_any
    from tunelab.serve import ChatEngine

    messages = [[{"role": "user", "content": "What is your name?"}]]
    free = ChatEngine(load_any(str(tiny_model_dir)))
    batch = free._encode(messages)
    emitted = free.model.generate(**batch, do_sample=False, max_new_tokens=12, eos_token_id=None,
                                  pad_token_id=free.tokenizer.pad_token_id)[0, batch["input_ids"].shape[1]:].tolist()
    stops = [t for t in dict.fromkeys(emitted) if t not in free.tokenizer.all_special_ids][:2]
    assert len(stops) == 2, emitted
    whole = free.tokenizer.decode(emitted, skip_special_tokens=True).strip()
    for stop in stops:
        model_dir = _with_eos_ids(tiny_model_dir, tmp_path / f"stop-{stop}", [free.tokenizer.eos_token_id, stop])
        # the answer up to and with the stop token (a real end-of-turn token is special, so text drops it)
        upto = free.tokenizer.decode(emitted[: emitted.index(stop) + 1], skip_special_tokens=True).strip()
        assert upto != whole  # it stops early
        assert _generate_cli(model_dir, tmp_path) == upto
        assert _chat_cli(model_dir, monkeypatch, capsys) == upto
        assert _served(model_dir) == [(upto, "stop"), (upto, "stop")]
