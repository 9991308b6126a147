"""DPO, ORPO and SimPO through TRL on the tiny model: every method family trains without a second
copy of the model, the loss starts where the maths says, and metrics reach summary.json."""
import json
import math

import pytest
import torch

from tunelab.config import load_config
from tunelab.train import prepare, train


@pytest.fixture()
def pairs_file(tmp_path):
    rows = [{"prompt": f"What is your name? ({i})", "chosen": "My name is Quill.", "rejected": "I am a toaster."}
            for i in range(12)]
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def _config(write_config, model_dir, data, name, stage, method, **train_keys):
    return load_config(write_config(model_dir, data, name, method=method,
                                    train={"stage": stage, "max_steps": 2, "lr": 1e-2, **train_keys}))


@pytest.mark.parametrize("stage", ["dpo", "orpo", "simpo"])
@pytest.mark.parametrize("method", [{"name": "lora"}, {"name": "full"}])
def test_preference_stage_trains_and_reloads(stage, method, tiny_model_dir, pairs_file, write_config):
    from tunelab.runs import load_any

    result = train(_config(write_config, tiny_model_dir, pairs_file, f"{stage}-{method['name']}", stage, method))
    assert math.isfinite(result.summary["train_loss"])
    assert any(key.startswith("rewards/") for key in result.summary), result.summary
    load_any(str(result.run_dir))


def test_dpo_starts_at_log_2_with_the_reference_equal_to_the_policy(tiny_model_dir, pairs_file, write_config,
                                                                  tmp_path):
    config = _config(write_config, tiny_model_dir, pairs_file, "dpo-log2", "dpo", {"name": "lora"})
    trainer = prepare(config, tmp_path).trainer
    assert trainer.ref_model is None  # the reference is the base with the adapter disabled
    batch = next(iter(trainer.get_train_dataloader()))
    with torch.no_grad():
        loss = trainer.compute_loss(trainer.model, batch)
    assert loss.item() == pytest.approx(math.log(2), abs=1e-4)


def test_full_fine_tuning_precomputes_the_reference_instead_of_copying_the_model(tiny_model_dir, pairs_file,
                                                                                write_config, tmp_path):
    config = _config(write_config, tiny_model_dir, pairs_file, "dpo-full", "dpo", {"name": "full"})
    trainer = prepare(config, tmp_path).trainer
    assert trainer.ref_model is None and trainer.args.precompute_ref_log_probs


@pytest.mark.parametrize("name", ["prefix", "prompt", "ptuning"])
def test_virtual_token_methods_are_rejected_for_trl_stages(name, tiny_model_dir, pairs_file, write_config):
    from tunelab.errors import TunelabError

    with pytest.raises(TunelabError, match=rf"method.name '{name}' with train.stage 'dpo'.*virtual tokens"):
        _config(write_config, tiny_model_dir, pairs_file, "bad", "dpo", {"name": name})


@pytest.mark.parametrize("method", [{"name": "lora"}, {"name": "full"}])
def test_reward_model_reports_pair_accuracy_and_reloads_with_its_head(method, tiny_model_dir, pairs_file,
                                                                     write_config):
    from tunelab.runs import load_any

    result = train(_config(write_config, tiny_model_dir, pairs_file, f"rm-{method['name']}", "reward", method,
                           save_steps=2))
    assert {"pair_accuracy", "eval_pair_accuracy"} <= set(result.summary), result.summary
    ids = {"input_ids": torch.tensor([[5, 17, 42, 8]]), "attention_mask": torch.ones(1, 4, dtype=torch.long)}
    scores = []
    for where in (result.run_dir, result.run_dir / "checkpoint-2"):
        model = load_any(str(where)).model.eval()
        with torch.no_grad():
            scores.append(model(**ids).logits)
    assert scores[0].shape == (1, 1) and torch.allclose(scores[0], scores[1], atol=1e-5)


def test_kto_trains_on_unpaired_feedback(tiny_model_dir, write_config, tmp_path):
    rows = [{"prompt": f"Who are you? ({i})", "completion": "I am Quill." if i % 2 else "A toaster.",
             "label": bool(i % 2)} for i in range(12)]
    path = tmp_path / "kto.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    result = train(_config(write_config, tiny_model_dir, path, "kto", "kto", {"name": "lora"}))
    assert math.isfinite(result.summary["train_loss"]) and "rewards/margins" in result.summary


@pytest.fixture()
def prompts_file(tmp_path):
    rows = [{"prompt": f"Say something ({i})", "reference": "Quill"} for i in range(8)]
    path = tmp_path / "prompts.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def test_grpo_runs_with_built_in_rewards_and_reports_the_reward_curve(tiny_model_dir, prompts_file, write_config):
    config = _config(write_config, tiny_model_dir, prompts_file, "grpo", "grpo", {"name": "lora"},
                     reward=["length", "regex:Q", "exact_match"], num_generations=4, max_new_tokens=8,
                     batch_size=4, logging_steps=1)
    result = train(config)
    assert len(result.summary["reward_curve"]) == 2 and math.isfinite(result.summary["mean_reward"])


@pytest.mark.parametrize("reward, message", [
    ([], "train.reward: stage grpo needs at least one reward"),
    (["lenght"], "train.reward: unknown reward 'lenght'"),
    (["regex:("], "train.reward regex:\\(: not a valid regular expression"),
    (["python:no_such_module:f"], "train.reward python:no_such_module:f: cannot import it"),
])
def test_grpo_reward_errors_name_the_key(reward, message, tiny_model_dir, prompts_file, write_config, tmp_path):
    from tunelab.errors import TunelabError

    config = _config(write_config, tiny_model_dir, prompts_file, "grpo-bad", "grpo", {"name": "lora"}, reward=reward)
    with pytest.raises(TunelabError, match=message):
        prepare(config, tmp_path)


