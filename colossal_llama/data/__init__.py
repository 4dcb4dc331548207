"""Data preparation: jsonl records -> tokenized, packed, bucketed Arrow shards.

records (read, validate) -> tokenize (one record -> ids, labels) -> mapstep
(parallel per input chunk) -> packing + buckets (per category; SFT rows may
mix categories) -> shards
(Arrow) + manifest. `pretrain.py` runs the whole chain.
"""
