"""Per-segment categories of packed rows (data-spec section 4).

SFT rows packed across categories (the default) carry a column
`segment_categories`, one category per entry of `seq_lengths`:

    seq_lengths         [412, 97]
    segment_categories  ["dialogue_zh", "seed_tasks_en"]
    category            "<mixed>"        (the one category when all segments share it)

Pretraining rows, and SFT rows made with `--pack_within_category`, with
`--no-pack` or from data of a single category, hold one category and have no
such column; a dataset that concatenates both kinds (a stage mixture, several
`--dataset` parts) holds None there for the former, as
`datasets.concatenate_datasets` fills a missing column with nulls.
`segment_categories_of` reads either kind, so per-category statistics and
loss always count per segment.
"""

from __future__ import annotations

SEGMENT_CATEGORIES = "segment_categories"
MIXED_CATEGORY = "<mixed>"
"""The `category` of a row whose segments have several categories (angle brackets, like the
manifest's `<unknown>`, so that it does not pass for a category of the data)."""


def row_category(segment_categories: list[str]) -> str:
    """The `category` column of a row: its one category, or MIXED_CATEGORY."""
    first = segment_categories[0]
    return first if all(c == first for c in segment_categories) else MIXED_CATEGORY


def segment_categories_of(row: dict) -> list[str]:
    """The category of every segment of a row, with or without the per-segment column."""
    categories = row.get(SEGMENT_CATEGORIES)
    if categories:
        return list(categories)
    return [row["category"]] * len(row.get("seq_lengths") or [len(row["input_ids"])])


def categories_in(data) -> list[str]:
    """Sorted categories of the segments of `data` (a `datasets.Dataset` or a list of rows)."""
    if not hasattr(data, "column_names"):
        return sorted({c for row in data for c in segment_categories_of(row)})
    names = set()
    if SEGMENT_CATEGORIES in data.column_names:
        for category, segments in zip(data["category"], data[SEGMENT_CATEGORIES]):
            names.update(segments or [category])
    else:
        names.update(data["category"])
    return sorted(names)
