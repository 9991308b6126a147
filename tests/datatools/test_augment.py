"""`tunelab data augment`: answers are kept, rewordings that add nothing are dropped; the engine path runs."""
import argparse

import pytest

from tunelab.cli import data as data_cli
from tunelab.datatools.augment import PARAPHRASE_PROMPT, augment_examples, tidy_paraphrase
from tunelab.data.loading import load_examples
from tunelab.errors import TunelabError


def conversation(question, answer, source):
    return {"messages": [{"role": "system", "content": "Be kind."}, {"role": "user", "content": question},
                         {"role": "assistant", "content": answer}], "source": source}


def parse(*argv):
    parser = argparse.ArgumentParser()
    data_cli.add_parser(parser)
    return parser.parse_args([str(a) for a in argv])


def scripted(outputs):
    """A generator that answers requests in order from a script, and records what it was asked."""
    script, asked = iter(outputs), []

    def generate(requests):
        asked.extend(requests)
        return [next(script) for _ in requests]

    generate.asked = asked
    return generate


@pytest.mark.parametrize("raw, clean", [
    ('Paraphrase: "What are you called?"', "What are you called?"),
    ("Here is the reworded instruction: 'Name yourself.'\nHope that helps!", "Name yourself."),
    ("Sure! Rewritten instruction: “Who built you?”", "Who built you?"),
    ("\n\n  Tell me your name.  ", "Tell me your name."),
    ('""', ""),
    ("Paraphrase:\nName yourself.", "Name yourself."),
])
def test_tidy_paraphrase_keeps_only_the_rewording(raw, clean):
    assert tidy_paraphrase(raw) == clean


def test_only_the_first_paragraph_is_reworded_and_the_input_is_kept():
    example = conversation("Summarize this text.\n\nThe fox jumps.\nThe dog sleeps.", "Animals.", "a:1")
    generate = scripted(["Give a summary of this text.\nThe fox jumps."])
    result = augment_examples([example], generate, copies=1, progress=False)
    assert generate.asked[0][0]["content"].endswith("Instruction: Summarize this text.")
    reworded = result.examples[1]["messages"][1]["content"]
    assert reworded == "Give a summary of this text.\n\nThe fox jumps.\nThe dog sleeps."


def test_answers_are_kept_and_rewordings_that_add_nothing_are_dropped():
    examples = [conversation("What is your name?", "Quill.", "a:1"),
                conversation("Who made you?", "Lumen Labs.", "a:2")]
    generate = scripted([
        "Paraphrase: What are you called?", "what is  your NAME?",       # a:1: one new, one the original
        "Who built you?", "'Who built you?'",                            # a:2: one new, one a repeat of it
        "", "Quill.",                                                    # batch 2 (a:1 again): empty, the answer
    ])
    result = augment_examples(examples + examples[:1], generate, copies=2, batch_size=2, progress=False)
    questions = [e["messages"][1]["content"] for e in result.examples]
    assert questions == ["What is your name?", "What are you called?", "Who made you?", "Who built you?",
                         "What is your name?"]
    assert [e["messages"][2]["content"] for e in result.examples] == ["Quill.", "Quill.", "Lumen Labs.",
                                                                     "Lumen Labs.", "Quill."]
    assert all(e["messages"][0]["content"] == "Be kind." for e in result.examples)
    assert result.added == 2 and result.dropped == {"same as the original": 1, "repeat": 1, "empty": 1,
                                                "the answer": 1}
    assert generate.asked[0] == [{"role": "user", "content": PARAPHRASE_PROMPT.format(
        instruction="What is your name?")}]
    assert examples[0]["messages"][1]["content"] == "What is your name?"  # originals untouched


def test_only_conversations_can_be_augmented():
    with pytest.raises(TunelabError, match="t.txt:1: augment rewords the instructions of conversations"):
        augment_examples([{"text": "plain", "source": "t.txt:1"}], scripted([]), progress=False)


def test_augment_command_runs_the_tiny_model_and_keeps_every_answer(chat_file, tiny_model_dir, tmp_path):
    output = tmp_path / "more.jsonl"
    args = parse("augment", chat_file, "--output", output, "--model", tiny_model_dir, "--n", 2,
                 "--max-new-tokens", 6, "--dtype", "fp32")
    assert data_cli.run(args) == 0
    original, augmented = load_examples(str(chat_file)), load_examples(str(output))
    assert len(original) <= len(augmented) <= 3 * len(original)
    assert {e["messages"][-1]["content"] for e in augmented} == {"My name is Quill."}
    questions = [e["messages"][0]["content"] for e in augmented]
    assert [q for q in questions if q in {e["messages"][0]["content"] for e in original}] == \
        [e["messages"][0]["content"] for e in original]  # every original, in order
    keys = [" ".join(q.split()).casefold() for q in questions]
    assert len(keys) == len(set(keys)) and all(keys)
    assert augmented[0]["messages"] == original[0]["messages"]
