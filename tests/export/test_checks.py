"""Export checks: pass on a merged run, fail on a directory broken the ways exports break (a generation config
that does not stop at end of turn, a template other than training's, tunelab's attention in config.json)."""
import argparse
import json
import shutil

import pytest

from tunelab.cli import check as check_cli
from tunelab.export import CheckResult, failed, format_table, run_checks
from tunelab.runs import find_run

CHAT_NAMES = ["plain config", "end of turn", "generation eos", "tokenizer eos"]


@pytest.fixture()
def broken(merged_dir, tmp_path):
    """A copy of the merged model to break."""
    return shutil.copytree(merged_dir, tmp_path / "broken")


def _by_name(results: list[CheckResult]) -> dict[str, CheckResult]:
    return {r.name: r for r in results}


def test_checks_pass_on_a_merged_run(merged_dir, lora_run):
    results = run_checks(merged_dir, find_run(str(lora_run)))
    assert [r.name for r in results] == [*CHAT_NAMES, "chat template", "stops on its own"]
    assert not failed(results), format_table(results)
    assert "1 conversations" not in _by_name(results)["chat template"].detail  # several examples compared
    stops = _by_name(results)["stops on its own"]
    assert not stops.blocking and stops.status in ("ok", "warn") and stops.detail  # a tiny model may ramble


def test_checks_of_a_plain_dir_need_no_run(merged_dir):
    results = run_checks(merged_dir, generate=False)
    assert [r.name for r in results] == CHAT_NAMES and not failed(results)
    assert "<|im_end|>" in _by_name(results)["end of turn"].detail


def test_a_generation_config_that_does_not_stop_at_end_of_turn_fails(broken):
    path = broken / "generation_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "eos_token_id": 0}))  # <|endoftext|>
    results = _by_name(run_checks(broken, generate=False))
    assert failed(list(results.values()))
    assert results["generation eos"].status == "FAIL" and "<|im_end|>" in results["generation eos"].detail


def test_a_template_other_than_trainings_fails(broken, lora_run):
    from tunelab.data.templates import CHATML

    (broken / "chat_template.jinja").write_text(CHATML)  # drops the default system prompt training rendered
    results = _by_name(run_checks(broken, find_run(str(lora_run)), generate=False))
    assert results["chat template"].status == "FAIL" and results["end of turn"].ok


def test_tunelab_attention_in_config_fails(broken):
    path = broken / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "attn_implementation": "tunelab_packed"}))
    results = _by_name(run_checks(broken, generate=False))
    assert results["plain config"].status == "FAIL"


def test_a_tokenizer_eos_other_than_end_of_turn_only_warns(broken):
    path = broken / "tokenizer_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "eos_token": "<|endoftext|>"}))
    results = run_checks(broken, generate=False)
    assert _by_name(results)["tokenizer eos"].status == "warn" and not failed(results)


def test_a_tokenizer_without_chat_template_fails(broken):
    (broken / "chat_template.jinja").unlink()
    results = run_checks(broken)
    assert results[-1].name == "chat template" and results[-1].status == "FAIL"


def test_table_lists_status_name_and_detail():
    table = format_table([CheckResult("a", True, "fine"), CheckResult("longer", False, "bad"),
                          CheckResult("b", False, "hmm", blocking=False)])
    assert table.splitlines() == ["ok    a       fine", "FAIL  longer  bad", "warn  b       hmm"]


@pytest.mark.parametrize("target, code", [("merged", 0), ("broken", 1), ("run", 0)])
def test_check_command_exit_code(target, code, merged_dir, broken, lora_run, capsys):
    if target == "broken":
        (broken / "generation_config.json").write_text(json.dumps({"eos_token_id": 0}))
    folder = {"merged": merged_dir, "broken": broken, "run": lora_run}[target]
    parser = argparse.ArgumentParser()
    check_cli.add_parser(parser)
    assert check_cli.run(parser.parse_args([str(folder)])) == code
    assert "generation eos" in capsys.readouterr().out
