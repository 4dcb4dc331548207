"""Attention paths for packed rows, and what each one needs from the collator.

    path = resolve_attention("auto", isolate=True, cuda=True)   # "flex" on a GPU, "sdpa" on CPU
    inputs["attention_mask"] = document_block_mask(batch["document_ids"].to(device))   # flex

Document isolation (data/loader.py) can reach the model three ways:

| path    | transformers' attention | the collator gives            | memory per row of L tokens       |
|---------|-------------------------|-------------------------------|----------------------------------|
| `sdpa`  | `sdpa`                  | an additive (B, 1, L, L) mask | L x L (32 MiB in bf16 at 4,096) |
| `flex`  | `flex_attention`        | document ids (B, L)           | a block mask: (L / 128)^2 ints   |
| `flash` | `flash_attention_2`     | restarting position ids only  | none (variable-length kernel)    |

`flex` is PyTorch's FlexAttention: the block mask says which 128 x 128
tiles hold any allowed pair, so the kernel skips the tiles between
documents and above the diagonal instead of adding minus infinity to them,
and no L x L tensor exists. transformers compiles it (torch.compile) on a
GPU; torch 2.5 cannot compile it for the CPU, where it runs eagerly (each
layer then holds its (L, L) scores: fine for checks, slower than sdpa).
`flash` needs the flash-attn package (built from source, so not counted
on). `sdpa` works everywhere and is the CPU default. The three give the
same loss (tests/test_attention.py on CPU for sdpa and flex; the GPU check
for all of them).
"""

from __future__ import annotations

import functools
import importlib.util

import torch

from colossal_llama.errors import ConfigError

PATHS = ("auto", "sdpa", "flex", "flash")
HF_IMPLEMENTATION = {"sdpa": "sdpa", "flex": "flex_attention", "flash": "flash_attention_2"}
COLLATOR_FORM = {"sdpa": "mask", "flex": "documents", "flash": "positions"}
"""What the collator gives with isolation: the 4-D mask, document ids, or restarting positions only."""

BLOCK = 128  # FlexAttention's default tile: its block mask rounds lengths up to a multiple of this


def flex_available() -> bool:
    return importlib.util.find_spec("torch.nn.attention.flex_attention") is not None


@functools.lru_cache(maxsize=1)
def flex_trains_on_cpu() -> bool:
    """Whether this torch runs FlexAttention's backward on the CPU, uncompiled (torch 2.5 does; torch 2.11
    refuses: "FlexAttention does not support backward on CPU"). Tried once, on a 1 x 1 x 128 x 16 input."""
    import torch._dynamo
    from torch.nn.attention.flex_attention import flex_attention

    query = torch.zeros(1, 1, BLOCK, 16, requires_grad=True)
    try:
        with torch._dynamo.config.patch(disable=True):
            flex_attention(query, query, query).sum().backward()
    except Exception:  # noqa: BLE001 - any refusal means no
        return False
    return True


def resolve_attention(requested: str, isolate: bool, cuda: bool) -> str:
    """The attention path to train with: `requested`, or for `auto` flex on a GPU with isolated documents
    (no L x L mask) and sdpa otherwise.

    Raises:
        ConfigError: a path this machine cannot run.
    """
    if requested not in PATHS:
        raise ConfigError(f"--attention must be one of {list(PATHS)}, got {requested!r}")
    if requested == "auto":
        return "flex" if cuda and isolate and flex_available() else "sdpa"
    if requested == "flex" and not flex_available():
        raise ConfigError(f"--attention flex needs torch >= 2.5 (FlexAttention); this torch is {torch.__version__}")
    if requested == "flex" and not cuda and not flex_trains_on_cpu():
        raise ConfigError(f"--attention flex: torch {torch.__version__} cannot train FlexAttention on the CPU; "
                          "use --attention sdpa")
    if requested == "flash":
        if not cuda:
            raise ConfigError("--attention flash needs CUDA GPUs (FlashAttention-2 has no CPU kernel)")
        if importlib.util.find_spec("flash_attn") is None:
            raise ConfigError("--attention flash needs the flash-attn package; use --attention flex "
                              "(PyTorch's FlexAttention, no extra package)")
    return requested


def run_flex_eagerly() -> None:
    """Let transformers' flex path run without torch.compile (torch 2.5 cannot compile it for the CPU).

    It calls torch.compile(flex_attention) itself; with dynamo disabled that returns the eager function,
    which is exact. Called on CPU runs only: nothing else there is compiled, and no compile workers start.
    """
    import torch._dynamo

    torch._dynamo.config.disable = True


def flex_in_one_dtype() -> None:
    """Give transformers' flex path query, key and value in one dtype (idempotent).

    Under autocast (the loop's bf16 with ddp) the rotary embedding leaves query and key in float32 while
    value comes out of its projection in bf16. SDPA is on autocast's list and casts all three; FlexAttention
    is not, and refuses mixed dtypes (torch 2.5). Query and key are cast to value's dtype: what autocast does
    for SDPA.
    """
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    original = ALL_ATTENTION_FUNCTIONS["flex_attention"]
    if getattr(original, "one_dtype", False):
        return

    def flex_attention_forward(module, query, key, value, attention_mask, **kwargs):
        # plain tensors for torch.compile: Gemini's parameters are ColossalAI tensor subclasses, whose
        # __torch_function__ would make dynamo fall back to the uncompiled kernel (L x L scores per head)
        query, key, value = (t.as_subclass(torch.Tensor) for t in (query, key, value))
        return original(module, query.to(value.dtype), key.to(value.dtype), value, attention_mask, **kwargs)

    flex_attention_forward.one_dtype = True
    ALL_ATTENTION_FUNCTIONS["flex_attention"] = flex_attention_forward  # this mapping's own entry


def document_block_mask(ids: torch.Tensor):
    """FlexAttention's BlockMask for causal attention within documents, built on `ids`' device.

    Args:
        ids: (B, L) from `data.loader.document_ids` (padding: an id of its own per token).
    """
    from torch.nn.attention.flex_attention import create_block_mask

    batch, length = ids.shape
    # the mask function is also evaluated past L, up to the next multiple of the tile
    padded = torch.nn.functional.pad(ids, (0, -length % BLOCK), value=-(length + 1))

    def same_document_causal(b, h, q, kv):
        return (q >= kv) & (padded[b, q] == padded[b, kv])

    # compiled on a GPU: the uncompiled builder materialises B x L x L booleans while it works
    return create_block_mask(same_document_causal, batch, None, length, length, device=ids.device,
                             _compile=ids.is_cuda)
