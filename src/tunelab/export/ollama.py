"""`tunelab export --ollama`: a Modelfile beside the GGUF, so `ollama create NAME -f Modelfile` gives a model that
formats conversations as the run was trained and stops where its turns end.

Ollama templates are Go templates over the conversation's `.Messages`; one is kept here per chat family
(tunelab.data.families), written to render system/user/assistant conversations exactly as that family's chat
template does, and checked by rendering them (tunelab.export.gotemplate) against the tokenizer's own template.
A family's default system prompt (SmolLM2, Qwen2.5) becomes the Modelfile's SYSTEM, which Ollama puts first when
a conversation has no system message; a run's own system prompt replaces it. `stop` parameters are the family's
end-of-turn tokens and the tokenizer's EOS. BOS is not in the templates: llama.cpp adds it (the GGUF says so).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tunelab.errors import TunelabError
from tunelab.export.checks import CheckResult
from tunelab.export.gotemplate import TemplateError, render

LAST = "{{- $last := eq (len (slice $.Messages $i)) 1 }}"


def _chatml(separator: str = "\n", after: str = "\n") -> str:
    return ("{{- range $i, $_ := .Messages }}" + LAST +
            "<|im_start|>{{ .Role }}" + separator + "{{ .Content }}"
            "{{ if or (ne .Role \"assistant\") (not $last) }}<|im_end|>" + after + "{{ end }}"
            "{{- if and (ne .Role \"assistant\") $last }}GENERATION_PROMPT{{ end }}"
            "{{- end }}")


@dataclass(frozen=True)
class OllamaFamily:
    """A Go template with two blanks filled from the tokenizer: EOS_TOKEN, and GENERATION_PROMPT, what the
    tokenizer's template writes to open the assistant's turn (templates of one family differ there: Qwen3's
    thinking variants open a <think> block), `generation` when that cannot be found."""
    template: str
    generation: str = ""
    default_system: str | None = None


TEMPLATES: dict[str, OllamaFamily] = {
    "chatml": OllamaFamily(_chatml(), "<|im_start|>assistant\n"),
    "smollm2": OllamaFamily(_chatml(), "<|im_start|>assistant\n",
                            "You are a helpful AI assistant named SmolLM, trained by Hugging Face"),
    "qwen2": OllamaFamily(_chatml(), "<|im_start|>assistant\n",
                          "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."),
    "qwen3": OllamaFamily(_chatml(), "<|im_start|>assistant\n"),
    "phi4": OllamaFamily(_chatml("<|im_sep|>", ""), "<|im_start|>assistant<|im_sep|>"),
    "llama3": OllamaFamily(
        "{{- range $i, $_ := .Messages }}" + LAST +
        "<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n{{ .Content }}"
        "{{ if or (ne .Role \"assistant\") (not $last) }}<|eot_id|>{{ end }}"
        "{{- if and (ne .Role \"assistant\") $last }}GENERATION_PROMPT{{ end }}"
        "{{- end }}", "<|start_header_id|>assistant<|end_header_id|>\n\n"),
    "gemma": OllamaFamily(   # no system role: the system text opens the first user turn
        "{{- $system := \"\" }}{{- range $i, $_ := .Messages }}" + LAST +
        "{{- if eq .Role \"system\" }}{{ $system = .Content }}"
        "{{- else if eq .Role \"user\" }}<start_of_turn>user\n{{ if $system }}{{ $system }}\n\n{{ end }}"
        "{{- $system = \"\" }}{{ .Content }}<end_of_turn>\n{{ if $last }}GENERATION_PROMPT{{ end }}"
        "{{- else }}<start_of_turn>model\n{{ .Content }}{{ if not $last }}<end_of_turn>\n{{ end }}"
        "{{- end }}{{- end }}", "<start_of_turn>model\n"),
    "mistral": OllamaFamily(
        "{{- $system := \"\" }}{{- range $i, $_ := .Messages }}" + LAST +
        "{{- if eq .Role \"system\" }}{{ $system = .Content }}"
        "{{- else if eq .Role \"user\" }} [INST] {{ if $system }}{{ $system }}\n\n{{ end }}{{- $system = \"\" }}"
        "{{ .Content }} [/INST]"
        "{{- else }} {{ .Content }}{{ if not $last }}EOS_TOKEN{{ end }}{{- end }}{{- end }}"),
    "phi3": OllamaFamily(
        "{{- range $i, $_ := .Messages }}" + LAST +
        "{{- if eq .Role \"assistant\" }}{{ .Content }}{{ if not $last }}<|end|>\n{{ end }}"
        "{{- else }}<|{{ .Role }}|>\n{{ .Content }}<|end|>\n{{ if eq .Role \"user\" }}<|assistant|>\n{{ end }}"
        "{{- end }}{{- end }}"),
    "glm4": OllamaFamily(
        "[gMASK]<sop>{{- range $i, $_ := .Messages }}" + LAST +
        "<|{{ .Role }}|>\n{{ .Content }}"
        "{{- if and (ne .Role \"assistant\") $last }}GENERATION_PROMPT{{ end }}{{- end }}", "<|assistant|>"),
    "alpaca": OllamaFamily(
        "{{- range $i, $_ := .Messages }}" + LAST +
        "{{- if eq .Role \"system\" }}{{ .Content }}\n\n"
        "{{- else if eq .Role \"user\" }}### Instruction:\n{{ .Content }}\n\n"
        "{{- if $last }}GENERATION_PROMPT{{ end }}"
        "{{- else }}### Response:\n{{ .Content }}{{ if not $last }}EOS_TOKEN\n\n{{ end }}{{- end }}{{- end }}",
        "### Response:\n"),
}


def ollama_family(name: str | None) -> OllamaFamily:
    if name is None or name not in TEMPLATES:
        known = ", ".join(TEMPLATES)
        raise TunelabError(f"--ollama: no Ollama template for the chat family {name!r} (written for: {known}); "
                           "set data.template to one of them or leave --ollama out")
    return TEMPLATES[name]


def modelfile_template(family: OllamaFamily, tokenizer) -> str:
    """The family's template for this tokenizer. BOS is written as text only where the template writes it and
    the tokenizer does not add it (then neither does llama.cpp: the GGUF's add_bos_token says so)."""
    from tunelab.export.gguf_vocab import adds_token

    template = (family.template.replace("EOS_TOKEN", tokenizer.eos_token or "")
                .replace("GENERATION_PROMPT", generation_prompt(tokenizer) or family.generation))
    if writes_bos(tokenizer) and not adds_token(tokenizer, tokenizer.bos_token_id, first=True):
        template = tokenizer.bos_token + template
    return template


def writes_bos(tokenizer) -> bool:
    """The template opens with the BOS token (not merely with the same text: SmolLM2's BOS is <|im_start|>)."""
    from tunelab.data.templates import render_conversation

    if "bos_token" not in (tokenizer.chat_template or ""):
        return False
    try:
        text = render_conversation(tokenizer, [{"role": "user", "content": "Hi"}])
    except Exception:
        return False
    return bool(tokenizer.bos_token) and text.startswith(tokenizer.bos_token)


def generation_prompt(tokenizer) -> str | None:
    """What the tokenizer's template adds to open the assistant's turn after a user message."""
    from tunelab.data.templates import render_conversation

    asked = [{"role": "user", "content": "Hi"}]
    try:
        closed = render_conversation(tokenizer, asked)
        opened = render_conversation(tokenizer, asked, add_generation_prompt=True)
    except Exception:  # a template that refuses this conversation: the family's own opening
        return None
    return opened[len(closed):] if opened.startswith(closed) and len(opened) > len(closed) else None


def stops(family_name: str, tokenizer) -> list[str]:
    """Where Ollama must stop: the family's end-of-turn tokens and the tokenizer's EOS, each once."""
    from tunelab.data.families import FAMILIES

    tokens = list(FAMILIES[family_name].end_of_turn) if family_name in FAMILIES else []
    if tokenizer.eos_token:
        tokens.append(tokenizer.eos_token)
    return list(dict.fromkeys(token for token in tokens if token in tokenizer.get_vocab()))


def write_modelfile(gguf_path: Path, tokenizer, family_name: str, context: int, temperature: float | None) -> Path:
    family = ollama_family(family_name)
    template = modelfile_template(family, tokenizer)
    system = family.default_system
    for text, what in ((template, "template"), (system or "", "system prompt")):
        if '"""' in text:
            raise TunelabError(f"--ollama: the {what} contains three double quotes, which a Modelfile cannot hold")
    lines = [f"# written by tunelab export ({family_name} chat family)", f"FROM ./{gguf_path.name}",
             f'TEMPLATE """{template}"""']
    if system:
        lines.append(f'SYSTEM """{system}"""')
    lines += [f'PARAMETER stop "{_quoted(stop)}"' for stop in stops(family_name, tokenizer)]
    lines.append(f"PARAMETER num_ctx {context}")
    if temperature is not None:
        lines.append(f"PARAMETER temperature {temperature}")
    path = gguf_path.with_name("Modelfile")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _quoted(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


@dataclass
class Modelfile:
    template: str
    system: str | None
    stops: list[str]
    parameters: dict[str, str]


def read_modelfile(path: Path) -> Modelfile:
    """The parts of a Modelfile tunelab writes (TEMPLATE, SYSTEM, PARAMETER), as Ollama reads them."""
    import re

    text = path.read_text(encoding="utf-8")
    blocks = dict(re.findall(r'^(TEMPLATE|SYSTEM) """(.*?)"""', text, re.S | re.M))
    parameters, found_stops = {}, []
    for name, value in re.findall(r'^PARAMETER (\w+) (.*)$', text, re.M):
        if name == "stop":
            found_stops.append(value.strip().strip('"').replace('\\"', '"').replace("\\\\", "\\"))
        else:
            parameters[name] = value.strip()
    if "TEMPLATE" not in blocks:
        raise TunelabError(f"{path}: no TEMPLATE in this Modelfile")
    return Modelfile(blocks["TEMPLATE"], blocks.get("SYSTEM"), found_stops, parameters)


def ollama_prompt(modelfile: Modelfile, messages: list[dict]) -> str:
    """What Ollama renders for `messages`: SYSTEM first when they have no system message, then the template."""
    if modelfile.system and not any(message["role"] == "system" for message in messages):
        messages = [{"role": "system", "content": modelfile.system}] + messages
    return render(modelfile.template, {"Messages": [{"Role": m["role"], "Content": m["content"]} for m in messages]})


CONVERSATIONS = (
    [{"role": "system", "content": "You answer briefly."}, {"role": "user", "content": "What is six times seven?"},
     {"role": "assistant", "content": "42."}, {"role": "user", "content": "And seven times eight?"}],
    [{"role": "user", "content": "What is six times seven?"}, {"role": "assistant", "content": "42."},
     {"role": "user", "content": "And seven times eight?"}],
)


def check_modelfile(path: Path, tokenizer, family_name: str | None) -> list[CheckResult]:
    """The Modelfile renders multi-turn conversations (with and without a system message, where the tokenizer's
    template takes one) as the tokenizer's chat template does, and stops on every end-of-turn token."""
    from tunelab.data.templates import render_conversation

    from tunelab.export.gguf_vocab import adds_token

    modelfile, problems, compared = read_modelfile(path), [], 0
    adds_bos = adds_token(tokenizer, tokenizer.bos_token_id, first=True)
    for conversation in CONVERSATIONS:
        effective = conversation
        if modelfile.system and not any(m["role"] == "system" for m in conversation):
            effective = [{"role": "system", "content": modelfile.system}] + conversation
        try:
            expected = render_conversation(tokenizer, effective, add_generation_prompt=True)
        except Exception:  # the template refuses this conversation (e.g. no system role): Ollama need not match
            continue
        if adds_bos and expected.startswith(tokenizer.bos_token):
            expected = expected[len(tokenizer.bos_token):]   # llama.cpp adds it, as the GGUF says
        compared += 1
        try:
            rendered = ollama_prompt(modelfile, conversation)
        except TemplateError as exc:
            problems.append(str(exc))
            continue
        if rendered != expected:
            problems.append(f"renders {rendered!r} where the model was trained on {expected!r}")
    missing = [stop for stop in stops(family_name, tokenizer) if stop not in modelfile.stops] if family_name else []
    return [
        CheckResult("ollama template", compared > 0 and not problems,
                    problems[0] if problems else (f"renders {compared} sample conversations as the tokenizer's chat "
                                                  "template does" if compared else "no sample conversation renders "
                                                  "with the tokenizer's template")),
        CheckResult("ollama stops", not missing, "stops on " + ", ".join(modelfile.stops) if not missing
                    else f"no stop parameter for {', '.join(missing)}: Ollama would run past the end of a turn"),
    ]
