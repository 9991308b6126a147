"""`tunelab check FILE.gguf`: what llama.cpp and Ollama will do with an exported file, read from the file itself
(and the Modelfile beside it): the token that ends a trained answer is one llama.cpp stops on (EOS or the
end-of-turn id in the metadata), the file carries a chat template (the run's, when the run is given), and the
Modelfile renders and stops as the model was trained."""
from __future__ import annotations

from pathlib import Path

from tunelab.errors import TunelabError
from tunelab.export.checks import CheckResult


def _field(reader, key: str):
    field = reader.fields.get(key)
    return field.contents() if field is not None else None


def check_gguf(path: Path, run_tokenizer=None) -> list[CheckResult]:
    from gguf import GGUFReader
    from transformers import AutoTokenizer

    from tunelab.data.families import find_family
    from tunelab.data.stops import end_of_turn_id

    if not path.is_file():
        raise TunelabError(f"{path}: no such file")
    try:
        reader = GGUFReader(path)
    except Exception as exc:  # gguf raises ValueError/struct errors on a file that is not GGUF
        raise TunelabError(f"{path}: not a GGUF file ({exc})") from None
    template = _field(reader, "tokenizer.chat_template")
    tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    results = [CheckResult("gguf chat template", bool(template), "the file carries a chat template" if template
                           else "no chat template in the file: runtimes fall back to a guess")]
    if run_tokenizer is not None:
        same = template == run_tokenizer.chat_template
        results.append(CheckResult("gguf template is the run's", same, "equal to the run's tokenizer template"
                                   if same else "the file's chat template differs from the run's"))
    stopping = {_field(reader, f"tokenizer.ggml.{name}_token_id") for name in ("eos", "eot", "eom")} - {None}
    end = end_of_turn_id(tokenizer) if template else None
    if end is not None:
        text = tokenizer.convert_ids_to_tokens(end)
        ok = end in stopping
        results.append(CheckResult("gguf end of turn", ok, f"{text} (id {end}) ends an answer and is EOS/EOT in the "
                                   "metadata" if ok else f"{text} (id {end}) ends an answer but is neither EOS nor "
                                   "EOT in the metadata: llama.cpp would run past the end of a turn"))
    modelfile = path.with_name("Modelfile")
    if modelfile.is_file():
        from tunelab.export.ollama import check_modelfile

        architecture = _field(reader, "general.architecture")
        family = find_family(architecture, tokenizer.get_vocab())
        results += check_modelfile(modelfile, tokenizer, family.name if family else None)
    return results
