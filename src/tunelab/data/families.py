"""What tunelab knows per model family: how an assistant turn ends, which roles exist, thinking and tool-call
markers, and the template to use when a tokenizer has none.

The tokenizer's own chat template always wins when it has one: the table only fills in what the tokenizer
lacks (a template for a base model, the end-of-turn tokens a generator must stop on). A family is found from
`config.model_type` and the special tokens in the vocabulary (Qwen2.5 and DeepSeek-R1-Distill-Qwen share
`qwen2`; Llama 3, SmolLM2 and DeepSeek-R1-Distill-Llama share `llama`), and `data.template` names one
explicitly. The templates below are written from each family's published chat template, reduced to what
system/user/assistant conversations need; tests/assets/templates holds the published ones they are checked
against, with their sources.
"""
from __future__ import annotations

from dataclasses import dataclass

from tunelab.registry import Registry


@dataclass(frozen=True)
class Family:
    name: str
    template: str                        # Jinja, used when the tokenizer has none (or data.template names it)
    end_of_turn: tuple[str, ...] = ()    # tokens that end an assistant turn, beyond the tokenizer's EOS
    special_tokens: tuple[str, ...] = ()  # tokens the template writes that must be single special tokens
    model_types: tuple[str, ...] = ()    # config.model_type values it is found from
    markers: tuple[str, ...] = ()        # vocabulary tokens that tell it apart from families of the same type
    system_role: bool = True             # False: a system message is folded into the first user turn
    think: tuple[str, str] | None = None  # reasoning markers
    tool_call: str | None = None         # how the model writes a tool call: a format of tunelab.serve.toolcalls
    description: str = ""


FAMILIES: Registry[Family] = Registry("data.template")


def add(family: Family) -> Family:
    FAMILIES[family.name] = family
    return family


def _chatml(default_system: str | None = None, separator: str = "\n", after: str = "\n") -> str:
    """ChatML; `default_system` is rendered when the conversation has no system message (SmolLM2, Qwen2.5).
    Phi-4 writes <|im_sep|> after the role and nothing after <|im_end|>."""
    system = ("{% if messages[0]['role'] != 'system' %}{{ '<|im_start|>system" + separator + default_system
              + "<|im_end|>" + after + "' }}{% endif %}") if default_system else ""
    return (system + "{% for message in messages %}"
            "{{ '<|im_start|>' + message['role'] + '" + separator + "' + message['content'] + '<|im_end|>" + after
            + "' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant" + separator + "' }}{% endif %}")


CHATML_TOKENS = ("<|im_start|>", "<|im_end|>")

add(Family("chatml", _chatml(), ("<|im_end|>",), CHATML_TOKENS, markers=CHATML_TOKENS,
           description="ChatML (<|im_start|>role ... <|im_end|>); any model type whose vocabulary has its tokens"))
add(Family("smollm2", _chatml("You are a helpful AI assistant named SmolLM, trained by Hugging Face"),
           ("<|im_end|>",), CHATML_TOKENS, model_types=("llama",), markers=("<|im_start|>", "<|im_end|>", "<repo_name>"),
           description="SmolLM2 instruct: ChatML with a default system prompt"))
add(Family("qwen2", _chatml("You are Qwen, created by Alibaba Cloud. You are a helpful assistant."),
           ("<|im_end|>", "<|endoftext|>"), CHATML_TOKENS, model_types=("qwen2", "qwen2_moe"),
           markers=("<|im_start|>",), tool_call="hermes",
           description="Qwen2 / Qwen2.5: ChatML with Qwen's default system prompt"))
add(Family("qwen3", _chatml(), ("<|im_end|>", "<|endoftext|>"), CHATML_TOKENS,
           model_types=("qwen3", "qwen3_moe"), markers=("<|im_start|>",), think=("<think>", "</think>"),
           tool_call="hermes",
           description="Qwen3: ChatML, reasoning in <think> blocks"))
add(Family("phi4", _chatml(separator="<|im_sep|>", after=""), ("<|im_end|>", "<|endoftext|>"),
           (*CHATML_TOKENS, "<|im_sep|>"), model_types=("phi3",), markers=("<|im_start|>", "<|im_sep|>"),
           description="Phi-4: ChatML with <|im_sep|> after the role"))
