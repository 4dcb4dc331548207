"""Bucket sampler order and resume; collator masks; document isolation makes a packed row's
loss equal the token-weighted loss of its documents run one by one."""

import numpy as np
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from colossal_llama.data.loader import BucketSampler, PackedCollator


def test_buckets_in_order_shuffled_inside():
    sampler = BucketSampler([4, 3, 5], seed=1)
    order = list(sampler)
    assert sorted(order[:4]) == [0, 1, 2, 3] and sorted(order[4:7]) == [4, 5, 6] and sorted(order[7:]) == list(range(7, 12))
    assert order != list(range(12))  # shuffled inside buckets
    assert list(BucketSampler([4, 3, 5], seed=1)) == order  # deterministic for a seed
    sampler.set_epoch(1)
    assert list(sampler) != order and sorted(list(sampler)[:4]) == [0, 1, 2, 3]
    assert list(BucketSampler([4, 3, 5], seed=1, shuffle=False)) == list(range(12))


def test_ranks_split_the_global_order():
    full = BucketSampler([7, 6], seed=3).global_order(0)
    ranks = [BucketSampler([7, 6], seed=3, rank=r, world_size=3) for r in range(3)]
    assert ranks[0].total == 12 and ranks[0].dropped == 1
    interleaved = [None] * 12
    for r, s in enumerate(ranks):
        interleaved[r::3] = list(s)
    assert interleaved == full[:12].tolist()


@pytest.mark.parametrize("position", [0, 4, 8])
def test_resume_at_a_global_position_with_another_world_size(position):
    whole = BucketSampler([6, 6], seed=5).global_order(0).tolist()
    for world in (1, 2, 4):
        samplers = [BucketSampler([6, 6], seed=5, rank=r, world_size=world) for r in range(world)]
        for s in samplers:
            s.set_epoch(0, position)
        rest = [None] * (12 - position)
        for r, s in enumerate(samplers):
            rest[r::world] = list(s)
            assert len(s) == (12 - position) // world
        assert rest == whole[position:]
    with pytest.raises(ValueError, match="position 3 is not a multiple of the world size 2"):
        BucketSampler([6], seed=5, world_size=2).set_epoch(0, 3)


def test_collator_shapes_positions_and_mask():
    rows = [{"input_ids": [5, 6, 7, 8, 9], "labels": [-100, 6, 7, 8, 9], "seq_lengths": [3, 2]},
            {"input_ids": [2, 2, 2], "labels": [2, 2, 2], "seq_lengths": [3]}]
    batch = PackedCollator(pad_token_id=2)(rows)  # pad id equal to a real token: the mask must not care
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8, 9], [2, 2, 2, 2, 2]]
    # padding and every document's first token are not trained on (the first is never predicted alone)
    assert batch["labels"].tolist() == [[-100, 6, 7, -100, 9], [-100, 2, 2, -100, -100]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 1], [0, 1, 2, 0, 0]]
    allowed = (batch["attention_mask"][:, 0] == 0).int().tolist()
    assert allowed[0] == [[1, 0, 0, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 0, 0], [0, 0, 0, 1, 0], [0, 0, 0, 1, 1]]
    assert allowed[1] == [[1, 0, 0, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 0, 0], [0, 0, 0, 1, 0], [0, 0, 0, 0, 1]]
    cross = PackedCollator(pad_token_id=2, isolate=False, padding="max_length", max_length=6)(rows)
    assert cross["attention_mask"].tolist() == [[1, 1, 1, 1, 1, 0], [1, 1, 1, 0, 0, 0]]
    assert "position_ids" not in cross
    with pytest.raises(ValueError, match="does not fit max_length 4"):
        PackedCollator(pad_token_id=0, padding="max_length", max_length=4)(rows)


def tiny_model(attn):
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    return LlamaForCausalLM(config).eval().to(torch.float32), config