def test_reward_functions_score_as_documented():
    from tunelab.rewards import reward_function

    completions = [[{"role": "assistant", "content": '{"a": 1}'}], [{"role": "assistant", "content": "Quill"}]]
    assert reward_function("json_valid")([], completions) == [1.0, 0.0]
    assert reward_function("regex:^Q")([], completions) == [0.0, 1.0]
    assert reward_function("exact_match")([], completions, answer=["x", "Quill"]) == [0.0, 1.0]
    assert reward_function("length")([], completions) == [0.08, 0.05]
    assert reward_function("python:json:dumps") is json.dumps


def test_rlhf_chain_sft_reward_ppo_runs_end_to_end(tiny_model_dir, chat_file, pairs_file, prompts_file, write_config):
    """The seeds' chain on the tiny model: SFT -> reward model -> PPO against it, each from the previous run."""
    sft = train(load_config(write_config(tiny_model_dir, chat_file, "chain-sft", train={"max_steps": 2}))).run_dir
    reward = train(_config(write_config, sft, pairs_file, "chain-rm", "reward", {"name": "lora"})).run_dir
    ppo = train(_config(write_config, sft, prompts_file, "chain-ppo", "ppo", {"name": "lora"},
                        reward_model=str(reward), max_new_tokens=8, batch_size=4, logging_steps=1))
    assert ppo.summary["global_step"] == 2 and len(ppo.summary["reward_curve"]) == 2
    from tunelab.runs import load_any

    assert load_any(str(ppo.run_dir)).method.name == "lora"


def test_ppo_needs_a_reward_run_and_rejects_loss_term_methods(tiny_model_dir, prompts_file, chat_file, write_config,
                                                            tmp_path):
    from tunelab.errors import TunelabError

    with pytest.raises(TunelabError, match="train.reward_model: stage ppo needs the run directory"):
        prepare(_config(write_config, tiny_model_dir, prompts_file, "ppo-none", "ppo", {"name": "lora"}), tmp_path)
    sft = train(load_config(write_config(tiny_model_dir, chat_file, "not-rm"))).run_dir
    with pytest.raises(TunelabError, match="not a run directory trained with train.stage reward"):
        prepare(_config(write_config, tiny_model_dir, prompts_file, "ppo-sft", "ppo", {"name": "lora"},
                        reward_model=str(sft)), tmp_path)
    with pytest.raises(TunelabError, match="runs its own loop"):
        _config(write_config, tiny_model_dir, prompts_file, "ppo-moe", "ppo", {"name": "moe-lora"})


def test_ppo_pads_with_a_token_no_prompt_contains(tiny_model_dir, tiny_tokenizer):
    """pad == <|im_end|> appears in every chat prompt; TRL's PPO masks by pad id, so it gets another pad."""
    from tunelab.stages.ppo import _with_unused_pad

    ids = tiny_tokenizer("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n")["input_ids"]
    assert tiny_tokenizer.pad_token_id in ids
    padded = _with_unused_pad(tiny_tokenizer, [{"input_ids": ids}])
    assert padded.pad_token_id not in ids and padded.eos_token_id == tiny_tokenizer.eos_token_id
    assert tiny_tokenizer.pad_token == "<|im_end|>"  # the run's own tokenizer is untouched


@pytest.mark.parametrize("stage", ["dpo", "reward"])
def test_trl_and_reward_stages_resume_where_they_stopped(stage, tiny_model_dir, pairs_file, write_config):
    import shutil

    from tunelab.runs import RunDir

    path = write_config(tiny_model_dir, pairs_file, f"{stage}-resume",
                        train={"stage": stage, "max_steps": 4, "save_steps": 2, "save_total_limit": 3})
    run = RunDir(train(load_config(path)).run_dir)
    whole = [json.loads(line) for line in run.metrics.read_text().splitlines() if '"loss"' in line]
    for later in ("model", "checkpoint-3", "checkpoint-4"):
        shutil.rmtree(run.path / later, ignore_errors=True)
    run.set_status("running")
    result = train(load_config(path, ["train.resume=true"]))
    resumed = [json.loads(line) for line in run.metrics.read_text().splitlines() if '"loss"' in line]
    assert result.summary["resumed_from"] == "checkpoint-2" and result.summary["global_step"] == 4
    assert [line["step"] for line in resumed] == [line["step"] for line in whole] == [1, 2, 3, 4]
    assert [line["loss"] for line in resumed] == pytest.approx([line["loss"] for line in whole], rel=1e-4)


@pytest.mark.parametrize("how", ["override", "yaml"])
def test_grpo_takes_one_reward_as_a_plain_string(how, tiny_model_dir, write_config, tmp_path):
    """As documented: `train.reward=length` on the command line and `reward: length` in YAML, a list stays possible."""
    import json

    from tunelab.cli.main import main
    from tunelab.config import load_config

    data = tmp_path / "prompts.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"Say hi ({i})"}) + "\n" for i in range(4)), encoding="utf-8")
    train = {"stage": "grpo", "num_generations": 2, "max_new_tokens": 4, "max_steps": 1, "batch_size": 2}
    if how == "yaml":
        train["reward"] = "length"
    config = write_config(tiny_model_dir, data, f"grpo-{how}", train=train)
    overrides = ["train.reward=length"] if how == "override" else []
    assert load_config(config, overrides).train.reward == ["length"]
    assert load_config(config, ["train.reward=[length,json_valid]"]).train.reward == ["length", "json_valid"]
    assert main(["train", str(config), *overrides]) == 0
    summary = json.loads((tmp_path / "runs" / f"grpo-{how}" / "summary.json").read_text())
    assert summary["global_step"] == 1 and "mean_reward" in summary
