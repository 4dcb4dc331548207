"""Stub: the names colossalai and galore_torch import; see bitsandbytes/__init__.py."""

from .optimizer import Optimizer1State, Optimizer2State  # noqa: F401
