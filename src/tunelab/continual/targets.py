"""The base model's next-token distributions on the reference rows, computed once and cached.

The KL term compares the tuned model with its base on the same reference rows at every step; the base never
changes, so its distributions are computed before training (one forward per row, no gradients) instead of
once per step. Each answer position keeps its top-k tokens' log-probabilities and the log of the mass left
over: the KL is then taken between the two distributions coarsened to those k + 1 outcomes (the k tokens
and "anything else"), which by the data-processing inequality never exceeds the exact KL and equals it when
the base puts all its mass on the k tokens (see tunelab.continual.kl).

Stored as safetensors in TUNELAB_CACHE/base_logprobs/<key>/, the key covering everything the numbers depend
on: the base weights' fingerprint, the model section, the tokenizer, the rows' tokens, k and the compute
dtype. A second run with the same reference set and base reads them back at once.
"""
from __future__ import annotations

import hashlib
import json
import logging
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from tqdm.auto import tqdm

from tunelab.data.tokenize import IGNORE
from tunelab.eval.perplexity import pad_batch
from tunelab.models.cache import atomic_directory, cache_root, file_fingerprint

log = logging.getLogger("tunelab")
FORMAT_VERSION = 1
FILE = "targets.safetensors"


@dataclass
class Targets:
    """Per answer position of every row (rows in order, positions ascending): top-k token ids [P, k] (int64),
    their base log-probabilities [P, k] and the log of the base mass outside them [P] (float32).
    `offsets[i]:offsets[i + 1]` are row i's positions."""
    ids: torch.Tensor
    logp: torch.Tensor
    rest: torch.Tensor
    offsets: list[int]

    def of_rows(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        spans = [torch.arange(self.offsets[i], self.offsets[i + 1]) for i in indices]
        picked = torch.cat(spans) if spans else torch.zeros(0, dtype=torch.long)
        return self.ids[picked], self.logp[picked], self.rest[picked]


def answer_positions(rows: list[dict], stride: int | None = None) -> torch.Tensor:
    """Flat indices of the positions that predict an answer token (labels[t + 1] set), row after row.
    `stride`: rows padded to that width (index b * stride + t); None: rows laid end to end (packed)."""
    found, offset = [], 0
    for row in rows:
        labels = row["labels"]
        found += [offset + t for t in range(len(labels) - 1) if labels[t + 1] != IGNORE]
        offset += stride if stride is not None else len(labels)
    return torch.tensor(found, dtype=torch.long)


def answer_logits(model, rows: list[dict], pad_id: int, split=None) -> torch.Tensor:
    """[P, vocab] logits (float32) of a padded forward over `rows` at their answer positions: through the
    decoder and the head on those positions only when `split` = (decoder, head) is given, else the full logits."""
    batch = pad_batch(rows, pad_id)
    device = next(model.parameters()).device
    ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
    where = answer_positions(rows, ids.shape[1]).to(device)
    if split is not None:
        decoder, head = split
        hidden = decoder(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state
        return head(hidden.reshape(-1, hidden.shape[-1]).index_select(0, where)).float()
    logits = model(input_ids=ids, attention_mask=mask).logits
    logits = logits[:, -ids.shape[1]:]  # prompt tuning prepends virtual positions
    return logits.reshape(-1, logits.shape[-1]).index_select(0, where).float()


def top_k(logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(ids, log-probs, log of the remaining mass) of the k most likely tokens at each position."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    values, ids = logp.topk(min(k, logp.shape[-1]), dim=-1)
    return ids, values, log_rest(values)


def log_rest(top_logp: torch.Tensor) -> torch.Tensor:
    """log(1 - sum exp(top_logp)) per position, finite even when the top tokens hold (almost) all the mass."""
    covered = torch.logsumexp(top_logp, dim=-1).clamp(max=-1e-7)
    return torch.log(-torch.expm1(covered)).clamp(min=-60.0)


def compute_targets(model, method, rows: list[dict], k: int, pad_id: int, autocast: Callable = nullcontext,
                    split=None, batch_size: int = 4) -> Targets:
    """The base's top-k distributions on every row: the model with the method switched off, no gradients."""
    ids, logp, rest, offsets = [], [], [], [0]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), method.disable(model), autocast():
            for start in tqdm(range(0, len(rows), batch_size), desc="KL: base log-probs (once)", unit="batch"):
                chunk = rows[start : start + batch_size]
                found = top_k(answer_logits(model, chunk, pad_id, split), k)
                for store, value in zip((ids, logp, rest), found):
                    store.append(value.cpu())
                for row in chunk:
                    offsets.append(offsets[-1] + len(answer_positions([row])))
    finally:
        model.train(was_training)
    return Targets(torch.cat(ids), torch.cat(logp), torch.cat(rest), offsets)


def targets_key(parts: dict, rows: list[dict]) -> str:
    digest = hashlib.sha256(json.dumps({"v": FORMAT_VERSION, **parts}, sort_keys=True, default=str).encode())
    for row in rows:
        digest.update(json.dumps([row["input_ids"], row["labels"]]).encode())
    return digest.hexdigest()[:24]


def cached_targets(parts: dict, rows: list[dict], build: Callable[[], Targets]) -> Targets:
    """The targets for `parts` and `rows` from the cache, or built by `build()` and stored (a read-only or
    full cache only costs the reuse)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file, save_file

    folder = cache_root() / "base_logprobs" / targets_key(parts, rows)
    if (folder / FILE).is_file():
        try:
            saved = load_file(str(folder / FILE))
            log.info("KL: base log-probs from the cache (%s)", folder)
            return Targets(saved["ids"].long(), saved["logp"], saved["rest"], saved["offsets"].tolist())
        except (OSError, KeyError, SafetensorError) as exc:
            log.info("ignoring a damaged base log-prob cache entry %s (%s)", folder, exc)
    targets = build()
    try:
        with atomic_directory(folder) as tmp:
            save_file({"ids": targets.ids.int().contiguous(), "logp": targets.logp.contiguous(),
                       "rest": targets.rest.contiguous(), "offsets": torch.tensor(targets.offsets)}, str(tmp / FILE))
        log.info("KL: base log-probs of %d reference rows cached in %s", len(rows), folder)
    except OSError as exc:
        log.info("could not cache the base log-probs in %s (%s)", folder, exc)
    return targets


def base_identity(model_config, model) -> dict:
    """What identifies the base weights: the files behind model.path (a run directory's too), or for a hub model
    its id and the commit transformers downloaded, plus the rest of the model section (quantization, revision)."""
    from tunelab.models import resolve_model

    path = Path(model_config.path).expanduser()
    if path.is_dir():
        folder = path
    else:
        resolved = resolve_model(model_config.path, model_config.gguf_file)
        folder = Path(resolved.location) if Path(resolved.location).is_dir() else None
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    found = {"model": model_config.model_dump(mode="json"),
             "commit": getattr(getattr(inner, "config", None), "_commit_hash", None)}
    if folder is not None:
        files = sorted(p for p in folder.rglob("*") if _weights_file(p)
                       and not any(part.startswith("checkpoint-") for part in p.relative_to(folder).parts))
        found["files"] = {str(p.relative_to(folder)): file_fingerprint(p) for p in files}
    return found


def _weights_file(path: Path) -> bool:
    return path.is_file() and (path.suffix in (".safetensors", ".bin", ".gguf")
                               or path.name in ("config.json", "adapter_config.json"))
