import pytest

from tunelab.data.stops import stop_token_ids
from tunelab.data.templates import TEMPLATES, render_conversation, resolve_template
from tunelab.errors import TunelabError

CONVERSATION = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]


def test_default_is_the_tokenizers_own_template(tiny_tokenizer):
    assert resolve_template(tiny_tokenizer, None) == tiny_tokenizer.chat_template


def test_tokenizer_template_injects_its_default_system_prompt(tiny_tokenizer):
    text = render_conversation(tiny_tokenizer, CONVERSATION)
    assert text.startswith("<|im_start|>system\nYou are a tiny test assistant.<|im_end|>\n")
    assert text.endswith("<|im_start|>assistant\nHello!<|im_end|>\n")


def test_generation_prompt_is_a_prefix_of_the_trained_text(tiny_tokenizer):
    prompt = render_conversation(tiny_tokenizer, CONVERSATION[:1], add_generation_prompt=True)
    assert render_conversation(tiny_tokenizer, CONVERSATION).startswith(prompt)


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_fallback_templates_render_every_turn(tiny_tokenizer, name):
    tokenizer = _with_template(tiny_tokenizer, resolve_template(tiny_tokenizer, name))
    messages = [{"role": "system", "content": "Be brief."}, *CONVERSATION,
                {"role": "user", "content": "Again"}, {"role": "assistant", "content": "Sure."}]
    text = render_conversation(tokenizer, messages)
    for message in messages:
        assert message["content"] in text


def test_unknown_template_suggests_a_name(tiny_tokenizer):
    with pytest.raises(TunelabError, match=r"data.template: unknown template 'chatm'.*did you mean 'chatml'"):
        resolve_template(tiny_tokenizer, "chatm")


def test_stop_tokens_include_eos(tiny_tokenizer):
    assert tiny_tokenizer.eos_token_id in stop_token_ids(tiny_tokenizer)


def _with_template(tokenizer, template):
    import copy

    clone = copy.deepcopy(tokenizer)
    clone.chat_template = template
    return clone
