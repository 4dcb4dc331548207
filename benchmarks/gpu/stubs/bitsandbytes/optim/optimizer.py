"""Stub optimizer base classes: subclassable (colossalai's GaLoreAdamW8bit), not constructible."""

import torch


class _Unavailable(torch.optim.Optimizer):
    def __init__(self, *args, **kwargs):
        raise RuntimeError(
            f"bitsandbytes.optim.{type(self).__name__} is a stub on this machine (benchmarks/gpu/stubs): "
            "8-bit optimizers are not available; install the real bitsandbytes to use them"
        )


class Optimizer1State(_Unavailable):
    pass


class Optimizer2State(_Unavailable):
    pass
