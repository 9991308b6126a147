"""Checks that an exported model directory will chat the way the run trained it to.

Each failure here is a silent bug elsewhere: a generation config that does not stop on the template's
end-of-turn token rambles on; a tokenizer saved with another template renders prompts the model never saw;
a config naming tunelab's packed attention does not load outside tunelab. `run_checks` returns one
`CheckResult` per check; `tunelab check` prints them and fails when a blocking one fails. A non-blocking
failure is a warning: "stops on its own" asks an untrained or tiny model for something it may not have learned.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from tunelab.data.templates import render_conversation
from tunelab.errors import TunelabError
from tunelab.data.stops import SAMPLE, config_eos_ids, end_of_turn_id
from tunelab.runs.loading import RunRef

PROMPT = [{"role": "user", "content": "Hello! Who are you?"}]
MAX_NEW_TOKENS = 64
TEMPLATE_EXAMPLES = 5  # conversations of the run's data re-rendered with the saved template


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str
    blocking: bool = True  # a failed non-blocking check is a warning

    @property
    def status(self) -> str:
        return "ok" if self.ok else ("FAIL" if self.blocking else "warn")


def failed(results: list[CheckResult]) -> bool:
    return any(not r.ok and r.blocking for r in results)


def format_table(results: list[CheckResult]) -> str:
    width = max(len(r.name) for r in results)
    return "\n".join(f"{r.status:<4}  {r.name:<{width}}  {r.detail}" for r in results)


def run_checks(model_dir: str | Path, run: RunRef | None = None, generate: bool = True) -> list[CheckResult]:
    """Check the plain model directory `model_dir`; with `run`, against the data and tokenizer it trained with."""
    from transformers import AutoConfig, AutoTokenizer

    folder = Path(model_dir)
    if not (folder / "config.json").is_file():
        raise TunelabError(f"{folder}: not a model directory (no config.json); give a run or a merged model dir")
    results = [check_attention(folder)]
    if not _is_causal_lm(AutoConfig.from_pretrained(folder)):
        return results + [CheckResult("chat", True, "skipped: not a causal language model")]
    tokenizer = AutoTokenizer.from_pretrained(folder)
    if not tokenizer.chat_template:
        return results + [CheckResult("chat template", False, "the tokenizer has no chat template, so chat "
                                      "programs cannot format a conversation")]
    eos_ids, end = _generation_eos(folder), end_of_turn_id(tokenizer)
    results += [check_end_of_turn(tokenizer, end), check_generation_eos(eos_ids, end, tokenizer),
                check_tokenizer_eos(tokenizer, end)]
    prompt = PROMPT
    if run is not None:
        conversations, source = _run_conversations(run)
        results.append(check_run_template(tokenizer, run, conversations, source))
        prompt = _prompt(conversations[0])
    if generate:
        results.append(check_stops(folder, tokenizer, eos_ids, prompt))
    return results


def check_attention(folder: Path) -> CheckResult:
    from tunelab.models.attention import PACKED

    text = (folder / "config.json").read_text(encoding="utf-8")
    if PACKED in text:
        return CheckResult("plain config", False, f"config.json names tunelab's attention {PACKED!r}; "
                           "other programs cannot load it")
    return CheckResult("plain config", True, "config.json names no tunelab-only attention")


def check_end_of_turn(tokenizer, end: int | None) -> CheckResult:
    if end is None:
        return CheckResult("end of turn", False, "the chat template ends an assistant answer with no special "
                           "token, so nothing tells generation to stop")
    return CheckResult("end of turn", True, f"the chat template ends an answer with {_name(tokenizer, end)}")


def check_generation_eos(eos_ids: list[int], end: int | None, tokenizer) -> CheckResult:
    if not eos_ids:
        return CheckResult("generation eos", False, "generation_config.json has no eos_token_id")
    names = ", ".join(_name(tokenizer, i) for i in eos_ids)
    if end is not None and end not in eos_ids:
        return CheckResult("generation eos", False, f"generation_config eos_token_id is {names}, not the "
                           f"end-of-turn token {_name(tokenizer, end)}: answers would not stop")
    return CheckResult("generation eos", True, f"generation_config stops on {names}")


def check_tokenizer_eos(tokenizer, end: int | None) -> CheckResult:
    """Non-blocking: generation_config decides where transformers stops, but tools that read only the
    tokenizer's EOS would not stop on another end-of-turn token."""
    eos = tokenizer.eos_token_id
    if eos is None:
        return CheckResult("tokenizer eos", False, "the tokenizer has no EOS token", blocking=False)
    if end is not None and eos != end:
        return CheckResult("tokenizer eos", False, f"tokenizer EOS is {_name(tokenizer, eos)}, the template "
                           f"ends turns with {_name(tokenizer, end)}", blocking=False)
    return CheckResult("tokenizer eos", True, f"tokenizer EOS is {_name(tokenizer, eos)}")


