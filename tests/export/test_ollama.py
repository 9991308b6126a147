"""The Modelfile of `tunelab export --ollama`: for every family stand-in (tokenizers carrying the published chat
templates of tests/assets/templates), its Go template, rendered the way Ollama renders it, gives exactly the text
the tokenizer's template gives a multi-turn conversation; its stops are the family's end-of-turn tokens; and a
Modelfile without one is flagged. The Go-template renderer itself is checked on Go's own semantics."""
import pytest
from family_models import STANDS, TEMPLATES as TEMPLATE_DIR, build_tokenizer

from tunelab.export.gotemplate import TemplateError, render
from tunelab.export.ollama import TEMPLATES, check_modelfile, read_modelfile, stops, write_modelfile

WRITTEN = [name for name in STANDS if STANDS[name].family in TEMPLATES]


def _tokenizer(name: str):
    stand = STANDS[name]
    return build_tokenizer(stand, (TEMPLATE_DIR / f"{stand.template}.jinja").read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", WRITTEN)
def test_the_modelfile_renders_conversations_as_the_model_was_trained(name, tmp_path):
    tokenizer, family = _tokenizer(name), STANDS[name].family
    path = write_modelfile(tmp_path / "model.gguf", tokenizer, family, 4096, None)
    results = {check.name: check for check in check_modelfile(path, tokenizer, family)}
    assert results["ollama template"].ok, results["ollama template"].detail
    assert results["ollama stops"].ok and STANDS[name].end_of_turn in read_modelfile(path).stops
    text = path.read_text()
    assert text.startswith("# written by tunelab") and "FROM ./model.gguf" in text and "PARAMETER num_ctx 4096" in text


def test_every_family_with_a_stand_in_has_an_ollama_template_or_is_named_here():
    without = {STANDS[name].family for name in STANDS} - set(TEMPLATES)
    assert without <= {"deepseek-r1"}, without   # its template drops <think> from earlier answers: no Go equivalent


def test_a_modelfile_without_the_end_of_turn_stop_is_flagged(tmp_path):
    tokenizer = _tokenizer("llama3")
    path = write_modelfile(tmp_path / "model.gguf", tokenizer, "llama3", 4096, 0.6)
    path.write_text("\n".join(line for line in path.read_text().splitlines() if "<|eot_id|>" not in line
                              or not line.startswith("PARAMETER stop")) + "\n")
    results = {check.name: check for check in check_modelfile(path, tokenizer, "llama3")}
    assert not results["ollama stops"].ok and "<|eot_id|>" in results["ollama stops"].detail
    assert "<|eot_id|>" in stops("llama3", tokenizer)


def test_a_template_that_renders_otherwise_is_flagged(tmp_path):
    tokenizer = _tokenizer("chatml")
    path = write_modelfile(tmp_path / "model.gguf", tokenizer, "chatml", 4096, None)
    path.write_text(path.read_text().replace("<|im_start|>assistant\n{{ end }}", "<|im_start|>assistant{{ end }}"))
    results = {check.name: check for check in check_modelfile(path, tokenizer, "chatml")}
    assert not results["ollama template"].ok and "trained on" in results["ollama template"].detail


def test_go_template_semantics():
    data = {"Messages": [{"Role": "user", "Content": "a"}, {"Role": "assistant", "Content": "b"}], "System": ""}
    assert render("{{- range $i, $m := .Messages }} {{ $i }}:{{ $m.Role }}{{ end -}}  !", data) == " 0:user 1:assistant!"
    assert render('{{ if eq .System "" }}none{{ else if .System }}x{{ else }}y{{ end }}', data) == "none"
    assert render("{{ len (slice .Messages 1) }}{{ len (index .Messages 0) }}", data) == "12"
    assert render('{{ $x := "p" }}{{ range .Messages }}{{ $x = .Content }}{{ end }}{{ $x }}', data) == "b"
    assert render('{{ and 1 "" }}|{{ or "" "z" }}|{{ not "" }}', data) == "|z|True"
    with pytest.raises(TemplateError, match="unknown word"):
        render("{{ printf .System }}", data)
    with pytest.raises(TemplateError, match="not closed"):
        render("{{ if .System }}x", data)


@pytest.fixture(scope="module")
def llama3_export(tmp_path_factory):
    """A tiny Llama 3 stand-in (answers end with <|eot_id|>, EOS is <|end_of_text|>) exported with its Modelfile."""
    from family_models import build_model_dir

    from tunelab.export import export_gguf

    folder = tmp_path_factory.mktemp("llama3")
    build_model_dir(STANDS["llama3"], folder / "model")
    result = export_gguf(str(folder / "model"), folder / "out" / "llama3.gguf", "f16", ollama=True)
    return result.path


def test_check_reads_a_gguf_and_its_modelfile(llama3_export):
    from tunelab.export import failed, format_table
    from tunelab.export.gguf_checks import check_gguf

    results = check_gguf(llama3_export)
    names = {check.name for check in results}
    assert {"gguf chat template", "gguf end of turn", "ollama template", "ollama stops"} <= names
    assert not failed(results), format_table(results)
    assert "<|eot_id|>" in next(check.detail for check in results if check.name == "gguf end of turn")


def test_check_flags_a_modelfile_that_lost_its_stop(llama3_export, tmp_path):
    import shutil

    from tunelab.export.gguf_checks import check_gguf

    copy = tmp_path / "llama3.gguf"
    shutil.copy(llama3_export, copy)
    text = (llama3_export.parent / "Modelfile").read_text()
    (tmp_path / "Modelfile").write_text(text.replace('PARAMETER stop "<|eot_id|>"\n', ""))
    stops = next(check for check in check_gguf(copy) if check.name == "ollama stops")
    assert not stops.ok and "<|eot_id|>" in stops.detail


def test_check_flags_a_gguf_whose_end_of_turn_is_not_a_stop_token(tmp_path, monkeypatch):
    from family_models import build_model_dir

    from tunelab.export import export_gguf
    from tunelab.export.gguf_checks import check_gguf

    import gguf

    build_model_dir(STANDS["llama3"], tmp_path / "model")
    monkeypatch.setattr(gguf.GGUFWriter, "add_eot_token_id", lambda self, token_id: None)  # an exporter that forgets
    path = export_gguf(str(tmp_path / "model"), tmp_path / "out" / "x.gguf", "f16").path
    end = next(check for check in check_gguf(path) if check.name == "gguf end of turn")
    assert not end.ok and "run past the end of a turn" in end.detail


def test_the_check_command_takes_a_gguf(llama3_export, capsys):
    import argparse

    from tunelab.cli import check as check_cli

    parser = argparse.ArgumentParser()
    check_cli.add_parser(parser)
    assert check_cli.run(parser.parse_args([str(llama3_export)])) == 0
    assert "ollama stops" in capsys.readouterr().out
