"""`tunelab eval` and the `eval:` section on the tiny model: files, numbers equal to their definitions,
base comparison through the switched-off adapter, and clear errors that leave nothing behind."""
import json
import math

import pytest
import torch

from tunelab.cli.main import main
from tunelab.config import load_config
from tunelab.train import train


@pytest.fixture(scope="module")
def lora_run(tiny_model_dir, tmp_path_factory):
    import yaml

    folder = tmp_path_factory.mktemp("eval-run")
    data = folder / "chat.jsonl"
    data.write_text("\n".join(json.dumps({"instruction": f"What is your name? ({i})", "output": "My name is Quill."})
                              for i in range(12)) + "\n", encoding="utf-8")
    config = {"model": {"path": str(tiny_model_dir)}, "data": {"path": str(data)},
              "method": {"name": "lora", "r": 4, "alpha": 8},
              "train": {"max_steps": 3, "batch_size": 4, "lr": 5e-2, "precision": "fp32", "report_to": "none"},
              "output": {"dir": str(folder / "run")}}
    (folder / "run.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    return train(load_config(folder / "run.yaml")).run_dir, data


def _eval(run_dir, data, output, *extra):
    return main(["eval", "--model", str(run_dir), "--data", str(data), "--output", str(output),
                 "--max-new-tokens", "6", "--batch-size", "5", *extra])


def test_eval_writes_metrics_whose_bleu_is_sacrebleus_on_its_own_predictions(lora_run, tmp_path, capsys):
    import sacrebleu

    run_dir, data = lora_run
    assert _eval(run_dir, data, tmp_path / "ev", "--metrics", "bleu,rouge,perplexity,exact_match",
                 "--compare-base") == 0
    record = json.loads((tmp_path / "ev" / "eval.json").read_text())
    lines = [json.loads(line) for line in (tmp_path / "ev" / "predictions.jsonl").read_text().splitlines()]
    assert len(lines) == record["examples"] == 12
    assert {"input", "reference", "prediction", "scores", "base_prediction", "base_scores"} <= set(lines[0])
    bleu = sacrebleu.corpus_bleu([l["prediction"] for l in lines], [[l["reference"] for l in lines]]).score
    assert record["metrics"]["bleu"] == pytest.approx(bleu)
    assert {"rouge1", "rouge2", "rougeL", "perplexity", "exact_match"} <= set(record["metrics"])
    assert set(record["base_metrics"]) == set(record["metrics"])
    assert record["delta"]["perplexity"] != 0  # the adapter changed the model; the base is the adapter switched off
    assert "| metric | base | tuned | delta |" in capsys.readouterr().out


def _reference_perplexity(run_dir, data, dtype) -> tuple[float, int]:
    """exp(mean answer-token loss), one example at a time through the model's own loss, in `dtype`."""
    from tunelab.data.loading import load_examples
    from tunelab.data.tokenize import TokenizeStats, tokenize_conversation
    from tunelab.runs import load_any

    loaded = load_any(str(run_dir), dtype)
    total, count = 0.0, 0
    for example in load_examples(str(data)):
        row = tokenize_conversation(loaded.tokenizer, example, 1024, TokenizeStats())
        ids, labels = torch.tensor([row["input_ids"]]), torch.tensor([row["labels"]])
        with torch.no_grad():
            loss = loaded.model(input_ids=ids, labels=labels).loss.float().item()
        n = int((labels[0, 1:] != -100).sum())
        total, count = total + loss * n, count + n
    return math.exp(total / count), count


@pytest.mark.cpu_precision
@pytest.mark.parametrize("native_bf16", [True, False])
def test_perplexity_is_exp_of_the_mean_answer_token_loss(native_bf16, lora_run, tmp_path, monkeypatch):
    """`--dtype auto` evaluates in fp32 on every CPU, with or without native bf16, so the score is the
    fp32 reference's whichever CPU ran it."""
    from tunelab.models import device

    monkeypatch.setattr(device, "cpu_has_bf16", lambda: native_bf16)
    run_dir, data = lora_run
    assert _eval(run_dir, data, tmp_path / "ppl", "--metrics", "perplexity") == 0
    record = json.loads((tmp_path / "ppl" / "eval.json").read_text())
    expected, count = _reference_perplexity(run_dir, data, torch.float32)
    assert record["dtype"] == "fp32"
    assert record["metrics"]["perplexity"] == pytest.approx(expected, rel=1e-4)
    assert record["perplexity_tokens"] == count


@pytest.mark.cpu_precision
def test_bf16_perplexity_matches_a_bf16_reference(lora_run, tmp_path):
    """Asked for bf16, eval computes in bf16 (natively or emulated). Batched and padded, its rounding is not
    the one-example reference's: the tolerance is one unit of bf16's epsilon (2**-8) on the mean loss."""
    run_dir, data = lora_run
    assert _eval(run_dir, data, tmp_path / "ppl16", "--metrics", "perplexity", "--dtype", "bf16") == 0
    record = json.loads((tmp_path / "ppl16" / "eval.json").read_text())
    expected, _ = _reference_perplexity(run_dir, data, torch.bfloat16)
    assert record["dtype"] == "bf16"
    mean_loss = math.log(expected)
    assert math.log(record["metrics"]["perplexity"]) == pytest.approx(mean_loss, rel=2**-8)


def test_probes_are_scored_by_their_accepted_answers(lora_run, tmp_path):
    run_dir, _ = lora_run
    assert _eval(run_dir, "builtin:probes", tmp_path / "probes", "--metrics", "contains", "--limit", "3") == 0
    lines = [json.loads(line) for line in (tmp_path / "probes" / "predictions.jsonl").read_text().splitlines()]
    assert [line["accepted"] for line in lines] == [["Paris"], ["Shakespeare"], ["Jupiter"]]


@pytest.mark.parametrize("args, message", [
    (["--metrics", "blue"], "--metrics: unknown metric 'blue'"),
    (["--metrics", "accuracy"], "not a classification run"),
    (["--max-new-tokens", "0"], "--max-new-tokens: must be a positive number"),
])
def test_bad_requests_fail_with_one_line_and_write_nothing(args, message, lora_run, tmp_path, capsys):
    run_dir, data = lora_run
    assert _eval(run_dir, data, tmp_path / "out", *args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_plain_text_gets_perplexity_only(lora_run, tmp_path, capsys):
    run_dir, _ = lora_run
    text = tmp_path / "doc.txt"
    text.write_text("The quick brown fox jumps over the lazy dog.\nParis is the capital of France.\n")
    assert _eval(run_dir, text, tmp_path / "out", "--metrics", "bleu") == 2
    assert "plain text has no reference answer for bleu; use --metrics perplexity" in capsys.readouterr().err
    assert _eval(run_dir, text, tmp_path / "out", "--metrics", "perplexity") == 0
    assert json.loads((tmp_path / "out" / "eval.json").read_text())["metrics"]["perplexity"] > 1


def test_the_eval_section_runs_after_training_with_forgetting_probes(tiny_model_dir, chat_file, write_config):
    config = load_config(write_config(tiny_model_dir, chat_file, "with-eval", data={"val_size": 2},
                                      eval={"data": str(chat_file), "metrics": ["rouge", "perplexity"], "limit": 4,
                                            "max_new_tokens": 4, "forgetting": True}))
    result = train(config)
    assert set(result.summary["eval"]["metrics"]) == {"rouge1", "rouge2", "rougeL", "perplexity", "answer_loss"}
    assert "contains" in result.summary["forgetting"]["delta"]
    changes = result.summary["forgetting"]["changes"]
    assert set(changes) == {"kept", "lost", "gained", "never"} and sum(map(len, changes.values())) == 12
    assert (result.run_dir / "eval" / "predictions.jsonl").is_file()
    assert json.loads((result.run_dir / "eval" / "forgetting" / "eval.json").read_text())["examples"] == 12
    samples = json.loads((result.run_dir / "samples.json").read_text())
    assert samples and {"prompt", "reference", "base", "tuned"} == set(samples[0])
    assert "My name is Quill." in samples[0]["reference"]
    report = (result.run_dir / "report.html").read_text(encoding="utf-8")
    assert "Forgetting: general-knowledge probes" in report and 'src="loss.png"' in report
    assert "Forgetting: which probes moved" in report
    assert (result.run_dir / "loss.png").stat().st_size > 0 and (result.run_dir / "lr.png").is_file()


def test_a_bad_eval_section_fails_before_training(tiny_model_dir, chat_file, write_config, tmp_path):
    from tunelab.errors import TunelabError

    with pytest.raises(TunelabError, match="eval.metrics: accuracy need a classification run"):
        train(load_config(write_config(tiny_model_dir, chat_file, "bad-eval",
                                       eval={"data": str(chat_file), "metrics": ["accuracy"]})))
    with pytest.raises(TunelabError, match="missing.jsonl"):
        train(load_config(write_config(tiny_model_dir, chat_file, "bad-eval2", output={"overwrite": True},
                                       eval={"data": str(tmp_path / "missing.jsonl")})))
    with pytest.raises(TunelabError, match="eval: set eval.data"):
        load_config(write_config(tiny_model_dir, chat_file, "bad-eval3", eval={"metrics": ["bleu"]}))


def test_classifier_runs_report_accuracy_and_f1(tiny_model_dir, write_config, tmp_path):
    rows = [{"text": f"it was {w} ({i})", "label": lab} for i in range(6) for lab, w in (("good", "fine"), ("bad", "sad"))]
    data = tmp_path / "sentiment.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    config = load_config(write_config(tiny_model_dir, data, "cls-eval", train={"stage": "classify", "max_steps": 2},
                                      eval={"data": str(data), "metrics": ["accuracy", "f1"]}))
    result = train(config)
    metrics = result.summary["eval"]["metrics"]
    assert set(metrics) == {"accuracy", "f1"} and 0 <= metrics["accuracy"] <= 1
    lines = (result.run_dir / "eval" / "predictions.jsonl").read_text().splitlines()
    assert len(lines) == 12 and "probabilities" in json.loads(lines[0])


