"""Give a model the rows of a new tokenizer: resize the input embeddings and the output head.

    python -m colossal_llama.model.init_model --source_model_and_tokenizer_path llama2/ \\
        --target_tokenizer_path llama2-zh-tokenizer/ --target_model_path llama2-zh/ [--replace_vocab]

Merging (default): the new tokenizer extends the old one (old ids unchanged);
old rows are copied, each new row is the mean of the old rows of the old
tokens its text splits into (`embeddings.py`). Replacing (`--replace_vocab`):
the new tokenizer is a different vocabulary; a token that exists in the old
vocabulary keeps its old row, every other token gets the mean as above.

Only the two matrices are touched: the checkpoint is rewritten shard by
shard from its safetensors files (memory: one shard), with no model built
and nothing moved to a device. Tied embeddings stay tied (the head is not
stored). The output keeps the source's dtype unless `--dtype` asks otherwise,
and holds the new tokenizer, so it loads alone with `AutoModelForCausalLM`
and `AutoTokenizer`. As in the old README, `--target_model_path` may be the
`--target_tokenizer_path` folder: the model then joins the tokenizer there.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import time

import torch

from colossal_llama.errors import DataError, TokenizerError, exit_status
from colossal_llama.model.hub import resolve_model_dir
from colossal_llama.model.embeddings import decompose, mean_rows
from colossal_llama.outputs import staged_output
from colossal_llama.tokenizer.folder import save_tokenizer
from colossal_llama.tokenizer.loading import load_tokenizer

EMBED, HEAD = "model.embed_tokens.weight", "lm_head.weight"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
# what makes a folder a model folder (rather than a tokenizer folder)
MODEL_FILE = re.compile(r"(generation_)?config\.json|.*\.safetensors(\.index\.json)?"
                        r"|pytorch_model.*\.bin(\.index\.json)?")


def row_plan(old_tokenizer, new_tokenizer, replace_vocab: bool) -> tuple[list[int], list[int], list[list[int]], list[int]]:
    """Which new rows copy an old row, and which are means of old rows.

    Returns:
        (new ids that copy, the old ids they copy, old parts of every other
        new id, those other new ids).
    Raises:
        TokenizerError: merging, but the new tokenizer does not keep every old token's id.
    """
    old_vocab, new_vocab = old_tokenizer.get_vocab(), new_tokenizer.get_vocab()
    if replace_vocab:
        copied = sorted((i, old_vocab[t]) for t, i in new_vocab.items() if t in old_vocab)
    else:
        moved = [t for t, i in old_vocab.items() if new_vocab.get(t) != i]
        if moved:
            raise TokenizerError(f"the target tokenizer does not keep the ids of {len(moved)} old token(s) "
                                 f"(e.g. {moved[0]!r}); for a different vocabulary use --replace_vocab")
        copied = sorted(old_vocab.items(), key=lambda kv: kv[1])
        copied = [(i, i) for _, i in copied]
    keep_new = [n for n, _ in copied]
    kept = set(keep_new)
    fresh = [i for i in range(len(new_tokenizer)) if i not in kept]
    return keep_new, [o for _, o in copied], decompose(old_tokenizer, new_tokenizer, fresh), fresh


def resize(matrix: torch.Tensor, plan, size: int) -> torch.Tensor:
    """The new matrix: copied rows exactly, the others as means (in float32, then the matrix's dtype)."""
    keep_new, keep_old, parts, fresh = plan
    out = torch.empty(size, matrix.shape[1], dtype=matrix.dtype)
    n = len(keep_new)
    if keep_new == keep_old == list(range(n)):  # merging: the old rows are a prefix, copied without a gather
        out[:n] = matrix[:n]
    else:
        out[keep_new] = matrix[keep_old]
    if fresh:
        out[fresh] = mean_rows(matrix, parts).to(matrix.dtype)
    return out


def _weight_files(folder: str) -> list[str]:
    index = os.path.join(folder, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index, encoding="utf-8") as f:
            return sorted(set(json.load(f)["weight_map"].values()))
    if os.path.exists(os.path.join(folder, "model.safetensors")):
        return ["model.safetensors"]
    raise DataError(f"{folder}: no safetensors weights (model.safetensors or model.safetensors.index.json)")


def rewrite_weights(source: str, target: str, plan, size: int, dtype) -> None:
    """Copy every shard, replacing the embedding and head matrices."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    total = 0
    for name in _weight_files(source):
        tensors = {}
        with safe_open(os.path.join(source, name), framework="pt") as f:
            for key in f.keys():
                tensor = f.get_tensor(key)
                if key in (EMBED, HEAD):
                    tensor = resize(tensor, plan, size)
                if dtype is not None and tensor.is_floating_point():
                    tensor = tensor.to(dtype)
                tensors[key] = tensor.contiguous()
                total += tensor.numel() * tensor.element_size()
        save_file(tensors, os.path.join(target, name), metadata={"format": "pt"})
        del tensors
    index = os.path.join(source, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index, encoding="utf-8") as f:
            data = json.load(f)
        data["metadata"] = {**data.get("metadata", {}), "total_size": total}
        with open(os.path.join(target, "model.safetensors.index.json"), "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2)


def holds_model(folder: str) -> bool:
    """Whether `folder` holds model files (a config or weights), not only a tokenizer."""
    return any(MODEL_FILE.fullmatch(name) for name in os.listdir(folder))


def check_paths(source: str, target_tokenizer: str, target: str, overwrite: bool) -> bool:
    """Refuse missing inputs, and an output folder whose contents would be lost.

    The old README's flow writes the model into the folder init_tokenizer
    wrote (`--target_model_path` = `--target_tokenizer_path`): that folder
    exists and holds the tokenizer, and needs no --overwrite unless it already
    holds a model. Returns whether the output is that tokenizer folder.

    Raises:
        DataError: naming the flag of the folder at fault.
    """
    for flag, folder in (("--source_model_and_tokenizer_path", source), ("--target_tokenizer_path", target_tokenizer)):
        if not os.path.isdir(folder):
            raise DataError(f"{flag} {folder}: folder does not exist")
    if not os.path.isfile(os.path.join(source, "config.json")):
        raise DataError(f"--source_model_and_tokenizer_path {source}: no config.json (an HF model folder is expected)")
    if not os.path.exists(target) or os.path.isdir(target) and not os.listdir(target):
        return False
    into_tokenizer = os.path.samefile(target, target_tokenizer)
    if not overwrite:
        if not into_tokenizer:
            raise DataError(f"--target_model_path {target}: exists (add --overwrite to replace it)")
        if holds_model(target):
            raise DataError(f"--target_model_path {target}: already holds a model (add --overwrite to replace it)")
    return into_tokenizer


def copy_tokenizer_files(folder: str, out: str) -> None:
    """Copy everything of `folder` but model files into `out` (the tokenizer, init_tokenizer's report.json)."""
    for name in os.listdir(folder):
        path = os.path.join(folder, name)
        if os.path.isdir(path):
            shutil.copytree(path, os.path.join(out, name))
        elif not MODEL_FILE.fullmatch(name):
            shutil.copy2(path, out)


def init_model(source: str, target_tokenizer: str, target: str, replace_vocab: bool = False,
               dtype: str | None = None, overwrite: bool = False) -> dict:
    """Write `target`: the source model with rows for every token of `target_tokenizer`; returns a report.

    The folder is built beside `target` and renamed into place, so `target`
    is never half-written; when `target` is the tokenizer folder, its files
    are copied into the new folder first.
    """
    from transformers import AutoConfig

    source = resolve_model_dir(source, "--source_model_and_tokenizer_path", DataError)  # or a hub id in the cache
    into_tokenizer = check_paths(source, target_tokenizer, target, overwrite)
    started = time.perf_counter()
    old = load_tokenizer(source, "--source_model_and_tokenizer_path")
    new = load_tokenizer(target_tokenizer, "--target_tokenizer_path")
    config = AutoConfig.from_pretrained(source, trust_remote_code=False)
    plan = row_plan(old, new, replace_vocab)
    # into the tokenizer folder: check_paths allowed replacing it (its files are carried over)
    with staged_output(target, overwrite=overwrite or into_tokenizer, flag="--target_model_path") as tmp:
        if into_tokenizer:
            copy_tokenizer_files(target, tmp)
        rewrite_weights(source, tmp, plan, len(new), DTYPES.get(dtype))
        config.vocab_size = len(new)
        if dtype:
            config.torch_dtype = dtype
        config.save_pretrained(tmp)
        if os.path.exists(os.path.join(source, "generation_config.json")):
            shutil.copy2(os.path.join(source, "generation_config.json"), tmp)
        save_tokenizer(new, tmp)
    parts = plan[2]
    return {"old_vocab_size": len(old), "new_vocab_size": len(new), "rows_copied": len(plan[0]),
            "rows_initialised": len(parts), "mean_parts_per_new_row": round(sum(map(len, parts)) / max(len(parts), 1), 2),
            "tied_embeddings": bool(getattr(config, "tie_word_embeddings", False)), "mode":
            "replace" if replace_vocab else "merge", "seconds": round(time.perf_counter() - started, 2)}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m colossal_llama.model.init_model",
                                description="Resize a model's embeddings and head to a new tokenizer.")
    p.add_argument("--source_model_and_tokenizer_path", required=True, help="HF model folder with its tokenizer")
    p.add_argument("--target_tokenizer_path", required=True, help="the new (expanded or replacing) tokenizer")
    p.add_argument("--target_model_path", required=True, help="output model folder")
    p.add_argument("--replace_vocab", action="store_true",
                   help="the new tokenizer replaces the old vocabulary (default: it extends it, old ids kept)")
    p.add_argument("--dtype", choices=sorted(DTYPES), default=None, help="save in this dtype (default: the source's)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)

    def run() -> int:
        report = init_model(args.source_model_and_tokenizer_path, args.target_tokenizer_path, args.target_model_path,
                            args.replace_vocab, args.dtype, args.overwrite)
        print(json.dumps(report, indent=2))
        return 0
    return exit_status(run)


if __name__ == "__main__":
    raise SystemExit(main())
