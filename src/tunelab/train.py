"""The training recipe, top to bottom: config -> data -> model -> method -> stage -> run directory.

`train(config)` is what `tunelab train` calls; library users call it the same way.
"""
from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from tunelab.config import RunConfig, dump_config
from tunelab.config.keys import cache_key_values
from tunelab.continual.apply import Continual
from tunelab.data.cache import cached_rows, tokenizer_fingerprint
from tunelab.data.loading import load_sources
from tunelab.data.mixture import by_source, mix_rows, tagged
from tunelab.data.streaming import StreamingRows, check_streamable
from tunelab.data.tokenize import TRAIN_ON, combined
from tunelab.errors import Interrupted, TunelabError
from tunelab.eval.after_training import check_eval, evaluate_run, write_run_report, write_samples
from tunelab.methods import count_parameters, get_method
from tunelab.models import load_tokenizer, resolve_model, resolve_precision
from tunelab.runs import STATUS_FAILED, STATUS_FINISHED, STATUS_INTERRUPTED, STATUS_RUNNING, RunDir, find_run, load_run
from tunelab.runs.loading import continues, reload_with_head, with_pad
from tunelab.runs.provenance import base_fingerprint, data_hashes, git_sha, library_versions, sources_hashes
from tunelab.runs.resume import follow_start, start_run
from tunelab.stages import STAGES, get_stage
from tunelab.training.arguments import check_backends
from tunelab.training.callbacks import build_callbacks
from tunelab.training.distributed import World, sharded, write_launch_files
from tunelab.training.frozen import run_compute_dtype
from tunelab.training.guards import Guards
from tunelab.training.progress import use_progress_lines
from tunelab.training.split import split_rows
from tunelab.training.template import lint as lint_template
from tunelab.training.template import set_template, set_thinking

log = logging.getLogger("tunelab")


@dataclass
class TrainResult:
    run_dir: Path
    summary: dict
    main: bool = True  # rank 0 (the one that wrote the run directory)


@dataclass
class Prepared:
    """Everything between the config and `trainer.train()`: shared by `train` and `plan`."""
    trainer: object
    stats: object
    model: object
    base: object
    packing: bool
    data_hashes: dict
    method: object
    stage: object
    continual: object = None
    template: object = None  # tunelab.training.template.TemplateSetup
    tokenizer: object = None  # the run's tokenizer (a TRL stage may hand its trainer a copy that stops or pads apart)


def train(config: RunConfig) -> TrainResult:
    """Run one training; under a launcher every rank calls it, and only rank 0 writes the run directory."""
    world = World.from_env()
    run = RunDir(config.output.dir)
    stage_class = STAGES.get(config.train.stage)
    if config.train.resume is not False and not stage_class.supports_resume:
        raise TunelabError(f"train.resume: stage {config.train.stage!r} cannot resume from a checkpoint "
                           "(its trainer has no resume); start the run again")
    if not world.main:
        _quiet_this_rank()
    start = start_run(run, config) if world.main else None
    world.barrier()  # rank 0 has emptied, or cleaned for resuming, the run directory
    start = start or follow_start(run, config)
    if start.finished:
        return TrainResult(run.path, run.read_json(run.summary_path) if run.summary_path.is_file() else {}, world.main)
    if world.main:
        run.config.write_text(dump_config(config), encoding="utf-8")
        run.set_status(STATUS_RUNNING)
        _announce_world(config, run, world)
    guards = Guards(config, run.path, stage_class.supports_resume, world)
    trainer = None
    try:
        prepared = prepare(config, run.path, [*build_callbacks(config, run, world.main), *guards.callbacks])
        trainer = prepared.trainer
        if world.main:
            _write_provenance(config, run, prepared, start.checkpoint)
            prepared.stage.save(run.path)  # also at the top of the run, for its checkpoints
        summary = _fit(run, prepared, guards, start.checkpoint, world, config)
        if world.main:
            summary = _after_training(config, run, prepared, summary)
    except BaseException as exc:
        if world.main:
            stopped = isinstance(exc, (Interrupted, KeyboardInterrupt))
            run.set_status(STATUS_INTERRUPTED if stopped else STATUS_FAILED)
            if start.checkpoint is None and (trainer is None or trainer.state.global_step == 0):
                run.remove_weights()
        raise
    if world.main:  # the page says how the run ends, and exists by the time the run says finished
        write_run_report(run.path, STATUS_FINISHED)
        run.set_status(STATUS_FINISHED)
    world.finish()
    return TrainResult(run.path, summary, world.main)


def _quiet_this_rank() -> None:
    """Ranks other than 0 print warnings and errors only: one progress log per run."""
    log.setLevel(logging.WARNING)
    os.environ["TQDM_DISABLE"] = "1"


