"""What the loop eats: the buckets (or random rows) behind a bucket sampler and the packed collator.

    feed = make_feed(data, bucket_sizes, config, pad_id, dp_rank, dp_size, Loading(workers=2), max_length)
    feed.sampler.set_epoch(epoch, position)   # position: global rows already consumed
    for batch in feed.loader: ...

A global batch is batch_size * accumulation_steps * data-parallel size rows;
an epoch is the whole number of global batches the data holds. The rows of a
last partial global batch are left out of that epoch (counted in
`left_out`), so no micro-batch ever spills into the next epoch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from colossal_llama.data.loader import BucketSampler, PackedCollator
from colossal_llama.data.segments import categories_in
from colossal_llama.errors import ConfigError


@dataclass
class Feed:
    loader: torch.utils.data.DataLoader
    sampler: BucketSampler
    rows: int
    global_batch: int
    steps_per_epoch: int
    categories: list[str]
    """Categories of the data's segments (rows packed across categories hold several)."""

    @property
    def epoch_rows(self) -> int:
        return self.steps_per_epoch * self.global_batch

    @property
    def left_out(self) -> int:
        return self.rows - self.epoch_rows


def random_rows(count: int, length: int, vocab_size: int, seed: int) -> list[dict]:
    """--benchmark data: rows of `length` random ids, every token trained."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, vocab_size, (count, length), generator=generator).tolist()
    return [{"input_ids": r, "labels": r, "seq_lengths": [length], "category": "random"} for r in ids]


def concatenate(buckets: list) -> tuple[object, list[int]]:
    import datasets

    return datasets.concatenate_datasets(buckets), [len(b) for b in buckets]


@dataclass
class Loading:
    """How batches are made on this machine: the collator's isolation form and the loader's processes."""

    mask_dtype: torch.dtype = torch.float32
    form: str = "mask"
    """`PackedCollator`'s form for the attention path (model/attention.py: COLLATOR_FORM)."""
    workers: int = 0
    pin_memory: bool = False


def make_feed(data, bucket_sizes: list[int], config, pad_token_id: int, dp_rank: int, dp_size: int,
              loading: Loading, max_length: int, shuffle: bool = True, rows_per_step: int | None = None,
              drop_last: bool = True) -> Feed:
    """A Feed over `data` (indexable rows) whose buckets have `bucket_sizes` rows, in order.

    Raises:
        ConfigError: the data holds less than one global batch.
    """
    rows_per_step = rows_per_step or config.batch_size * config.accumulation_steps
    global_batch = rows_per_step * dp_size
    rows = sum(bucket_sizes)
    if rows < global_batch:
        raise ConfigError(f"the data has {rows} rows, fewer than one global batch of {global_batch} "
                          f"(--batch_size {config.batch_size} x --accumulation_steps {config.accumulation_steps} "
                          f"x {dp_size} data-parallel processes); lower them or add data")
    sampler = BucketSampler(bucket_sizes, seed=config.seed, rank=dp_rank, world_size=dp_size, shuffle=shuffle)
    categories = categories_in(data)
    collator = PackedCollator(pad_token_id, isolate=config.packed_attention == "isolate",
                              padding=config.padding_mode, max_length=max_length, mask_dtype=loading.mask_dtype,
                              form=loading.form, categories=categories)
    # its own generator: creating an iterator draws a seed, which must not move the global RNG (NEFTune's
    # noise), or a run resumed mid-epoch would draw other noise than the uninterrupted run. Workers take
    # the sampler's indices in order and hand batches back in order, so the data order is the same with any
    # number of them.
    loader = torch.utils.data.DataLoader(data, batch_size=config.batch_size, sampler=sampler, collate_fn=collator,
                                         drop_last=drop_last, num_workers=loading.workers,
                                         pin_memory=loading.pin_memory, generator=torch.Generator().manual_seed(0))
    return Feed(loader, sampler, rows, global_batch, rows // global_batch, categories)


def resolve_max_length(config, paths: list[str], max_positions: int) -> int:
    """--max_length, else the longest max_length of the data's manifests (else the model's positions).

    Raises:
        ConfigError: data made with a longer max_length than --max_length.
    """
    from colossal_llama.training.prepared import manifest_of

    made = {p: (manifest_of(p) or {}).get("max_length") for p in paths}
    for path, length in made.items():
        if config.max_length and length and length > config.max_length:
            raise ConfigError(f"--dataset {path}: prepared with max_length {length}, longer than --max_length "
                              f"{config.max_length}; prepare it again or raise --max_length")
    known = [n for n in made.values() if n]
    return config.max_length or (max(known) if known else max_positions)


def build_feeds(config, tokenizer, vocab_size: int, max_positions: int, dp_rank: int, dp_size: int,
                loading: Loading) -> tuple[Feed, Feed | None]:
    """The training feed and the evaluation feed (None without --eval_dataset)."""
    from colossal_llama.training.prepared import load_buckets

    if config.max_length and config.max_length > max_positions:
        raise ConfigError(f"--max_length {config.max_length} is longer than the model's {max_positions} positions")
    pad_id = getattr(tokenizer, f"{config.pad_token}_token_id")
    if pad_id is None:
        raise ConfigError(f"--pad_token {config.pad_token}: the tokenizer has no {config.pad_token} token")
    if config.benchmark:
        rows = random_rows(config.num_samples, config.max_length, vocab_size, config.seed)
        train = make_feed(rows, [len(rows)], config, pad_id, dp_rank, dp_size, loading, config.max_length)
        return train, None
    length = resolve_max_length(config, config.dataset + config.eval_dataset, max_positions)
    data, sizes = concatenate(load_buckets(config.dataset, tokenizer, max_positions))
    train = make_feed(data, sizes, config, pad_id, dp_rank, dp_size, loading, length)
    if not config.eval_dataset:
        return train, None
    data, sizes = concatenate(load_buckets(config.eval_dataset, tokenizer, max_positions))
    # every row is evaluated: each rank gets the same number of rows, so the same number of batches
    evaluation = make_feed(data, sizes, config, pad_id, dp_rank, dp_size, loading, length, shuffle=False,
                           rows_per_step=config.batch_size, drop_last=False)
    return train, evaluation
