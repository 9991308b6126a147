"""data.prefer_tokenizer_template: a named family takes the tokenizer's own template when the model is of it (how
LLaMA-Factory and axolotl template names are translated), the family table's otherwise."""
from family_models import STANDS, TEMPLATES, build_tokenizer

from tunelab.data.families import FAMILIES
from tunelab.data.templates import choose_template

OWN = "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"


def test_same_family_takes_the_tokenizers_own():
    tokenizer = build_tokenizer(STANDS["qwen3"], OWN)
    choice = choose_template(tokenizer, "qwen3", "qwen3", prefer_tokenizer=True)
    assert choice.source == "tokenizer" and choice.template == OWN and choice.family.name == "qwen3"


def test_without_the_switch_the_named_family_wins():
    tokenizer = build_tokenizer(STANDS["qwen3"], OWN)
    choice = choose_template(tokenizer, "qwen3", "qwen3")
    assert choice.source == "data.template" and choice.template == FAMILIES["qwen3"].template


def test_another_family_or_no_own_template_takes_the_table():
    tokenizer = build_tokenizer(STANDS["qwen3"], OWN)
    choice = choose_template(tokenizer, "llama3", "qwen3", prefer_tokenizer=True)
    assert choice.source == "data.template" and choice.template == FAMILIES["llama3"].template
    bare = build_tokenizer(STANDS["llama3"], None)
    choice = choose_template(bare, "llama3", "llama", prefer_tokenizer=True)
    assert choice.source == "data.template"


def test_published_template_of_the_family_is_kept():
    published = (TEMPLATES / "llama3.jinja").read_text(encoding="utf-8")
    tokenizer = build_tokenizer(STANDS["llama3"], published)
    choice = choose_template(tokenizer, "llama3", "llama", prefer_tokenizer=True)
    assert choice.source == "tokenizer" and choice.template == published
