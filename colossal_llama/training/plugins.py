"""Booster plugins as a table of constructors (the old script had a six-branch if/elif).

On a machine without CUDA only `ddp` works: Gemini, ZeRO (LowLevelZero) and
hybrid parallel assert CUDA when they are built, so they are refused before
that, with a message that names the plugin and what it needs. Also here:
which values of the 3d-only flags each plugin accepts (`check_hybrid_flags`).
"""

from __future__ import annotations

from dataclasses import dataclass

from colossal_llama.errors import ConfigError, PluginError


# flags that only the hybrid-parallel plugin (3d) reads: flag -> why another plugin cannot honour a value
HYBRID_ONLY = {
    "tp": "tensor parallelism exists in --plugin 3d only",
    "pp": "pipeline parallelism exists in --plugin 3d only",
    "sp": "sequence parallelism exists in --plugin 3d only",
    "zero_stage": "ddp runs no ZeRO, zero2/zero2_cpu are ZeRO stage 2, gemini shards everything",
    "sp_mode": "sequence parallelism exists in --plugin 3d only",
    "enable_sequence_parallelism": "sequence parallelism exists in --plugin 3d only",
    "zero_cpu_offload": "use --plugin zero2_cpu for ZeRO-2 with CPU offload, or gemini_auto",
    "microbatch_size": "micro-batches are pipeline-parallel micro-batches; use --accumulation_steps",
}

# Old Colossal-LLaMA launch scripts pass the 3d flags at the old train.py's defaults whatever the
# plugin (`--tp 1 --pp 1 --sp 1 --zero_stage 1 --sp_mode split_gather --microbatch_size 1`). Ours are
# the same but for --zero_stage: 0 here, as ColossalAI's ZeRO optimizer refuses fp32 and only adds
# overhead at data-parallel size 1. Both defaults ask nothing of another plugin, so both are accepted.
OLD_DEFAULTS = {"zero_stage": 1}

# values of 3d-only flags that another plugin runs anyway, so they are accepted with it too
HONOURED = {
    "zero2": {"zero_stage": (2,)},
    "zero2_cpu": {"zero_stage": (2,), "zero_cpu_offload": (True,)},
}


def check_hybrid_flags(plugin: str, settings: dict, defaults: dict) -> None:
    """Refuse a 3d-only flag set to a value `plugin` cannot honour (a default, old or new, is accepted).

    Args:
        settings, defaults: flag name -> value given / TrainConfig's default.
    Raises:
        ConfigError: naming the flag and why the plugin cannot honour it.
    """
    if plugin == "3d":
        return
    for name, reason in HYBRID_ONLY.items():
        accepted = {defaults[name], OLD_DEFAULTS.get(name, defaults[name]), *HONOURED.get(plugin, {}).get(name, ())}
        if settings[name] not in accepted:
            raise ConfigError(f"--{name} does not apply to --plugin {plugin}: {reason}")


@dataclass
class PluginSettings:
    precision: str = "bf16"
    tp: int = 1
    pp: int = 1
    sp: int = 1
    zero_stage: int = 1
    sp_mode: str | None = None
    enable_sequence_parallelism: bool = False
    zero_cpu_offload: bool = False
    microbatch_size: int = 1
    max_norm: float = 0.0
    enable_flash_attention: bool = False
    gradient_accumulation: bool = False


def settings_from(config) -> PluginSettings:
    """The plugin-relevant part of a TrainConfig."""
    return PluginSettings(precision=config.mixed_precision, tp=config.tp, pp=config.pp, sp=config.sp,
                          zero_stage=config.zero_stage, sp_mode=config.sp_mode if config.enable_sequence_parallelism
                          else None, enable_sequence_parallelism=config.enable_sequence_parallelism,
                          zero_cpu_offload=config.zero_cpu_offload, microbatch_size=config.microbatch_size,
                          max_norm=config.grad_clip, enable_flash_attention=config.use_flash_attn,
                          gradient_accumulation=config.accumulation_steps > 1)


def _ddp(s: PluginSettings):
    from colossalai.booster.plugin import TorchDDPPlugin

    return TorchDDPPlugin(find_unused_parameters=False)


def _gemini(placement: str):
    def build(s: PluginSettings):
        from colossalai.booster.plugin import GeminiPlugin

        return GeminiPlugin(precision=s.precision, placement_policy=placement, initial_scale=2**16,
                            max_norm=s.max_norm, enable_gradient_accumulation=s.gradient_accumulation)
    return build


def _zero2(cpu_offload: bool):
    def build(s: PluginSettings):
        from colossalai.booster.plugin import LowLevelZeroPlugin

        return LowLevelZeroPlugin(stage=2, precision=s.precision, initial_scale=2**16, cpu_offload=cpu_offload,
                                  max_norm=s.max_norm)
    return build


def _hybrid(s: PluginSettings):
    from colossalai.booster.plugin import HybridParallelPlugin

    return HybridParallelPlugin(tp_size=s.tp, pp_size=s.pp, sp_size=s.sp, sequence_parallelism_mode=s.sp_mode,
                                enable_sequence_parallelism=s.enable_sequence_parallelism, zero_stage=s.zero_stage,
                                cpu_offload=s.zero_cpu_offload, precision=s.precision,
                                microbatch_size=s.microbatch_size if s.pp > 1 else None, initial_scale=1,
                                max_norm=s.max_norm, enable_flash_attention=s.enable_flash_attention,
                                parallel_output=False)


# name -> (constructor, needs CUDA)
PLUGINS = {
    "ddp": (_ddp, False),
    "gemini": (_gemini("static"), True),
    "gemini_auto": (_gemini("auto"), True),
    "zero2": (_zero2(cpu_offload=False), True),
    "zero2_cpu": (_zero2(cpu_offload=True), True),
    "3d": (_hybrid, True),
}


def make_plugin(name: str, settings: PluginSettings, cuda_available: bool):
    """Build the plugin `name`.

    Raises:
        PluginError: an unknown name, or a CUDA-only plugin without CUDA.
    """
    if name not in PLUGINS:
        raise PluginError(f"--plugin must be one of {sorted(PLUGINS)}, got {name!r}")
    build, needs_cuda = PLUGINS[name]
    if needs_cuda and not cuda_available:
        raise PluginError(f"--plugin {name} needs CUDA GPUs (ColossalAI builds it on CUDA only); "
                          "on a machine without a GPU use --plugin ddp")
    return build(settings)