def check_run_template(tokenizer, run: RunRef, conversations: list[list[dict]], source: str) -> CheckResult:
    """The saved tokenizer renders the run's conversations to the same text and ids as the run's own tokenizer
    (RUN/model, saved with the template in force during training)."""
    from tunelab.models import load_tokenizer
    from tunelab.models.sources import ResolvedModel

    trained = load_tokenizer(ResolvedModel(str(run.weights), str(run.weights), "hf_dir"), run.config.model)
    for messages in conversations:
        expected, actual = render_conversation(trained, messages), render_conversation(tokenizer, messages)
        if expected != actual or _ids(trained, expected) != _ids(tokenizer, actual):
            return CheckResult("chat template", False, f"a conversation of {source} renders differently "
                               "with the saved tokenizer than in training")
    return CheckResult("chat template", True, f"{len(conversations)} conversations of {source} render as in "
                       "training")


def check_stops(folder: Path, tokenizer, eos_ids: list[int], prompt: list[dict]) -> CheckResult:
    """Greedy generation on a sample prompt: does the model end its answer within MAX_NEW_TOKENS?"""
    import torch
    from transformers import AutoModelForCausalLM

    from tunelab.models import detect_device

    device = detect_device()
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).to(device).eval()
    ids = tokenizer(render_conversation(tokenizer, prompt, add_generation_prompt=True), add_special_tokens=False,
                    return_tensors="pt")["input_ids"].to(device)
    stops = eos_ids or [tokenizer.eos_token_id]
    with torch.no_grad():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=MAX_NEW_TOKENS,
                             do_sample=False, eos_token_id=stops, pad_token_id=tokenizer.pad_token_id)
    new = out[0, ids.shape[1]:].tolist()
    if new and new[-1] in stops:
        return CheckResult("stops on its own", True, f"greedy answer ended after {len(new)} tokens with "
                           f"{_name(tokenizer, new[-1])}", blocking=False)
    return CheckResult("stops on its own", False, f"greedy answer did not end within {MAX_NEW_TOKENS} new "
                       "tokens (an untrained or undertrained model may not)", blocking=False)


def _run_conversations(run: RunRef) -> tuple[list[list[dict]], str]:
    """A few conversations of the run's training data, or the sample when the data is gone or holds none."""
    from tunelab.data.loading import load_sources

    data = run.config.data
    try:
        examples = [example for group in load_sources(data) for example in group]
    except (TunelabError, OSError):
        return [SAMPLE], "a sample (the run's data could not be read)"
    found = [e["messages"] for e in examples if isinstance(e.get("messages"), list)][:TEMPLATE_EXAMPLES]
    return (found, f"the run's data ({data.label})") if found else ([SAMPLE], "a sample (no conversations in the data)")


def _prompt(messages: list[dict]) -> list[dict]:
    """The messages before the first answer of a training conversation (what the model learned to answer)."""
    first = next((i for i, m in enumerate(messages) if m["role"] == "assistant"), None)
    return messages[:first] if first else PROMPT


def _generation_eos(folder: Path) -> list[int]:
    path = folder / "generation_config.json"
    if not path.is_file():
        return []
    return config_eos_ids(json.loads(path.read_text(encoding="utf-8")))


def _is_causal_lm(config) -> bool:
    return any(name.endswith("ForCausalLM") for name in (config.architectures or []))


def _ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def _name(tokenizer, token_id: int) -> str:
    return f"{tokenizer.convert_ids_to_tokens(token_id)} ({token_id})"
