"""The metric numbers are the libraries' own: sacrebleu's corpus BLEU and rouge-score's F-measure (with
jieba words for Chinese), on fixed strings."""
import pytest

from tunelab.eval.metrics import Scored, corpus_scores, normalize, score_example

ENGLISH = [("The cat sat on the mat.", "The cat is sitting on the mat."),
           ("I am Quill, made by Lumen Labs.", "I am Quill, an assistant made by Lumen Labs."),
           ("Paris.", "The capital of France is Paris.")]
CHINESE = [("我是一个人工智能助手。", "我是人工智能助手，由流明实验室开发。"),
           ("今天天气很好。", "今天的天气非常好。")]


def _scored(pairs):
    return [Scored(prediction, reference, []) for prediction, reference in pairs]


@pytest.mark.parametrize("pairs, tokenize", [(ENGLISH, "13a"), (CHINESE, "zh")])
def test_bleu_is_sacrebleus_corpus_bleu(pairs, tokenize):
    import sacrebleu

    scored = _scored(pairs)
    rows = [score_example(s, ["bleu"]) for s in scored]
    expected = sacrebleu.corpus_bleu([p for p, _ in pairs], [[r for _, r in pairs]], tokenize=tokenize).score
    assert corpus_scores(scored, rows, ["bleu"])["bleu"] == pytest.approx(expected, abs=1e-9)
    assert expected > 0


def test_rouge_is_rouge_score_on_english():
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"])
    scored = _scored(ENGLISH)
    rows = [score_example(s, ["rouge"]) for s in scored]
    for key in ("rouge1", "rouge2", "rougeL"):
        expected = sum(scorer.score(r, p)[key].fmeasure for p, r in ENGLISH) / len(ENGLISH) * 100
        assert corpus_scores(scored, rows, ["rouge"])[key] == pytest.approx(expected)


def test_rouge_segments_chinese_with_jieba():
    import jieba
    from rouge_score import rouge_scorer

    class Words:
        def tokenize(self, text):
            return [w for w in jieba.lcut(normalize(text)) if w.strip()]

    scorer = rouge_scorer.RougeScorer(["rouge1", "rougeL"], tokenizer=Words())
    for prediction, reference in CHINESE:
        ours = score_example(Scored(prediction, reference, []), ["rouge"])
        assert ours["rouge1"] == pytest.approx(100 * scorer.score(reference, prediction)["rouge1"].fmeasure)
        assert 0 < ours["rouge1"] < 100  # the default tokenizer would see no words at all and give 0
    default = rouge_scorer.RougeScorer(["rouge1"]).score(CHINESE[1][1], CHINESE[1][0])["rouge1"].fmeasure
    assert default == 0


def test_exact_match_and_contains_normalise_text():
    assert score_example(Scored("The answer: Paris!", "answer paris", []), ["exact_match"]) == {"exact_match": 100.0}
    assert score_example(Scored("Paris", "Rome", []), ["exact_match"]) == {"exact_match": 0.0}
    assert score_example(Scored("It is William Shakespeare.", "-", ["Shakespeare"]), ["contains"])["contains"] == 100
    assert score_example(Scored("No idea.", "-", ["Shakespeare"]), ["contains"])["contains"] == 0
