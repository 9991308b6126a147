"""GRPO and PPO stop where the template ends an answer, not only at EOS: on the Llama 3 stand-in (EOS
<|end_of_text|>, answers end with <|eot_id|>, generation_config lists three ids) a fine-tune that answers and
emits <|eot_id|> gives GRPO complete, unclipped completions; PPO cuts its answers at <|eot_id|> and pads with
a token that is neither in a prompt nor a stop id; the run saves its own tokenizer, not TRL's copy."""
import json
import math

import pytest
import yaml
from family_models import QA, STANDS, build_model_dir, train_stand
from transformers import AutoTokenizer

from tunelab.compat import GrpoGenerationHook
from tunelab.config import load_config
from tunelab.data.stops import cut_after_stop, stop_token_ids, with_end_of_turn_as_eos
from tunelab.stages.grpo import StopsOnEveryStopId
from tunelab.train import train


@pytest.fixture(scope="module")
def llama3(tmp_path_factory):
    """The Llama 3 stand-in, fine-tuned to answer QA and end with <|eot_id|>."""
    folder = tmp_path_factory.mktemp("llama3")
    model_dir = build_model_dir(STANDS["llama3"], folder / "model")
    return model_dir, train_stand(folder, model_dir, {"name": "lora", "r": 8, "alpha": 16})


def test_the_copy_trl_gets_has_the_end_of_turn_as_eos_and_the_run_keeps_its_own(llama3):
    tokenizer = AutoTokenizer.from_pretrained(llama3[0])
    copied = with_end_of_turn_as_eos(tokenizer)
    assert (copied.eos_token, tokenizer.eos_token) == ("<|eot_id|>", "<|end_of_text|>")


def test_completions_are_cut_after_the_first_of_any_stop_id():
    class Generated:
        def _generate_single_turn(self, *args, **kwargs):
            return [[5, 9, 3, 0], [4, 4, 7], [8, 6]], [[-1.0, -2.0, -3.0, -4.0], [-1.0, -1.0, -1.0], [-2.0, -2.0]]

    class Trainer(StopsOnEveryStopId, GrpoGenerationHook, Generated):  # as stage grpo builds it
        use_vllm = True  # nothing to set on generation; only the cut

    trainer = Trainer()
    trainer.use_stop_ids([9, 7])
    ids, logprobs = trainer._generate_single_turn()
    assert ids == [[5, 9], [4, 4, 7], [8, 6]] and logprobs == [[-1.0, -2.0], [-1.0, -1.0, -1.0], [-2.0, -2.0]]
    assert cut_after_stop([1, 2], {3}) == 2


def _rl_config(folder, model_path, stage: str, method: str = "lora", **train_keys):
    data = folder / "prompts.jsonl"
    data.write_text("".join(json.dumps({"prompt": q, "answer": a}) + "\n" for q, a in QA * 2), encoding="utf-8")
    config = {"model": {"path": str(model_path)}, "data": {"path": str(data)}, "method": {"name": method},
              "train": {"stage": stage, "max_steps": 1, "batch_size": 4, "lr": 1e-5, "precision": "fp32",
                        "report_to": "none", "logging_steps": 1, "max_new_tokens": 24, "temperature": 0.05,
                        **train_keys},
              "output": {"dir": str(folder / stage)}}
    (folder / f"{stage}.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    return load_config(folder / f"{stage}.yaml")


@pytest.mark.parametrize("method", ["lora", "full"])
def test_grpo_generates_until_the_end_of_turn_token_and_scores_whole_answers(llama3, method, tmp_path):
    model_dir, sft = llama3
    result = train(_rl_config(tmp_path, sft, "grpo", method, reward=["exact_match"], num_generations=4))
    summary = result.summary
    # every sampled answer ended on a stop id (none ran to max_new_tokens) and equals the trained answer
    assert summary["completions/clipped_ratio"] == 0.0, summary
    assert summary["completions/max_length"] < 24
    assert math.isclose(summary["mean_reward"], 1.0), summary
    saved = AutoTokenizer.from_pretrained(result.run_dir / "model")
    assert saved.eos_token == "<|end_of_text|>"  # the run's own tokenizer, not the copy TRL stopped with
    if method == "full":  # the saved model keeps its own ids too (the Trainer aligns them with TRL's copy)
        for name in ("config.json", "generation_config.json"):
            base = json.loads((model_dir / name).read_text())["eos_token_id"]
            assert json.loads((result.run_dir / "model" / name).read_text())["eos_token_id"] == base, name


def test_ppo_stops_at_the_end_of_turn_and_pads_apart(llama3, tmp_path):
    from tunelab.stages.ppo import PpoStage

    model_dir, _ = llama3
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": QA[0][0]}], add_generation_prompt=True)
    prompt = prompt["input_ids"] if isinstance(prompt, dict) else prompt

    class Model:
        from transformers import GenerationConfig
        generation_config = GenerationConfig.from_pretrained(model_dir)

    stage = PpoStage.__new__(PpoStage)
    copied = stage.trl_tokenizer(Model, tokenizer, [{"input_ids": prompt}])
    assert copied.eos_token == "<|eot_id|>" and copied.padding_side == "left"
    # TRL's PPO cuts at its EOS and masks by pad: the pad is neither in a prompt nor that stop token (the stand-in
    # has no spare special token, so it keeps its pad <|end_of_text|>, another stop id)
    assert copied.pad_token_id not in prompt and copied.pad_token_id != copied.eos_token_id
    assert copied.eos_token_id in stop_token_ids(tokenizer, Model.generation_config)
    assert (tokenizer.eos_token, tokenizer.pad_token, tokenizer.padding_side) == ("<|end_of_text|>",) * 2 + ("right",)


def test_ppo_samples_end_on_the_end_of_turn_token(llama3, tmp_path):
    """SFT -> reward model -> PPO on the stand-in: each of PPO's sampled answers contains the end-of-turn token it
    cuts at (TRL counts them as `val/num_eos_tokens`; with the tokenizer's own EOS there were none)."""
    _, sft = llama3
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"prompt": q, "chosen": a, "rejected": "No."}) + "\n" for q, a in QA * 4),
                     encoding="utf-8")
    config = {"model": {"path": str(sft)}, "data": {"path": str(pairs)}, "method": {"name": "lora"},
              "train": {"stage": "reward", "max_steps": 2, "batch_size": 4, "precision": "fp32", "report_to": "none"},
              "output": {"dir": str(tmp_path / "rm")}}
    (tmp_path / "rm.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    reward = train(load_config(tmp_path / "rm.yaml")).run_dir
    result = train(_rl_config(tmp_path, sft, "ppo", reward_model=str(reward)))
    assert result.summary["val/num_eos_tokens"] == 4, result.summary
    assert AutoTokenizer.from_pretrained(result.run_dir / "model").padding_side == "right"
