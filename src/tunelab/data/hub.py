"""Data sets on the Hugging Face Hub: `data.path: hf:ORG/NAME` (with data.split and data.subset) and a
dataset_info.json entry's `hf_hub_url`. Both load through `datasets.load_dataset` (which caches what it downloads)
and come back as located records, converted like a file's rows.

Offline (HF_HUB_OFFLINE=1, or no network) `datasets` can only read its cache; when the data set is not there the
error says so, names the cache folder and what to do, on one line.
"""
from __future__ import annotations

import itertools
import os
from pathlib import Path

from tunelab.data.files import Located
from tunelab.errors import TunelabError

HUB_PREFIX = "hf:"
_TRUE = ("1", "ON", "YES", "TRUE")


def hub_records(repo: str, subset: str | None, split: str, where: str, advice: str,
                max_samples: int = 0) -> list[Located]:
    """The split's rows as (record, "hf://REPO:row N"); the first `max_samples` only when it is > 0. `advice`
    says how to use a local copy instead (it ends the error when the data set cannot be loaded)."""
    try:
        import datasets  # deferred: slow to import, and only hub data sets need it

        rows = datasets.load_dataset(repo, name=subset, split=split)
        kept = itertools.islice(rows, max_samples or None)  # iterates only the first rows of a large split
        return [(dict(row), f"hf://{repo}:row {n}") for n, row in enumerate(kept, start=1)]
    except Exception as err:  # datasets/huggingface_hub raise many unrelated types when offline
        raise TunelabError(_failure(repo, err, where, advice)) from None


def _failure(repo: str, err: Exception, where: str, advice: str) -> str:
    detail = (str(err).strip().splitlines() or [""])[0][:200]
    cache = datasets_cache()
    if offline():
        why = (f"the hub could not be reached: HF_HUB_OFFLINE is set and '{repo}' is not in the local cache "
               f"({cache}) - load it once with network access (HF_HUB_OFFLINE unset) to cache it, or {advice}")
    else:
        why = (f"the hub could not be reached or has no such dataset - {advice} (or, with the data set cached in "
               f"{cache}, set HF_HUB_OFFLINE=1)")
    return f"{where}: could not load '{repo}' from the Hugging Face Hub ({type(err).__name__}: {detail}); {why}"


def offline() -> bool:
    """HF_HUB_OFFLINE (or HF_DATASETS_OFFLINE) set, as huggingface_hub and datasets read them."""
    return any(os.environ.get(name, "").upper() in _TRUE for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"))


def datasets_cache() -> Path:
    """Where `datasets` keeps what it loaded: HF_DATASETS_CACHE, else HF_HOME/datasets (the same rule as
    datasets.config, without importing it)."""
    if os.environ.get("HF_DATASETS_CACHE"):
        return Path(os.environ["HF_DATASETS_CACHE"]).expanduser()
    cache_home = Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser()
    return Path(os.environ.get("HF_HOME", cache_home / "huggingface")).expanduser() / "datasets"