def token_loss_sum(model, ids, labels, **extra):
    logits = model(input_ids=ids, **extra).logits[:, :-1]
    target = labels[:, 1:]
    return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1),
                                             ignore_index=-100, reduction="sum"), int((target != -100).sum())


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_packed_loss_equals_documents_one_by_one(attn):
    model, _ = tiny_model(attn)
    model.config._attn_implementation = attn
    rng = np.random.default_rng(0)
    docs = [rng.integers(3, 64, size=n).tolist() for n in (7, 4, 9, 5, 6)]
    labels = [[-100] * 2 + d[2:] for d in docs[:2]] + [list(d) for d in docs[2:]]  # masked prefixes, and none
    rows = [{"input_ids": sum(docs[:3], []), "labels": sum(labels[:3], []), "seq_lengths": [7, 4, 9]},
            {"input_ids": sum(docs[3:], []), "labels": sum(labels[3:], []), "seq_lengths": [5, 6]}]
    with torch.no_grad():
        batch = PackedCollator(pad_token_id=0)(rows)
        packed_sum, packed_n = token_loss_sum(model, batch["input_ids"], batch["labels"],
                                              attention_mask=batch["attention_mask"],
                                              position_ids=batch["position_ids"])
        one_by_one = [token_loss_sum(model, torch.tensor([d]), torch.tensor([l])) for d, l in zip(docs, labels)]
        cross = PackedCollator(pad_token_id=0, isolate=False)(rows)
        cross_sum, _ = token_loss_sum(model, cross["input_ids"], cross["labels"],
                                      attention_mask=cross["attention_mask"])
    assert packed_n == sum(n for _, n in one_by_one)
    torch.testing.assert_close(packed_sum / packed_n, sum(s for s, _ in one_by_one) / packed_n, rtol=1e-5, atol=0)
    assert not torch.allclose(cross_sum, packed_sum, rtol=1e-3)  # without isolation the loss differs


def test_collator_segments_with_and_without_the_per_segment_column():
    rows = [{"input_ids": [5, 6, 7, 8, 9], "labels": [5, 6, 7, 8, 9], "seq_lengths": [3, 2], "category": "<mixed>",
             "segment_categories": ["x", "y"]},
            {"input_ids": [2, 2, 2], "labels": [2, 2, 2], "seq_lengths": [1, 2], "category": "y",
             "segment_categories": None},  # a row of a one-category part concatenated with mixed ones
            {"input_ids": [4, 4], "labels": [4, 4], "seq_lengths": [2], "category": "z"}]
    batch = PackedCollator(pad_token_id=0)(rows)
    assert batch["segments"] == [[("x", 3), ("y", 2)], [("y", 1), ("y", 2)], [("z", 2)]]
    assert batch["category"] == ["<mixed>", "y", "z"]


def test_categories_of_concatenated_parts():
    import datasets

    from colossal_llama.data.segments import categories_in

    mixed = datasets.Dataset.from_dict({"input_ids": [[1, 2, 3]], "seq_lengths": [[1, 2]], "category": ["<mixed>"],
                                        "segment_categories": [["a", "b"]]})
    plain = datasets.Dataset.from_dict({"input_ids": [[1, 2]], "seq_lengths": [[2]], "category": ["c"]})
    assert categories_in(datasets.concatenate_datasets([plain, mixed])) == ["a", "b", "c"]
    assert categories_in(plain) == ["c"] and categories_in(list(mixed)) == ["a", "b"]


def test_loss_per_category_counts_each_segment():
    """A row packed across categories adds each document's label tokens to the document's own category."""
    from contextlib import nullcontext
    from types import SimpleNamespace

    from colossal_llama.training.steps import accumulate_step

    model, _ = tiny_model("eager")
    model.config._attn_implementation = "eager"
    rng = np.random.default_rng(1)
    docs = [rng.integers(3, 64, size=n).tolist() for n in (7, 4, 9, 5, 6)]
    labels = [[-100] * 3 + d[3:] for d in docs[:2]] + [list(d) for d in docs[2:]]
    cats = ["x", "y", "x", "y", "z"]
    rows = [{"input_ids": sum(docs[:3], []), "labels": sum(labels[:3], []), "seq_lengths": [7, 4, 9],
             "category": "<mixed>", "segment_categories": cats[:3]},
            {"input_ids": sum(docs[3:], []), "labels": sum(labels[3:], []), "seq_lengths": [5, 6],
             "category": "<mixed>", "segment_categories": cats[3:]}]
    expected_sums, expected_counts = {}, {}
    with torch.no_grad():
        for d, l, c in zip(docs, labels, cats):  # each document alone
            s, n = token_loss_sum(model, torch.tensor([d]), torch.tensor([l]))
            expected_sums[c] = expected_sums.get(c, 0.0) + float(s)
            expected_counts[c] = expected_counts.get(c, 0) + n
    run = SimpleNamespace(dp_size=1, dp_group=None, device="cpu", model=model, autocast=nullcontext, no_sync=False,
                          booster=SimpleNamespace(backward=lambda loss, optimizer: loss.backward()),
                          optimizer=torch.optim.SGD(model.parameters(), lr=0.0), clips_in_loop=False,
                          scheduler=SimpleNamespace(step=lambda: None),
                          train=SimpleNamespace(categories=["x", "y", "z"]))
    result = accumulate_step(run, [PackedCollator(pad_token_id=0)(rows)])
    assert sorted(result.category_loss) == ["x", "y", "z"]
    for c in "xyz":
        assert result.category_loss[c] == pytest.approx(expected_sums[c] / expected_counts[c], rel=1e-5)
    assert result.loss == pytest.approx(sum(expected_sums.values()) / sum(expected_counts.values()), rel=1e-5)
