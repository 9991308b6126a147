"""AdaLoRA gets the real step count from the Trainer, reallocates ranks, and trains with its penalty."""
import torch

from tunelab.config import load_config
from tunelab.train import prepare, train


def test_ranks_shrink_to_the_budget_over_the_run(tiny_model_dir, chat_file, write_config):
    config = load_config(write_config(tiny_model_dir, chat_file, "ada", method={
        "name": "adalora", "r": 2, "adalora_init_r": 4, "target_modules": ["q_proj", "v_proj"]},
        train={"max_steps": 6, "lr": 5e-2}))
    result = train(config)
    ranks = result.summary["adalora_ranks"]
    assert len(ranks) == 4  # q_proj and v_proj in 2 layers
    assert sum(ranks.values()) == 2 * len(ranks), "the final budget is r per layer on average"
    assert all(0 <= rank <= 4 for rank in ranks.values())


def test_schedule_comes_from_the_trainer_and_the_penalty_is_in_the_loss(tiny_model_dir, chat_file, write_config,
                                                                       tmp_path):
    config = load_config(write_config(tiny_model_dir, chat_file, "ada2", method={"name": "adalora"},
                                      train={"max_steps": 10}))
    trainer = prepare(config, tmp_path).trainer
    peft_config = trainer.model.peft_config["default"]
    trainer.train()
    assert peft_config.total_step == 10 and peft_config.tinit < 10 - peft_config.tfinal

    batch = next(iter(trainer.get_train_dataloader()))
    trainer.model.train()
    with torch.no_grad():
        with_penalty = trainer.compute_loss(trainer.model, dict(batch))
        peft_config.orth_reg_weight = 0.0
        without = trainer.compute_loss(trainer.model, dict(batch))
    assert with_penalty > without
