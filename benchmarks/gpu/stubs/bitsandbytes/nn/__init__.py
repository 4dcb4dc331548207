"""Stub: a Linear8bitLt type that no module is an instance of (peft's 8-bit LoRA dispatch checks
`isinstance(layer, bnb.nn.Linear8bitLt)`); no Linear4bit, so peft sees no 4-bit support."""

import torch


class Linear8bitLt(torch.nn.Module):
    def __init__(self, *args, **kwargs):
        raise RuntimeError("bitsandbytes.nn.Linear8bitLt is a stub on this machine (benchmarks/gpu/stubs)")