def _announce_world(config: RunConfig, run: RunDir, world: World) -> None:
    train_cfg = config.train
    global_batch = train_cfg.batch_size * train_cfg.grad_accum * world.size
    log.info("global batch %d = batch_size %d x grad_accum %d x world_size %d%s", global_batch,
             train_cfg.batch_size, train_cfg.grad_accum, world.size,
             f" ({train_cfg.distributed})" if world.size > 1 else "")
    if world.size > 1 or train_cfg.distributed != "ddp":
        written = write_launch_files(config, run.path, world, int(os.environ.get("GROUP_WORLD_SIZE", 0)) or 1)
        log.info("engine config: %s", ", ".join(str(path) for path in written))


def prepare(config: RunConfig, output_dir: Path, callbacks=()) -> Prepared:
    """Data -> model -> method -> stage -> a ready Trainer writing to `output_dir`."""
    if config.train.num_threads:
        torch.set_num_threads(config.train.num_threads)
    torch.manual_seed(config.train.seed)
    check_backends(config)
    stage, method = get_stage(config), get_method(config.method)
    check_eval(config, stage)
    continual = Continual.of(config)
    packing = _packing(config, method, stage)
    hashes = sources_hashes(config.data)  # read once: cache key and provenance
    examples = None if config.data.streaming else _examples(config, stage)  # data errors before the slow load
    if examples is not None and continual is not None:
        examples = continual.examples(examples, config.train.seed)
    if config.data.streaming:
        if not stage.supports_streaming:
            raise TunelabError(f"data.streaming: train.stage {stage.name!r} needs all examples up front")
        check_streamable(config.data.path)
    model, tokenizer, base, template = _load_start_model(config, method, stage)
    if stage.uses_template:
        template.enable_thinking = set_thinking(config.data, tokenizer, examples)
    lint_template(config, stage, tokenizer, examples, template)  # before any tokenizing or training
    if examples is None:
        train_rows, val_rows, stats = _streamed(config, stage, tokenizer)
    else:
        train_rows, val_rows, stats = _rows(config, stage, examples, tokenizer, hashes, packing)

    _check_positions(config, method, model, train_rows)
    trainable, total = count_parameters(model)
    log.info("method %s: %s trainable / %s total parameters (%.3f%%)", config.method.name,
             f"{trainable:,}", f"{total:,}", 100 * trainable / max(total, 1))
    trainer = stage.build_trainer(model, tokenizer, method, train_rows, val_rows,
                                  [*callbacks, *method.callbacks(model)], Path(output_dir), packing)
    use_progress_lines(trainer)
    if continual is not None:  # the penalties join the method's own terms: one list every stage adds
        computes = run_compute_dtype(trainer.args)
        trainer.loss_terms += continual.loss_terms(config, model, tokenizer, method, Path(output_dir),
                                                   trainer.accelerator.autocast, str(computes or torch.float32))
        for callback in continual.callbacks():
            trainer.add_callback(callback)
    return Prepared(trainer, stats, model, base, packing, hashes, method, stage, continual, template, tokenizer)


def _examples(config: RunConfig, stage) -> list[dict]:
    """The examples of data.path, or of every data.mix source (each marked with its source, for `_mixed_rows`)."""
    groups = load_sources(config.data, config.train.max_samples)
    examples = tagged(groups) if config.data.mix else groups[0]
    examples = [TRAIN_ON[config.data.train_on](example) for example in examples]
    stage.check_examples(examples)
    each = "; ".join(f"{source.label}: {len(group)}" for source, group in zip(config.data.mix, groups))
    log.info("data: %d examples from %s", len(examples), each or config.data.path)
    return examples


def _streamed(config: RunConfig, stage, tokenizer):
    """(rows, no validation rows, stats) read lazily; the first row is read now to fail early."""
    rows = StreamingRows(config.data.path, config.data.format, stage, tokenizer)
    rows.first()
    log.info("data: streaming %s (examples are counted as training reads them)", config.data.path)
    return rows, [], rows.stats


def _rows(config: RunConfig, stage, examples, tokenizer, hashes: dict, packing: bool):
    """(train rows, validation rows, stats) of in-memory data."""
    val_size, seed = config.data.val_size or stage.default_val_size, config.data.shuffle_seed or config.train.seed
    if config.data.mix:
        train_rows, val_rows, stats = _mixed_rows(config, stage, examples, tokenizer, val_size, seed)
    else:
        rows, stats = _tokenized(config, stage, examples, tokenizer, hashes)
        log.info("tokenized: %s", stats.summary())
        train_rows, val_rows = split_rows(rows, val_size, seed)
    if packing:
        train_rows, val_rows = stage.pack(train_rows), stage.pack(val_rows)
    return train_rows, val_rows, stats