def test_compare_base_with_contains_marks_how_firmly_the_base_answered(lora_run, tmp_path):
    """Lines the base answers correctly get base_gap (tunelab.eval.firmness) from the base, not the tuned model."""
    from tunelab.eval.firmness import answer_gap
    from tunelab.runs import load_any
    from tunelab.serve import ChatEngine, GenerationSettings

    run_dir, _ = lora_run
    engine = ChatEngine(load_any(str(run_dir)))
    question = [{"role": "user", "content": "Where is the tower?"}]
    with engine.base_model():
        said = engine.generate([question], GenerationSettings(max_new_tokens=6))[0]
    assert said.split(), said
    data = tmp_path / "probes.jsonl"
    data.write_text(json.dumps({"instruction": "Where is the tower?", "output": "x", "expect": [said.split()[0]]}) + "\n"
                    + json.dumps({"instruction": "Where is the tower?", "output": "x", "expect": ["zzqq-never"]}) + "\n",
                    encoding="utf-8")
    assert _eval(run_dir, data, tmp_path / "ev", "--metrics", "contains", "--compare-base") == 0
    lines = [json.loads(line) for line in (tmp_path / "ev" / "predictions.jsonl").read_text().splitlines()]
    assert lines[0]["base_scores"]["contains"] == 100 and "base_gap" not in lines[1]
    with engine.base_model():
        expected = answer_gap(engine, question, lines[0]["base_prediction"], [said.split()[0]])
    assert lines[0]["base_gap"] == pytest.approx(expected, abs=1e-4)


def test_base_gap_is_left_out_after_a_reasoning_block():
    """The gap is taken over the answer teacher-forced right after the prompt: not what a model that reasoned first saw."""
    from tunelab.eval.runner import _mark_base_gaps

    class Base:
        def answer_gap(self, messages, answer, accepted):
            return 0.5

    chunk = [{"messages": [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "A"}]}] * 3
    lines = [{"base_scores": {"contains": 100}, "base_prediction": "A", "reference": "A"},
             {"base_scores": {"contains": 100}, "base_prediction": "A", "reference": "A", "base_reasoning": "hmm"},
             {"base_scores": {"contains": 0}, "base_prediction": "B", "reference": "A"}]
    _mark_base_gaps(Base(), chunk, lines)
    assert [line.get("base_gap") for line in lines] == [0.5, None, None]
