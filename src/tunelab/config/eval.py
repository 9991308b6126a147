"""`eval:` section — evaluate the trained model at the end of the run (files in RUN/eval/)."""
from pydantic import Field, field_validator

from tunelab.config.base import Section


class EvalConfig(Section):
    data: str | None = Field(None, description="Evaluation data (file, LLaMA-Factory dir or builtin:NAME); default: "
                             "only the forgetting probes when eval.forgetting is on.")
    dataset: str | None = Field(None, description="Dataset name(s) in eval.data's dataset_info.json.")
    metrics: list[str] = Field(["bleu", "rouge", "perplexity"], description="bleu, rouge, perplexity, exact_match, "
                               "contains, accuracy, f1 (classification runs).")
    max_new_tokens: int = Field(128, gt=0, description="Longest generated answer.")
    batch_size: int = Field(8, gt=0, description="Examples generated and scored at a time.")
    limit: int | None = Field(None, gt=0, description="Evaluate only the first N examples.")
    compare_base: bool = Field(False, description="Also score the base model (adapter switched off) and report the delta.")
    forgetting: bool = Field(False, description="Also run the built-in general-knowledge probes (builtin:probes) "
                             "on base and tuned model: what the fine-tune forgot (RUN/eval/forgetting/).")

    @field_validator("metrics")
    @classmethod
    def _known_metrics(cls, value: list[str]) -> list[str]:
        from tunelab.errors import TunelabError
        from tunelab.eval.metrics import check_metrics

        try:
            return check_metrics(value, "metrics")
        except TunelabError as exc:
            raise ValueError(str(exc).removeprefix("metrics: ")) from None
