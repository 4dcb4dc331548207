"""Booster plugins as a table: one `PluginSpec` per plugin holds everything that differs between them.

    spec = spec_of("ddp")                 # PluginError for an unknown name
    check_cuda("gemini", cuda_available)  # PluginError: it needs CUDA
    plugin = make_plugin("ddp", settings_from(config))

The old script had a six-branch if/elif; here the training code never
compares plugin names: it reads a field of the spec (who clips, who owns the
precision, how the optimizer is saved, ...). On a machine without CUDA only
`ddp` works: Gemini, ZeRO (LowLevelZero) and hybrid parallel assert CUDA when
they are built, so `check_cuda` refuses them first, with a message that names
the plugin and what it needs. Also here: which values of the 3d-only flags
each plugin accepts (`check_hybrid_flags`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from colossal_llama.errors import ConfigError, PluginError


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
                          max_norm=config.grad_clip, enable_flash_attention=colo_attention(config),
                          gradient_accumulation=config.accumulation_steps > 1)


def colo_attention(config) -> bool:
    """Whether --plugin 3d gets ColossalAI's own flash attention (its `enable_flash_attention`).

    Only without isolation: ColoAttention takes a 2-D padding mask and builds one causal mask over the whole
    row, so it would let packed documents see each other (colossalai 0.5.0 shardformer/layer/attn.py,
    prepare_attn_kwargs; tests/test_shardformer_isolation.py). With isolation, --attention flash is
    transformers' FlashAttention-2, which splits the row at the restarting position ids.
    """
    return config.attention == "flash" and config.packed_attention == "cross"


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


@dataclass(frozen=True)
class PluginSpec:
    """What one Booster plugin is and does differently from the others."""

    build: Callable[[PluginSettings], object]
    """Constructor of the ColossalAI plugin (imports ColossalAI only when called)."""

    needs_cuda: bool = True
    """ColossalAI builds it on CUDA only (it asserts deep inside otherwise)."""

    precisions: tuple[str, ...] = ("fp32", "bf16", "fp16")
    """--mixed_precision values it trains in."""

    loop_owns_precision: bool = False
    """True: the plugin leaves precision to the training code, which keeps fp32 master weights and computes
    under torch.autocast (bf16) or the Booster's torch AMP (fp16). False: the model is loaded in the compute
    dtype and the plugin keeps its own fp32 copies and loss scaling."""

    clips_in_loop: bool = False
    """True: the loop clips the gradient norm before optimizer.step(); False: the plugin's optimizer clips
    to `max_norm` itself (and reports the norm, where it can)."""

    no_sync: bool = False
    """`booster.no_sync` applies: the gradient all-reduce is skipped on all micro-batches but a step's last."""

    whole_optimizer: bool = False
    """Every rank holds the whole optimizer state, saved unsharded as `optimizer.pt` (ColossalAI's sharded
    loader calls an accelerator synchronize that its CPU accelerator refuses). False: ColossalAI's shards in
    `optimizer/`."""

    whole_model: bool = False
    """Every rank holds the whole model: the export merges LoRA adapters in place and saves plain
    transformers weights. False: `booster.save_model` gathers the shards."""

    hybrid: bool = False
    """It reads the tensor/pipeline/sequence-parallel and ZeRO flags (`HYBRID_ONLY`)."""

    honoured: dict[str, tuple] = field(default_factory=dict)
    """Values of 3d-only flags it runs anyway (zero2 is ZeRO stage 2), so they are accepted with it too."""

    def weights_precision(self, precision: str) -> str:
        """Precision the model is loaded in for --mixed_precision `precision`."""
        return "fp32" if self.loop_owns_precision else precision

    def autocast_precision(self, precision: str) -> str | None:
        """Precision the loop's forward runs under torch.autocast in (None: no autocast)."""
        return "bf16" if self.loop_owns_precision and precision == "bf16" else None

    def booster_mixed_precision(self, precision: str) -> str | None:
        """`Booster(mixed_precision=...)`: torch AMP with loss scaling for fp16 where the loop owns precision."""
        return "fp16" if self.loop_owns_precision and precision == "fp16" else None

    @property
    def optimizer_file(self) -> str:
        """Name of the optimizer state in a checkpoint folder (old ddp checkpoints hold `optimizer.pt`)."""
        return "optimizer.pt" if self.whole_optimizer else "optimizer"


_ANY = ("fp32", "bf16", "fp16")
# Gemini keeps no fp32 mode; ddp in fp32 simply runs without autocast
PLUGINS: dict[str, PluginSpec] = {
    "ddp": PluginSpec(_ddp, needs_cuda=False, precisions=_ANY, loop_owns_precision=True, clips_in_loop=True,
                      no_sync=True, whole_optimizer=True, whole_model=True),
    "gemini": PluginSpec(_gemini("static"), precisions=("bf16", "fp16")),
    "gemini_auto": PluginSpec(_gemini("auto"), precisions=("bf16", "fp16")),
    "zero2": PluginSpec(_zero2(cpu_offload=False), honoured={"zero_stage": (2,)}),
    "zero2_cpu": PluginSpec(_zero2(cpu_offload=True), honoured={"zero_stage": (2,), "zero_cpu_offload": (True,)}),
    "3d": PluginSpec(_hybrid, hybrid=True),
}


def spec_of(name: str) -> PluginSpec:
    """The table entry of plugin `name`.

    Raises:
        PluginError: an unknown name.
    """
    if name not in PLUGINS:
        raise PluginError(f"--plugin must be one of {list(PLUGINS)}, got {name!r}")
    return PLUGINS[name]


def check_cuda(name: str, cuda_available: bool) -> None:
    """Refuse a CUDA-only plugin on a machine without CUDA (before ColossalAI asserts inside its constructor).

    Raises:
        PluginError: naming the plugin and the one that runs without a GPU.
    """
    if spec_of(name).needs_cuda and not cuda_available:
        raise PluginError(f"--plugin {name} needs CUDA GPUs (ColossalAI builds it on CUDA only); "
                          "on a machine without a GPU use --plugin ddp")


def make_plugin(name: str, settings: PluginSettings):
    """Build the plugin `name` (on a machine `check_cuda` accepted it for).

    Raises:
        PluginError: an unknown name.
    """
    return spec_of(name).build(settings)


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


def check_hybrid_flags(plugin: str, settings: dict, defaults: dict) -> None:
    """Refuse a 3d-only flag set to a value `plugin` cannot honour (a default, old or new, is accepted).

    Args:
        settings, defaults: flag name -> value given / TrainConfig's default.
    Raises:
        ConfigError: naming the flag and why the plugin cannot honour it.
    """
    spec = spec_of(plugin)
    if spec.hybrid:
        return
    for name, reason in HYBRID_ONLY.items():
        accepted = {defaults[name], OLD_DEFAULTS.get(name, defaults[name]), *spec.honoured.get(name, ())}
        if settings[name] not in accepted:
            raise ConfigError(f"--{name} does not apply to --plugin {plugin}: {reason}")