def _mixed_rows(config: RunConfig, stage, examples, tokenizer, val_size: float, seed: int):
    """data.mix: each source tokenized once (cached on its own), validation held out per source, then the
    training rows drawn by weight: repeats cost no tokenizing, and no validation row is also trained on."""
    sources = config.data.mix
    done = [_tokenized(config, stage, group, tokenizer, _source_key(source))
            for source, group in zip(sources, by_source(examples, len(sources)))]
    stats = combined([part for _, part in done])
    log.info("tokenized: %s", stats.summary())
    mixture = mix_rows([rows for rows, _ in done], sources, config.data.mix_stop, config.data.mix_size, val_size, seed)
    stats.mix = mixture.report
    return mixture.train, mixture.validation, stats


def _source_key(source) -> dict:
    """A data.mix source's part of the tokenized-data cache key (none for a hub source: nothing local to hash)."""
    files = data_hashes(source.path)
    return {"files": files, "source": source.model_dump(exclude={"weight"})} if files else {}


def _tokenized(config: RunConfig, stage, examples, tokenizer, hashes: dict):
    if not config.data.cache or not hashes or not stage.cache_rows:  # remote data has no local files to key on
        return stage.tokenize(examples, tokenizer)
    parts = {**cache_key_values(config), "data": hashes, "tokenizer": tokenizer_fingerprint(tokenizer),
             "template": tokenizer.chat_template}
    return cached_rows(parts, lambda: stage.tokenize(examples, tokenizer))


def _packing(config: RunConfig, method, stage) -> bool:
    if config.train.packing and not method.supports_packing:
        log.info("packing off: method %s adds virtual tokens", config.method.name)
        return False
    if config.train.packing and not stage.supports_packing:
        log.info("packing off: stage %s trains one example per row", stage.name)
        return False
    return config.train.packing


def _load_start_model(config: RunConfig, method, stage):
    """The base model with the method applied — or a previous run's result to keep training — and the chat
    template in force (tokens it needs are added before the method wraps the model, so it trains their rows)."""
    ref = find_run(config.model.path)
    if ref is None:
        base = resolve_model(config.model.path, config.model.gguf_file)
        tokenizer = load_tokenizer(base, config.model)
        model = _load_base(config, method, stage, base, tokenizer)
        template = set_template(config, stage, method, model, tokenizer)
        return method.apply(model), tokenizer, base, template
    same_head = get_stage(ref.config).head == stage.head
    if continues(ref.config, config):
        log.info("continuing the %s result of %s", config.method.name, ref.weights)
        loaded = load_run(ref, torch.float32, trainable=True)
        template = set_template(config, stage, method, loaded.model, loaded.tokenizer, can_add=False, from_run=True)
        model = loaded.model if method.is_adapter else method.apply(loaded.model)  # freeze the same blocks again
        return model, loaded.tokenizer, loaded.base, template
    log.info("merging the %s result of %s before applying %s", ref.config.method.name, ref.weights, config.method.name)
    loaded = load_run(ref, torch.float32)
    merged = loaded.method.merge(loaded.model) if loaded.method else loaded.model
    if not same_head:  # e.g. an SFT result becoming a reward model
        merged = reload_with_head(merged, lambda source: _load_base(config, method, stage, source, loaded.tokenizer),
                                  loaded.tokenizer, stage.head)
    template = set_template(config, stage, method, merged, loaded.tokenizer, from_run=True)
    return method.apply(merged), loaded.tokenizer, loaded.base, template


def _check_positions(config: RunConfig, method, model, rows) -> None:
    """Virtual tokens take positions too: past a model's position table (GPT-2's n_positions) its embedding
    lookup fails in the middle of training, so the longest example plus them must fit."""
    model_config = getattr(model, "config", None)
    limit = getattr(model_config, "n_positions", None) or getattr(model_config, "max_position_embeddings", None)
    if not method.extra_positions or not limit:
        return
    lengths = [len(row["input_ids"]) for row in rows if "input_ids" in row] if isinstance(rows, list) else []
    longest = max(lengths, default=config.train.max_length)
    if longest + method.extra_positions > limit:
        raise TunelabError(
            f"method.num_virtual_tokens: {method.extra_positions} virtual tokens + the longest example "
            f"({longest} tokens, train.max_length {config.train.max_length}) = {longest + method.extra_positions} "
            f"positions, more than the model's {limit}; lower method.num_virtual_tokens or train.max_length")


def _load_base(config: RunConfig, method, stage, source, tokenizer):
    """The starting weights with the stage's head, loaded the method's way."""
    precision = resolve_precision(config.train.precision)
    model = method.load_base(source, config.model, precision=precision, head=stage.head, **stage.model_kwargs())
    return with_pad(model, tokenizer, stage.head)


