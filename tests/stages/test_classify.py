"""The classify stage: labels mapped and saved, the head trains with the method, metrics in summary.json,
and a reloaded run (or checkpoint) classifies with the head it was trained with."""
import json

import pytest
import torch

from tunelab.config import load_config
from tunelab.train import train

WORDS = {"good": ["great", "lovely", "fine", "happy", "good"], "bad": ["awful", "sad", "poor", "broken", "bad"]}


@pytest.fixture()
def sentiment_file(tmp_path):
    """A trivially separable two-class set: the label is the word's class."""
    rows = [{"text": f"it was {word}", "label": label} for label, words in WORDS.items() for word in words] * 4
    path = tmp_path / "sentiment.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def _config(write_config, model_dir, data, name, method, steps=2, **train_keys):
    return load_config(write_config(model_dir, data, name, method=method,
                                    train={"stage": "classify", "max_steps": steps, "lr": 5e-2, "save_steps": steps,
                                           **train_keys}))


@pytest.mark.parametrize("method", [{"name": "lora"}, {"name": "full"}, {"name": "freeze", "trainable_layers": 1},
                                    {"name": "bitfit"}])
def test_classifier_trains_saves_and_reloads_with_its_head(method, tiny_model_dir, sentiment_file, write_config):
    from tunelab.runs import load_any

    result = train(_config(write_config, tiny_model_dir, sentiment_file, f"cls-{method['name']}", method))
    summary = result.summary
    assert {"eval_accuracy", "eval_f1", "eval_loss"} <= set(summary)
    assert json.loads((result.run_dir / "model" / "labels.json").read_text()) == ["bad", "good"]
    batch = {"input_ids": torch.tensor([[5, 17, 42, 8]]), "attention_mask": torch.ones(1, 4, dtype=torch.long)}
    outputs = []
    for where in (result.run_dir, result.run_dir / "checkpoint-2"):
        model = load_any(str(where)).model.eval()
        assert model.config.id2label == {0: "bad", 1: "good"}
        with torch.no_grad():
            outputs.append(model(**batch).logits)
    assert outputs[0].shape == (1, 2) and torch.allclose(outputs[0], outputs[1], atol=1e-5)


def test_classifier_learns_a_separable_set(tiny_model_dir, sentiment_file, write_config):
    result = train(_config(write_config, tiny_model_dir, sentiment_file, "cls-learn", {"name": "full"}, steps=30,
                           lr=5e-3, batch_size=8))
    assert result.summary["eval_accuracy"] >= 0.9, result.summary


@pytest.mark.parametrize("name", ["adapter", "moe-lora", "prefix"])
def test_methods_that_cannot_train_a_head_are_rejected_when_the_config_is_read(name, tiny_model_dir, sentiment_file,
                                                                             write_config):
    from tunelab.errors import TunelabError

    with pytest.raises(TunelabError, match=rf"method.name '{name}' with train.stage 'classify'"):
        _config(write_config, tiny_model_dir, sentiment_file, "bad", {"name": name})


def test_macro_f1_matches_the_definition():
    import numpy as np

    from tunelab.stages.classify import macro_f1

    predicted, labels = np.array([0, 0, 1, 1, 2]), np.array([0, 1, 1, 1, 0])
    # class 0: tp 1 fp 1 fn 1 -> 0.5; class 1: tp 2 fp 0 fn 1 -> 0.8; class 2: tp 0 fp 1 fn 0 -> 0
    assert macro_f1(predicted, labels, 3) == pytest.approx((0.5 + 0.8 + 0.0) / 3)


def test_predict_command_writes_labels_and_probabilities(tiny_model_dir, sentiment_file, write_config, tmp_path):
    from tunelab.cli.main import main

    result = train(_config(write_config, tiny_model_dir, sentiment_file, "cls-predict", {"name": "lora"}))
    texts = tmp_path / "texts.jsonl"
    texts.write_text('{"text": "it was great"}\n{"text": "it was awful", "id": 7}\n', encoding="utf-8")
    out = tmp_path / "labels.jsonl"
    assert main(["predict", "--model", str(result.run_dir), "--input", str(texts), "--output", str(out)]) == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["text"] for line in lines] == ["it was great", "it was awful"] and lines[1]["id"] == 7
    for line in lines:
        assert line["label"] in ("bad", "good")
        assert set(line["probabilities"]) == {"bad", "good"}
        assert abs(sum(line["probabilities"].values()) - 1) < 1e-4


def test_predict_refuses_a_chat_run_and_bad_input(tiny_model_dir, chat_file, write_config, tmp_path, capsys):
    from tunelab.cli.main import main

    chat_run = train(load_config(write_config(tiny_model_dir, chat_file, "chat-run"))).run_dir
    texts = tmp_path / "texts.jsonl"
    texts.write_text('{"text": "hello"}\n', encoding="utf-8")
    out = tmp_path / "labels.jsonl"
    assert main(["predict", "--model", str(chat_run), "--input", str(texts), "--output", str(out)]) == 2
    assert "not a classification run" in capsys.readouterr().err and not out.exists()
    texts.write_text('{"text": "hello"}\n{"txt": 1}\n', encoding="utf-8")
    assert main(["predict", "--model", str(chat_run), "--input", str(texts), "--output", str(out)]) == 2
    assert f"{texts}:2: expected an object with a `text` string" in capsys.readouterr().err
