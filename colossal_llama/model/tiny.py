"""A tiny LLaMA built in code for a tokenizer: for the demo, tests and benchmarks (nothing is downloaded).

    python -m colossal_llama.model.tiny TOKENIZER_DIR OUT_DIR --layers 2 --hidden 64
"""

from __future__ import annotations

import argparse


def build_tiny_llama(tokenizer_dir: str, out_dir: str, layers: int = 2, hidden: int = 64, positions: int = 512,
                     tie: bool = False, seed: int = 0) -> str:
    """Save a randomly initialised LlamaForCausalLM sized for the tokenizer, with the tokenizer, to `out_dir`."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from colossal_llama.tokenizer.folder import save_tokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir, trust_remote_code=False)
    torch.manual_seed(seed)
    heads = max(1, hidden // 16)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=max(1, heads // 2),
                         max_position_embeddings=positions, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, tie_word_embeddings=tie)
    LlamaForCausalLM(config).save_pretrained(out_dir, safe_serialization=True)
    save_tokenizer(tokenizer, out_dir)
    return out_dir


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Save a tiny random LLaMA for a tokenizer.")
    p.add_argument("tokenizer_dir")
    p.add_argument("out_dir")
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--positions", type=int, default=512)
    args = p.parse_args(argv)
    print(build_tiny_llama(args.tokenizer_dir, args.out_dir, args.layers, args.hidden, args.positions))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