def _write_provenance(config: RunConfig, run: RunDir, prepared: Prepared, checkpoint: Path | None) -> None:
    base = prepared.base
    run.write_json(run.provenance_path, {
        "resumed_from": str(checkpoint) if checkpoint else None,
        "command": sys.argv,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "libraries": library_versions(),
        "git_sha": git_sha(),
        "data": config.data.label,
        "data_hashes": prepared.data_hashes,
        "base_model": base.name,
        "base_location": base.location,
        "base_kind": base.kind,
        "base_fingerprint": base_fingerprint(base.location),
        "chat_template": prepared.template.provenance() if prepared.template else None,
    })


def _fit(run: RunDir, prepared: Prepared, guards: Guards, checkpoint: Path | None, world: World,
         config: RunConfig) -> dict:
    trainer, stats, model, method = prepared.trainer, prepared.stats, prepared.model, prepared.method
    output = prepared.stage.train(trainer, checkpoint)
    guards.check(output.global_step)
    _save_model(run, prepared, world, config)
    trainable, total = count_parameters(model)
    runtime = output.metrics.get("train_runtime", 0.0)
    summary = {
        "global_step": output.global_step,
        "train_loss": output.training_loss,
        "train_runtime_s": runtime,
        "train_tokens": trainer.state.num_input_tokens_seen,
        "train_tokens_per_s": trainer.state.num_input_tokens_seen / runtime if runtime else None,
        "trainable_params": trainable,
        "total_params": total,
        "world_size": trainer.args.world_size,
        "resumed_from": checkpoint.name if checkpoint else None,
        **guards.summary(),
        "examples": {"kept": stats.kept, "truncated": stats.truncated, "dropped": stats.dropped,
                     "empty": stats.empty},
        **({"data_mix": stats.mix} if stats.mix else {}),
        **method.summary(trainer.model),
    }
    if trainer.eval_dataset is not None and prepared.stage.evaluates:
        metrics = trainer.evaluate()  # every rank takes part
        summary.update({k: v for k, v in metrics.items()
                        if k.startswith("eval_") and not k.endswith(("_runtime", "_per_second"))})
    summary.update(prepared.stage.summary(trainer))  # after evaluating: stages read the logged metrics
    if not world.main:
        return summary
    run.write_json(run.summary_path, summary)
    log.info("finished: %d steps, train_loss %.4f, %.0f tokens/s -> %s", output.global_step,
             output.training_loss, summary["train_tokens_per_s"] or 0, run.model_dir)
    return summary


def _save_model(run: RunDir, prepared: Prepared, world: World, config: RunConfig) -> None:
    """RUN/model, written whole by rank 0. Sharded weights (FSDP, ZeRO-3) are gathered by the Trainer's own
    save, in which every rank takes part: saving the local shard would write empty tensors."""
    trainer = prepared.trainer
    staging = run.staging_model_dir() if world.main else None
    if sharded(config):
        trainer.save_model(str(run.staging_path))
        if world.main:  # the Trainer's extras: a pickled copy of its arguments and peft's model card
            for extra in ("training_args.bin", "README.md"):
                (staging / extra).unlink(missing_ok=True)
    elif world.main:
        prepared.method.save(prepared.stage.trained_model(trainer), staging)
    if world.main:
        prepared.tokenizer.save_pretrained(staging)
        prepared.stage.save(staging)
        run.install_model(staging)


def _after_training(config: RunConfig, run: RunDir, prepared: Prepared, summary: dict) -> dict:
    """eval: section, base-vs-tuned samples and report.html, from the trained model still in memory."""
    from tunelab.eval.subject import Subject
    from tunelab.models import detect_device
    from tunelab.runs import LoadedModel

    trainer, stage = prepared.trainer, prepared.stage
    added: dict = {}
    if prepared.continual is not None:
        prepared.continual.finish()
        added.update(prepared.continual.summary())
    if sharded(config) and prepared.trainer.args.world_size > 1:
        log.info("eval and samples skipped: the weights are sharded across ranks; run `tunelab eval --model %s`",
                 run.path)
    elif stage.head == "causal-lm" or config.eval is not None:
        loaded = LoadedModel(stage.trained_model(trainer), prepared.tokenizer, prepared.base, prepared.method)
        subject = Subject(loaded, detect_device())
        added.update(evaluate_run(config, run.path, subject, stage))
        if stage.head == "causal-lm":
            write_samples(run.path, subject, trainer.eval_dataset)
    if added:
        summary = {**summary, **added}
        run.write_json(run.summary_path, summary)
    return summary
