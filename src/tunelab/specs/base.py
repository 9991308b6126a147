"""What a method, stage or continual-learning penalty *is*, apart from what it does: its name, a one-line
description, the config keys it reads and its capabilities, as frozen dataclasses in modules that import
nothing heavy. The config is validated against these alone (no torch, transformers, peft or trl), and the
UI, `tunelab methods` and docs read them too. The implementations (tunelab.methods, tunelab.stages,
tunelab.continual) register under the same names and take their flags from here (`adopt`), so there is one
place that says what a member can do."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Callable


@dataclass(frozen=True)
class MethodCaps:
    is_adapter: bool = True        # saves only adapter weights next to a reference to the base
    mergeable: bool = True         # can be folded into the base weights
    supports_packing: bool = True  # lives inside the decoder's modules, so examples can share packed rows
    starts_as_base: bool = True    # at step 0 the model computes exactly what the base does
    fused_loss: bool = True        # the Trainer may run the decoder itself and compute the loss (no model.forward)
    works_with_trl: bool = True    # a TRL trainer (own loss, reference adapter) can train it
    adds_loss_terms: bool = False  # loss_terms() returns something: needs a stage whose loss tunelab can extend
    trains_task_heads: bool = True  # trains (and saves) a new head a stage adds, e.g. a classifier's score layer
    # its frozen Linear weights enter only matmuls, so a bf16 run may store them in bf16 while it trains
    # (tunelab.training.frozen); False where the method reads a base weight outside a matmul
    frozen_in_compute_dtype: bool = True
    # can train the embedding rows of tokens added for a chat template (tunelab.models.tokens)
    trains_added_tokens: bool = False
    saves_checkpoints: bool = False   # checkpoints need the method's own save (the Trainer's would be wrong)
    unused_parameters: bool = False   # some trainable tensors may get no gradient in a step (DDP must look for them)
    checkpoint_resumes: bool = True   # its checkpoint files restart training exactly (else they keep the raw tensors)
    # its whole change is B·A on frozen layers, zero at the start (B or AdaLoRA's E zero): continual nullspace can
    # keep A out of the old data's input directions
    update_is_ba_from_zero: bool = False


@dataclass(frozen=True)
class StageCaps:
    uses_template: bool = True       # renders conversations with the chat template (tokens it needs get added)
    head: str = "causal-lm"          # which model class to load (tunelab.models.loading.HEADS)
    supports_packing: bool = True
    supports_streaming: bool = True
    default_val_size: float = 0.0    # held out when data.val_size is 0 (stages that report validation metrics)
    cache_rows: bool = True          # rows are token-level lists the tokenized-data cache can store
    evaluates: bool = True           # Trainer.evaluate() gives held-out metrics at the end
    eval_kind: str | None = "generation"  # what the `eval:` section measures: generated text, labels, or nothing
    supports_resume: bool = True     # the trainer restores optimizer, scheduler, RNG and data position
    owns_loop: bool = False          # the trainer runs its own loop: no loss terms can be added to its loss
    uses_trl: bool = False           # trained by a TRL trainer (own loss, own batches, a reference adapter)
    aligned_logits: bool = False     # TRL matches logits to completion tokens: no virtual tokens in front
    uses_reference: bool = False     # the loss compares with a frozen reference policy


@dataclass(frozen=True)
class PenaltyCaps:
    adds_loss: bool = True        # a loss term: refused with stages whose trainer runs its own loop (PPO)
    needs_lm_head: bool = False   # reads next-token logits or the LM loss: causal-LM stages only
    needs_ba_update: bool = False  # acts on LoRA's A matrices, whole on each process (nullspace)


def _no_problem(config, world_size: int) -> str | None:
    return None


@dataclass(frozen=True)
class MethodSpec:
    name: str
    description: str
    options: tuple[str, ...] = ()   # the method.* keys it reads (forms show only these; others are refused)
    caps: MethodCaps = MethodCaps()


@dataclass(frozen=True)
class StageSpec:
    name: str
    description: str
    options: tuple[str, ...] = ()   # the train.* keys it reads beyond the common ones
    example_kind: str = "messages"  # canonical key the stage needs: "messages", "text", "label", ...
    wants: str = "conversations"    # how the error message names the data the stage needs
    caps: StageCaps = StageCaps()
    # what in a config the library behind the stage would refuse with `world_size` processes, said in tunelab's
    # keys (checked when the config is read; each rank of a launch reads it with its WORLD_SIZE)
    settings_problem: Callable = field(default=_no_problem, compare=False)
    data_options: tuple[str, ...] = ()  # the data.* keys it reads beyond the common ones


@dataclass(frozen=True)
class PenaltySpec:
    name: str
    description: str
    default_weight: float = 1.0
    caps: PenaltyCaps = PenaltyCaps()


def adopt(cls: type, spec) -> type:
    """Give an implementation class its spec: `cls.spec`, and the description, options, data kind and
    capabilities as class attributes (the code that trains reads them there)."""
    cls.spec = spec
    for item in dataclasses.fields(spec):
        if item.name == "caps":
            for cap in dataclasses.fields(spec.caps):
                setattr(cls, cap.name, getattr(spec.caps, cap.name))
        elif item.name != "settings_problem":
            setattr(cls, item.name, getattr(spec, item.name))
    return cls


def capability_names(spec_class: type) -> set[str]:
    """Every attribute `adopt` sets from a spec of this class (a test checks no implementation sets its own)."""
    caps = {item.name: item for item in dataclasses.fields(spec_class)}["caps"].default
    return {item.name for item in dataclasses.fields(spec_class) if item.name != "settings_problem"} - {"caps"} | \
        {item.name for item in dataclasses.fields(caps)}
