"""Packing lays examples end to end without dropping, duplicating or mixing them."""
import torch

from tunelab.data.packing import PackedCollator, pack_documents
from tunelab.data.tokenize import IGNORE


def _row(ids, labels=None):
    return {"input_ids": list(ids), "attention_mask": [1] * len(ids), "labels": list(labels or ids)}


def test_collator_packs_every_example_once_in_order():
    rows = [_row([1, 2, 3], [IGNORE, 2, 3]), _row([4, 5]), _row([6, 7, 8, 9], [IGNORE, IGNORE, 8, 9])]
    batch = PackedCollator()(rows)
    assert batch["input_ids"].tolist() == [[1, 2, 3, 4, 5, 6, 7, 8, 9]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 1, 0, 1, 2, 3]]
    assert "attention_mask" not in batch  # a mask would send transformers down the leaking path


def test_collator_never_trains_across_a_boundary():
    """The label at a sequence start would be predicted from the previous sequence's last token."""
    batch = PackedCollator()([_row([1, 2, 3]), _row([4, 5, 6])])
    assert batch["labels"].tolist() == [[IGNORE, 2, 3, IGNORE, 5, 6]]


def test_pack_documents_fills_blocks_keeps_documents_whole_and_restarts_positions():
    docs = [_row(range(n)) for n in (5, 4, 3, 6, 2)]
    blocks = pack_documents(docs, max_length=8)
    assert [len(b["input_ids"]) for b in blocks] == [5, 7, 8]
    assert all(len(b["input_ids"]) <= 8 for b in blocks)
    flat = [t for b in blocks for t in b["input_ids"]]
    assert flat == [t for d in docs for t in d["input_ids"]]  # nothing dropped or duplicated
    assert blocks[1]["position_ids"] == [0, 1, 2, 3, 0, 1, 2]


def test_packed_blocks_collate_with_their_own_positions():
    blocks = pack_documents([_row([1, 2]), _row([3, 4, 5])], max_length=8)
    batch = PackedCollator()(blocks)
    assert batch["position_ids"].tolist() == [[0, 1, 0, 1, 2]]
    assert batch["labels"].tolist() == [[IGNORE, 2, IGNORE, 4, 5]]
    assert batch["input_ids"].dtype == torch.long


def test_split_packed_cuts_at_sequence_starts_within_the_budget():
    from tunelab.data.packing import split_packed

    batch = PackedCollator()([_row(range(n)) for n in (3, 4, 2, 6, 1)])
    pieces = split_packed(batch, max_tokens=7)
    assert [p["input_ids"].shape[1] for p in pieces] == [7, 2, 7]  # 3+4 | 2 (2+6 > 7) | 6+1
    assert torch.equal(torch.cat([p["input_ids"] for p in pieces], dim=1), batch["input_ids"])
    assert all(p["position_ids"][0, 0] == 0 for p in pieces)  # never cuts inside a sequence


def test_split_packed_keeps_a_long_sequence_whole_and_small_batches_as_they_are():
    from tunelab.data.packing import split_packed

    batch = PackedCollator()([_row(range(9)), _row(range(2))])
    assert [p["input_ids"].shape[1] for p in split_packed(batch, max_tokens=4)] == [9, 2]
    assert split_packed(batch, max_tokens=64) == [batch]


def test_a_piece_holds_at_least_one_example():
    from tunelab.config.train import TrainConfig
    from tunelab.data.packing import piece_tokens

    assert piece_tokens(TrainConfig(max_length=512, piece_tokens=1024)) == 1024
    assert piece_tokens(TrainConfig(max_length=2048, piece_tokens=1024)) == 2048
    assert piece_tokens(TrainConfig(max_length=2048, piece_tokens=0)) == 0
