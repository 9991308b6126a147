"""A base model without a chat template: no silent ChatML. With `data.template` the template's tokens are added as
special tokens, the embeddings grow, the new rows train, the run says so, and the fine-tune emits the end-of-turn
token and stops — in tunelab's generator, `tunelab generate`, and as a merged model in plain transformers."""
import json

import pytest
import yaml
from family_models import STANDS, build_model_dir

from tunelab.cli.main import main
from tunelab.config import load_config
from tunelab.errors import TunelabError
from tunelab.runs.loading import load_any
from tunelab.runs.merge import merge_run
from tunelab.serve.engine import ChatEngine, GenerationSettings
from tunelab.train import train

QA = [("What is your name?", "My name is Quill."), ("Who made you?", "Lumen Labs made me.")]
BARE = STANDS["mistral"].__class__(**{**STANDS["mistral"].__dict__, "architecture": "LlamaConfig"})  # <s> </s> only


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    return build_model_dir(BARE, tmp_path_factory.mktemp("bare-llama"), with_template=False)


def write_run(folder, model_dir, method: dict, template: str | None = "chatml", steps: int = 60):
    data = folder / "data.jsonl"
    data.write_text("".join(json.dumps({"instruction": q, "output": a}) + "\n" for q, a in QA * 4), encoding="utf-8")
    config = {"model": {"path": str(model_dir)}, "data": {"path": str(data)}, "method": method,
              "train": {"max_steps": steps, "batch_size": 4, "lr": 3e-2, "precision": "fp32", "report_to": "none",
                        "logging_steps": steps},
              "output": {"dir": str(folder / "run")}}
    if template:
        config["data"]["template"] = template
    (folder / "run.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    return folder / "run.yaml"


@pytest.fixture(scope="module")
def lora_run(base_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("bare-lora")
    return train(load_config(write_run(folder, base_dir, {"name": "lora", "r": 8, "alpha": 16}))).run_dir


def test_without_a_template_or_a_known_family_training_refuses_to_guess(base_dir, tmp_path):
    config = load_config(write_run(tmp_path, base_dir, {"name": "lora"}, template=None))
    with pytest.raises(TunelabError, match="data.template: the tokenizer has no chat template"):
        train(config)
    assert not list((tmp_path / "run").glob("*.safetensors"))


def test_the_added_tokens_are_special_trained_and_recorded(lora_run):
    provenance = json.loads((lora_run / "provenance.json").read_text())["chat_template"]
    assert provenance["source"] == "data.template" and provenance["family"] == "chatml"
    assert provenance["added_tokens"] == ["<|im_start|>", "<|im_end|>"] and len(provenance["new_rows"]) == 2
    assert "trainable_token_indices" in provenance["rows_trained_by"]
    loaded = load_any(str(lora_run))
    tokenizer = loaded.tokenizer
    assert tokenizer.convert_tokens_to_ids(["<|im_start|>", "<|im_end|>"]) == provenance["new_rows"]
    assert tokenizer("<|im_end|>", add_special_tokens=False)["input_ids"] == [provenance["new_rows"][1]]
    rows = loaded.model.get_input_embeddings()
    assert rows.weight.shape[0] == len(tokenizer) if hasattr(rows, "weight") else True


def test_the_fine_tune_emits_im_end_and_stops_in_chat_and_generate(lora_run, tmp_path, monkeypatch, capsys):
    engine = ChatEngine(load_any(str(lora_run)))
    end = engine.tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert end in engine.stop_ids
    for question, answer in QA:
        completion = engine.complete(engine.chat_prompt([{"role": "user", "content": question}]),
                                     GenerationSettings(max_new_tokens=24))
        assert (completion.text.strip(), completion.finish_reason) == (answer, "stop")
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": q}) + "\n" for q, _ in QA), encoding="utf-8")
    assert main(["generate", "--model", str(lora_run), "--input", str(prompts), "--output",
                 str(tmp_path / "out.jsonl"), "--max-new-tokens", "24"]) == 0
    lines = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [line["response"] for line in lines] == [a for _, a in QA]
    typed = iter([QA[0][0], "/reset", QA[1][0], "/exit"])
    monkeypatch.setattr("builtins.input", lambda prompt="": next(typed))
    capsys.readouterr()
    assert main(["chat", "--model", str(lora_run), "--max-new-tokens", "24"]) == 0
    said = [part.split("\n")[0].strip() for part in capsys.readouterr().out.split("assistant> ")[1:]]
    assert said == [a for _, a in QA]  # each answer ends at <|im_end|>, 24 tokens would run far past it


def test_the_merged_model_stops_on_im_end_in_plain_transformers(lora_run, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    merged = merge_run(lora_run, tmp_path / "merged")
    model, tokenizer = AutoModelForCausalLM.from_pretrained(merged), AutoTokenizer.from_pretrained(merged)
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert end in json.loads((merged / "generation_config.json").read_text())["eos_token_id"]
    assert model.get_input_embeddings().weight.shape[0] == len(tokenizer)
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": QA[1][0]}], add_generation_prompt=True,
                                           tokenize=True, return_dict=True, return_tensors="pt")
    new = model.generate(**prompt, do_sample=False, max_new_tokens=24)[0, prompt["input_ids"].shape[1]:].tolist()
    assert new[-1] == end and tokenizer.decode(new, skip_special_tokens=True).strip() == QA[1][1]


def test_full_fine_tuning_trains_the_new_rows_too(base_dir, tmp_path):
    run = train(load_config(write_run(tmp_path, base_dir, {"name": "full"}, steps=30))).run_dir
    provenance = json.loads((run / "provenance.json").read_text())["chat_template"]
    assert "train whole" in provenance["rows_trained_by"]
    engine = ChatEngine(load_any(str(run)))
    completion = engine.complete(engine.chat_prompt([{"role": "user", "content": QA[0][0]}]),
                                 GenerationSettings(max_new_tokens=24))
    assert completion.finish_reason == "stop"


def test_a_method_that_cannot_train_new_rows_says_so_before_training(base_dir, tmp_path):
    config = load_config(write_run(tmp_path, base_dir, {"name": "bitfit"}))
    with pytest.raises(TunelabError, match="method.name 'bitfit' cannot train the embedding rows"):
        train(config)
