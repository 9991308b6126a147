"""Chat tab: a run (or a base model) answering in a streaming chat, with system prompt and temperature;
optionally the base model's answer to the same message beside it."""
from __future__ import annotations

import gradio as gr

from tunelab.errors import TunelabError
from tunelab.serve import GenerationSettings
from tunelab.ui.context import UiContext
from tunelab.ui.widgets import error_text, model_picker


class ChatTab:
    def __init__(self, ctx: UiContext):
        self.ctx = ctx

    def build(self) -> None:
        with gr.Row():
            self.model = model_picker(self.ctx, "chat-model", scale=3)
            self.temperature = gr.Slider(0, 1.5, value=0, step=0.05, label="temperature (0: greedy)",
                                         elem_id="chat-temperature", scale=1)
            self.max_new_tokens = gr.Number(128, precision=0, label="max new tokens", elem_id="chat-max-new", scale=1)
            self.side_by_side = gr.Checkbox(False, label="base model beside it", elem_id="chat-side-by-side", scale=1)
        self.system = gr.Textbox(label="system prompt", placeholder="(the template's default)", elem_id="chat-system")
        self.status = gr.HTML(elem_id="chat-status")
        with gr.Row():
            self.tuned = gr.Chatbot(label="model", elem_id="chat-tuned", height=380)
            self.base = gr.Chatbot(label="base model", elem_id="chat-base", height=380, visible=False)
        with gr.Row():
            self.message = gr.Textbox(label="message", placeholder="Ask something and press Enter", scale=5,
                                      elem_id="chat-message")
            self.send = gr.Button("Send", variant="primary", scale=1, elem_id="chat-send")
            self.clear = gr.Button("Clear", scale=1, elem_id="chat-clear")

    def wire(self, blocks) -> None:
        inputs = [self.model, self.system, self.temperature, self.max_new_tokens, self.side_by_side, self.message,
                  self.tuned, self.base]
        outputs = [self.tuned, self.base, self.message, self.status]
        self.send.click(self.answer, inputs, outputs)
        self.message.submit(self.answer, inputs, outputs)
        self.clear.click(lambda: ([], [], ""), None, [self.tuned, self.base, self.status])
        self.side_by_side.change(lambda on: gr.update(visible=on), self.side_by_side, self.base)
        self.model.change(lambda: ([], [], ""), None, [self.tuned, self.base, self.status])

    def answer(self, model, system, temperature, max_new_tokens, side_by_side, message, tuned, base):
        """Streams the model's answer into its chat, then (side by side) the base model's into the other."""
        tuned, base = list(tuned or []), list(base or [])
        message = (message or "").strip()
        if not model or not message:
            yield tuned, base, message, error_text("chat: choose a model and type a message")
            return
        settings = GenerationSettings(max(1, int(max_new_tokens or 128)), float(temperature or 0))
        path = self.ctx.model_path(model)
        chats = [(tuned, False)] + ([(base, True)] if side_by_side else [])
        for history, _ in chats:
            history += [{"role": "user", "content": message}, {"role": "assistant", "content": ""}]
        try:
            for history, as_base in chats:
                for text in self.ctx.chat.stream(path, _conversation(system, history[:-1]), settings, base=as_base):
                    history[-1] = {"role": "assistant", "content": text}
                    yield tuned, base, "", ""
        except TunelabError as exc:
            yield tuned, base, "", error_text(str(exc))


def _conversation(system: str | None, history: list[dict]) -> list[dict]:
    start = [{"role": "system", "content": system.strip()}] if system and system.strip() else []
    return start + [{"role": m["role"], "content": _content(m["content"])} for m in history]


def _content(content) -> str:
    """Gradio hands messages back with their content as text or as a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text", "") if isinstance(part, dict) else str(part) for part in content)
    return str(content)
