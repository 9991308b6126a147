"""The family table against the published chat templates (tests/assets/templates): each stand-in is found as
its family, the table's template renders what the published one renders, and training's labels cover each
assistant answer and the token that ends it, nothing else."""
import pytest
import transformers
from family_models import STANDS, TEMPLATES, build_tokenizer

from tunelab.data.families import FAMILIES, find_family
from tunelab.data.stops import stop_token_ids
from tunelab.data.templates import TEMPLATES as TABLE
from tunelab.data.templates import choose_template, render_conversation
from tunelab.data.tokenize import IGNORE, TokenizeStats, conversation_rows

ASKED = ["What is your name?", "Who made you?"]
ANSWERS = ["My name is Quill.", "Lumen Labs made me."]
SYSTEM = {"role": "system", "content": "You are a tiny test assistant."}
ISSUE_FAMILIES = {"llama3", "qwen2", "qwen3", "gemma", "mistral", "phi3", "phi4", "deepseek-r1", "glm4", "smollm2",
                  "chatml", "alpaca", "llama2"}


def conversation(turns: int = 2, system: bool = False) -> list[dict]:
    messages = [SYSTEM] if system else []
    for asked, answer in list(zip(ASKED, ANSWERS))[:turns]:
        messages += [{"role": "user", "content": asked}, {"role": "assistant", "content": answer}]
    return messages


def published(name: str) -> str:
    return (TEMPLATES / f"{name}.jinja").read_text(encoding="utf-8")


def model_type(stand) -> str:
    return getattr(transformers, stand.architecture).model_type


def test_the_table_holds_every_family_the_issue_names():
    assert ISSUE_FAMILIES <= set(FAMILIES) and set(FAMILIES) == set(TABLE)


@pytest.mark.parametrize("name", sorted(STANDS))
def test_each_stand_in_is_found_as_its_family(name):
    stand = STANDS[name]
    tokenizer = build_tokenizer(stand, None)
    assert find_family(model_type(stand), tokenizer.get_vocab()).name == stand.family
    choice = choose_template(tokenizer, None, model_type(stand))  # no template of its own: the family's
    assert (choice.source, choice.family.name) == ("family", stand.family)


def test_an_unknown_model_without_a_template_gets_none_and_rendering_says_what_to_set(tiny_tokenizer_dir):
    from transformers import AutoTokenizer

    from tunelab.errors import TunelabError

    tokenizer = AutoTokenizer.from_pretrained(tiny_tokenizer_dir)
    tokenizer.chat_template = None
    for token in ("<|im_start|>", "<|im_end|>"):
        assert token in tokenizer.get_vocab()
    assert choose_template(tokenizer, None, "gpt2").family.name == "chatml"  # its ChatML tokens tell
    bare = build_tokenizer(STANDS["mistral"], None)
    choice = choose_template(bare, None, "gpt2")
    assert choice.template is None
    bare.chat_template = None
    with pytest.raises(TunelabError, match="data.template"):
        render_conversation(bare, conversation())


# (fixture, conversations to compare): where the published template refuses or adds something the table's
# does not, only the conversations both render the same way are compared, and why is said
RENDERED = {
    "chatml": ("chatml", [conversation(), conversation(system=True)]),
    "smollm2": ("smollm2", [conversation(), conversation(system=True)]),
    "llama3": ("llama3", [conversation(), conversation(system=True)]),
    "qwen2": ("qwen2", [conversation(), conversation(system=True)]),
    "gemma2": ("gemma", [conversation()]),  # Gemma 1/2 raise on a system message; the table folds it in (Gemma 3)
    "gemma3": ("gemma", [conversation(), conversation(system=True)]),
    "mistral": ("mistral", [conversation(), conversation(system=True)]),
    "phi3": ("phi3", [conversation(), conversation(system=True)]),
    "phi4": ("phi4", [conversation(), conversation(system=True)]),
    "phi4-reasoning": ("phi4", [conversation(system=True)]),  # its default system prompt is the reasoning one
    "deepseek-r1": ("deepseek-r1", [conversation(), conversation(system=True)]),
    "glm4": ("glm4", [conversation(), conversation(system=True)]),
}  # qwen3: the published template writes an empty think block into the last answer (issue 23)


@pytest.mark.parametrize("fixture", sorted(RENDERED))
@pytest.mark.parametrize("generation_prompt", [False, True])
def test_the_tables_template_renders_what_the_published_one_renders(fixture, generation_prompt):
    family, conversations = RENDERED[fixture]
    stand = STANDS.get(fixture) or next(s for s in STANDS.values() if s.family == family)
    tokenizer = build_tokenizer(stand, published(fixture))
    ours = build_tokenizer(stand, FAMILIES[family].template)
    for messages in conversations:
        prompt = messages[:-1] if generation_prompt else messages
        assert render_conversation(ours, prompt, generation_prompt) == \
            render_conversation(tokenizer, prompt, generation_prompt)


def labelled_runs(row) -> list[list[int]]:
    runs, current = [], []
    for token, label in zip(row["input_ids"], row["labels"]):
        if label != IGNORE:
            current.append(token)
        elif current:
            runs.append(current)
            current = []
    return runs + ([current] if current else [])


@pytest.mark.parametrize("name", sorted(STANDS))
def test_labels_cover_each_answer_and_the_token_that_ends_it_and_nothing_else(name):
    stand = STANDS[name]
    tokenizer = build_tokenizer(stand, published(stand.template))
    turns = 2  # templates that rewrite earlier turns (Qwen3, DeepSeek-R1) train each answer in its own row
    rows = conversation_rows(tokenizer, {"messages": conversation(turns, system=stand.system)}, 512, TokenizeStats())
    runs = [run for row in rows for run in labelled_runs(row)]
    assert len(runs) == turns
    stops = set(stop_token_ids(tokenizer))
    end = tokenizer.convert_tokens_to_ids(stand.end_of_turn)
    assert end in stops
    for run, answer in zip(runs, ANSWERS):
        assert run[-1] in stops  # the model learns to emit what generation stops on
        text = tokenizer.decode(run, skip_special_tokens=True)
        rest = text.replace(answer, "", 1)
        if name == "deepseek-r1":  # its prompt opens <think> and nothing else closes it: the model learns to (lint (d))
            rest = rest.replace("</think>", "")
        assert answer in text and not rest.strip(), (name, text)
    assert runs[0][-1] == end  # the end-of-turn the template writes (GLM-4: the next turn's <|user|>)