add(Family("llama3", (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"),
    ("<|eot_id|>", "<|eom_id|>", "<|end_of_text|>"), ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"),
    model_types=("llama",), markers=("<|eot_id|>",), tool_call="llama3-json",
    description="Llama 3.x: header tokens, <|eot_id|> after each turn"))
add(Family("gemma", (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{% set first = messages[0]['content'] + '\n\n' %}"
    "{% set messages = messages[1:] %}{% else %}{% set first = '' %}{% endif %}"
    "{% for message in messages %}{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "{{ '<start_of_turn>' + role + '\n' + (first if loop.first else '') + message['content'] | trim + '<end_of_turn>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"),
    ("<end_of_turn>",), ("<start_of_turn>", "<end_of_turn>"), model_types=("gemma", "gemma2", "gemma3", "gemma3_text"),
    markers=("<end_of_turn>",), system_role=False,
    description="Gemma 1/2/3: <start_of_turn>user|model, system folded into the first user turn"))
add(Family("mistral", (
    "{% if messages[0]['role'] == 'system' %}{% set system = messages[0]['content'] + '\n\n' %}"
    "{% set messages = messages[1:] %}{% else %}{% set system = '' %}{% endif %}{{ bos_token }}"
    "{% for message in messages %}{% if message['role'] == 'user' %}"
    "{{ ' [INST] ' + (system if loop.first else '') + message['content'] + ' [/INST]' }}"
    "{% else %}{{ ' ' + message['content'] + eos_token }}{% endif %}{% endfor %}"),
    (), ("[INST]", "[/INST]"), model_types=("mistral", "mixtral"), system_role=False,
    tool_call="mistral",
    description="Mistral / Mixtral instruct: [INST] ... [/INST] answer</s>"))
add(Family("phi3", (
    "{{ bos_token }}{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}{{ message['content'] + '<|end|>\n' }}"
    "{% else %}{{ '<|' + message['role'] + '|>\n' + message['content'] + '<|end|>\n' }}"
    "{% if message['role'] == 'user' %}{{ '<|assistant|>\n' }}{% endif %}{% endif %}{% endfor %}"),
    ("<|end|>", "<|endoftext|>"), ("<|system|>", "<|user|>", "<|assistant|>", "<|end|>"), model_types=("phi3",),
    markers=("<|end|>",), description="Phi-3 / Phi-3.5: <|user|> ... <|end|> <|assistant|> ... <|end|>"))
add(Family("deepseek-r1", (
    "{% set system = namespace(text='') %}{% for message in messages %}{% if message['role'] == 'system' %}"
    "{% set system.text = message['content'] %}{% endif %}{% endfor %}{{ bos_token + system.text }}"
    "{% for message in messages %}{% if message['role'] == 'user' %}{{ '<｜User｜>' + message['content'] }}"
    "{% elif message['role'] == 'assistant' %}{% set content = message['content'] %}"
    "{% if '</think>' in content %}{% set content = content.split('</think>')[-1] %}{% endif %}"
    "{{ '<｜Assistant｜>' + content + '<｜end▁of▁sentence｜>' }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<｜Assistant｜><think>\n' }}{% endif %}"),
    ("<｜end▁of▁sentence｜>",), ("<｜User｜>", "<｜Assistant｜>", "<｜end▁of▁sentence｜>"),
    model_types=("qwen2", "llama"), markers=("<｜User｜>", "<｜Assistant｜>"), think=("<think>", "</think>"),
    description="DeepSeek-R1 distills (Qwen and Llama bases): <｜User｜> ... <｜Assistant｜> ...<｜end▁of▁sentence｜>"))
add(Family("glm4", (
    "[gMASK]<sop>{% for message in messages %}{{ '<|' + message['role'] + '|>\n' + message['content'] }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}"),
    ("<|user|>", "<|observation|>", "<|endoftext|>"), ("[gMASK]", "<sop>", "<|system|>", "<|user|>", "<|assistant|>",
                                                        "<|observation|>"),
    model_types=("glm4", "glm"), markers=("<|user|>", "[gMASK]"),
    tool_call="glm4",
    description="GLM-4: [gMASK]<sop><|user|>\\n...<|assistant|>\\n...; a turn ends where the next <|user|> starts"))
add(Family("alpaca", (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{{ message['content'] + '\n\n' }}"
    "{% elif message['role'] == 'user' %}{{ '### Instruction:\n' + message['content'] + '\n\n' }}"
    "{% else %}{{ '### Response:\n' + message['content'] + eos_token + '\n\n' }}{% endif %}"
    "{% endfor %}{% if add_generation_prompt %}{{ '### Response:\n' }}{% endif %}"),
    description="Alpaca (### Instruction / ### Response), plain text; the answer ends with EOS"))
add(Family("llama2", (
    "{% if messages[0]['role'] == 'system' %}"
    "{% set system = '<<SYS>>\n' + messages[0]['content'] + '\n<</SYS>>\n\n' %}{% set messages = messages[1:] %}"
    "{% else %}{% set system = '' %}{% endif %}{% for message in messages %}{% if message['role'] == 'user' %}"
    "{{ bos_token + '[INST] ' + (system if loop.first else '') + message['content'] + ' [/INST]' }}"
    "{% else %}{{ ' ' + message['content'] + ' ' + eos_token }}{% endif %}{% endfor %}"),
    description="Llama 2 chat ([INST] <<SYS>> ... [/INST]); the answer ends with EOS"))


def find_family(model_type: str | None, vocab) -> Family | None:
    """The family of a model: its `config.model_type` and the special tokens its vocabulary holds. Among the
    families of that model type whose markers are all present, the one with most markers; else a family of any
    model type found by its markers alone (ChatML)."""
    def fits(family: Family) -> bool:
        return all(marker in vocab for marker in family.markers)

    typed = [family for family in FAMILIES.values() if model_type in family.model_types and fits(family)]
    generic = [family for family in FAMILIES.values() if not family.model_types and family.markers and fits(family)]
    for candidates in (typed, generic):
        if candidates:
            return max(candidates, key=lambda family: len(family.markers))
    return None


def model_family(model, tokenizer, name: str | None = None) -> Family | None:
    """`data.template`'s family when named, else the one found from the model and tokenizer."""
    if name is not None:
        return FAMILIES.get(name)
    config = getattr(model, "config", None)
    return find_family(getattr(config, "model_type", None), tokenizer.get_vocab())


def end_of_turn_tokens() -> dict[str, tuple[str, ...]]:
    """Every family's end-of-turn tokens: token -> the families that use it."""
    tokens: dict[str, list[str]] = {}
    for family in FAMILIES.values():
        for token in family.end_of_turn:
            tokens.setdefault(token, []).append(family.name)
    return {token: tuple(names) for token, names in tokens.items()}
