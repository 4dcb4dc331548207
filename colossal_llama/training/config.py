"""The training config: one dataclass, filled from defaults < `--config FILE` < command-line flags.

    config = parse_train_args(["--pretrained", "model", "--dataset", "out/arrow/part-00000", "--plugin", "ddp"])

The flags keep the names of the old Colossal-LLaMA `train.py`, so existing
launch scripts work; the parser is generated from the fields, so every field
is a flag and its --help is the docstring under it. Validation lives in
`__post_init__`: a value that cannot work, or a flag set to a value the chosen
plugin cannot honour, is refused with the reason (nothing is silently ignored;
the 3d-only flags at their defaults, which old launch scripts always pass, are
accepted with every plugin: see `plugins.check_hybrid_flags`).
Checks that need the machine (CUDA present?) are in `check_machine`; the
command line is built from the fields in `cli.py`. What differs between
plugins (precisions, CUDA, ...) is read from their table in `plugins.py`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from colossal_llama.errors import ConfigError
from colossal_llama.model.attention import PATHS, resolve_attention
from colossal_llama.training.plugins import PLUGINS, check_cuda, check_hybrid_flags, spec_of

CHOICES = {
    "plugin": tuple(PLUGINS),
    "mixed_precision": ("fp32", "bf16", "fp16"),
    "pad_token": ("eos", "unk"),
    "padding_mode": ("longest", "max_length"),
    "packed_attention": ("isolate", "cross"),
    "attention": PATHS,
    "sp_mode": ("split_gather", "ring", "all_to_all"),
    "zero_stage": (0, 1, 2),
}


@dataclass
class TrainConfig:
    """Settings of `train.py`."""

    pretrained: str = ""
    """HF model folder to start from (config.json, weights, tokenizer)."""

    dataset: list[str] = field(default_factory=list)
    """Prepared bucket folders (`<out>/arrow/part-XXXXX`), consumed in the given order."""

    plugin: str = "gemini"
    """ColossalAI Booster plugin; on a machine without CUDA only `ddp` runs."""

    load_checkpoint: str | None = None
    """Checkpoint folder to resume from (`latest` = the newest complete one in --save_dir, if any)."""

    weights_only: bool = False
    """With --load_checkpoint: load the model weights only (a new stage: fresh optimizer, schedule and data
    position). The folder may be a checkpoint or an HF model folder."""

    save_interval: int = 1000
    """Save a checkpoint every this many optimizer steps (0: only at epoch ends and at the end)."""

    save_dir: str = "checkpoint_dir"
    """Checkpoints go to `<save_dir>/step-XXXXXXXX`, the final HF model to --export_dir."""

    keep_last_n_checkpoints: int = 0
    """Delete older checkpoints, keeping this many (0: keep all)."""

    export_dir: str | None = None
    """Final HF model folder (safetensors + tokenizer + chat template); default `<save_dir>/final`."""

    tensorboard_dir: str = "logs_dir"
    """Tensorboard event files and `metrics.jsonl` (one line per logged step)."""

    config_file: str | None = None
    """Where to write the resolved config as JSON (default `<save_dir>/train_config.json`)."""

    num_epochs: int = 1
    """Passes over the data."""

    max_steps: int = 0
    """Stop after this many optimizer steps in all (0: run every epoch); the schedule then ends there."""

    accumulation_steps: int = 1
    """Micro-batches per optimizer step on each data-parallel rank."""

    batch_size: int = 2
    """Rows per micro-batch on each data-parallel rank."""

    lr: float = 3e-4
    """Peak learning rate (after warmup)."""

    min_lr_ratio: float = 0.1
    """The cosine decays to lr * this (the old script: 0.1)."""

    max_length: int | None = None
    """Longest row accepted (default: the data's max_length); the padding length of --padding_mode max_length."""

    mixed_precision: str = "bf16"
    """Compute precision; fp32 for exact CPU runs (the old script offered fp16/bf16 only, default fp16)."""

    grad_clip: float = 1.0
    """Clip the global gradient norm to this (0: no clipping)."""

    weight_decay: float = 0.1
    """AdamW weight decay."""

    warmup_steps: int | None = None
    """Linear warmup steps (default: 2.5% of all optimizer steps, as the old script)."""

    use_grad_checkpoint: bool = False
    """Recompute activations in the backward pass (less memory, about a third more compute)."""

    attention: str = "auto"
    """Attention kernel (model/attention.py): `sdpa` (isolation as an L x L mask), `flex` (PyTorch's
    FlexAttention: a block mask, skips the tiles between documents), `flash` (FlashAttention-2, needs flash-attn);
    `auto`: flex on a GPU with --packed_attention isolate, else sdpa."""

    use_flash_attn: bool = False
    """The old flag for --attention flash (CUDA, fp16/bf16, the flash-attn package)."""

    dataloader_workers: int | None = None
    """Processes that read and collate the next micro-batches while the model trains (default: 2 with CUDA;
    0 on CPU, where the cores are busy training and the collator runs on the training thread)."""

    use_neft: bool = False
    """NEFTune: uniform noise on the input embeddings while training."""

    neft_alpha: float = 5.0
    """NEFTune noise scale (noise ~ U(-1, 1) * alpha / sqrt(length * hidden))."""

    freeze_non_embeds_params: bool = False
    """Train only the embeddings (and an untied output head)."""

    train_new_rows_only: int = 0
    """Old vocabulary size N: train only embedding rows >= N (after a vocabulary expansion); 0: off."""

    lora_rank: int = 0
    """LoRA rank on every linear layer of the decoder (0: off); the export merges the adapters in."""

    lora_alpha: float | None = None
    """LoRA scale numerator (default: 2 * rank)."""

    pad_token: str = "eos"
    """Token id written into padding (never used to find padding: the mask comes from lengths)."""

    padding_mode: str = "longest"
    """Pad each batch to its longest row, or every batch to --max_length."""

    packed_attention: str = "isolate"
    """`isolate`: documents packed in a row cannot see each other, positions restart; `cross`: they can."""

    skip_save_each_epoch: bool = False
    """Do not save a checkpoint at the end of each epoch."""

    tp: int = 1
    """Tensor-parallel size (--plugin 3d)."""

    pp: int = 1
    """Pipeline-parallel size (--plugin 3d)."""

    sp: int = 1
    """Sequence-parallel size (--plugin 3d, with ring or all_to_all)."""

    zero_stage: int = 0
    """ZeRO stage of the data-parallel part of --plugin 3d (1 or 2: bf16/fp16 only). Other plugins accept
    0 and the old default 1, and zero2/zero2_cpu also 2."""

    sp_mode: str = "split_gather"
    """Sequence-parallel mode (--plugin 3d with --enable_sequence_parallelism)."""

    enable_sequence_parallelism: bool = False
    """Turn on sequence parallelism (--plugin 3d)."""

    zero_cpu_offload: bool = False
    """Offload ZeRO optimizer states to CPU (--plugin 3d with --zero_stage >= 1)."""

    microbatch_size: int = 1
    """Pipeline micro-batch size (--plugin 3d with --pp > 1); must divide --batch_size."""

    eval_dataset: list[str] = field(default_factory=list)
    """Prepared bucket folders to evaluate on (loss per category)."""

    eval_interval: int = 0
    """Evaluate every this many optimizer steps (0: at the end of each epoch only)."""

    log_interval: int = 1
    """Log a summary line and tensorboard scalars every this many optimizer steps."""

    seed: int = 42
    """Seed of the data order, initialisation of new modules (LoRA) and noise (NEFTune)."""

    trust_remote_code: bool = False
    """Allow model code from the model folder (off: only transformers' own architectures)."""

    benchmark: bool = False
    """Train on random rows of --max_length tokens instead of --dataset (throughput only)."""

    num_samples: int = 500
    """Random rows for --benchmark."""

    def __post_init__(self) -> None:
        for name, choices in CHOICES.items():
            if getattr(self, name) not in choices:
                raise ConfigError(f"--{name} must be one of {list(choices)}, got {getattr(self, name)!r}")
        if isinstance(self.dataset, str):
            self.dataset = [self.dataset]
        if isinstance(self.eval_dataset, str):
            self.eval_dataset = [self.eval_dataset]
        if not self.pretrained:
            raise ConfigError("--pretrained: give the HF model folder to start from")
        if not self.dataset and not self.benchmark:
            raise ConfigError("--dataset: give at least one prepared bucket folder (or --benchmark)")
        for name in ("num_epochs", "accumulation_steps", "batch_size", "log_interval", "tp", "pp", "sp",
                     "microbatch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name} must be at least 1, got {getattr(self, name)}")
        for name in ("save_interval", "keep_last_n_checkpoints", "max_steps", "eval_interval", "grad_clip",
                     "weight_decay", "train_new_rows_only", "lora_rank"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name} must not be negative, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ConfigError(f"--lr must be positive, got {self.lr}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ConfigError(f"--min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if self.warmup_steps is not None and self.warmup_steps < 0:
            raise ConfigError(f"--warmup_steps must not be negative, got {self.warmup_steps}")
        if self.max_length is not None and self.max_length < 2:
            raise ConfigError(f"--max_length must be at least 2, got {self.max_length}")
        self._check_applies()

    def _check_applies(self) -> None:
        """Refuse a flag that would have no effect here (a 3d-only flag at its default is fine), with the reason."""
        defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
        check_hybrid_flags(self.plugin, self.to_dict(), defaults)
        spec = spec_of(self.plugin)
        if self.mixed_precision not in spec.precisions:
            raise ConfigError(f"--mixed_precision {self.mixed_precision} is not available with --plugin {self.plugin} "
                              f"(it trains in {', '.join(spec.precisions)})")
        pairs = [  # (flag given without its partner, partner, reason)
            ("weights_only", "load_checkpoint", "there is nothing to load weights from"),
            ("eval_interval", "eval_dataset", "there is nothing to evaluate on"),
            ("neft_alpha", "use_neft", "NEFTune is off"),
            ("lora_alpha", "lora_rank", "LoRA is off"),
            ("num_samples", "benchmark", "random rows are used with --benchmark only"),
        ]
        for name, partner, reason in pairs:
            if getattr(self, name) != defaults[name] and not getattr(self, partner):
                raise ConfigError(f"--{name} needs --{partner}: {reason}")
        if self.benchmark and self.dataset:
            raise ConfigError("--benchmark trains on random rows: leave out --dataset")
        if self.benchmark and not self.max_length:
            raise ConfigError("--benchmark needs --max_length (the length of the random rows)")
        if self.lora_rank and (self.freeze_non_embeds_params or self.train_new_rows_only):
            raise ConfigError("--lora_rank trains adapters only; it cannot be combined with "
                              "--freeze_non_embeds_params or --train_new_rows_only")
        if spec.hybrid:
            self._check_hybrid()
        if self.pp > 1 and self.accumulation_steps > 1:
            raise ConfigError("--accumulation_steps > 1 with --pp > 1: the pipeline already accumulates its "
                              "micro-batches; raise --batch_size (a multiple of --microbatch_size) instead")
        if self.pp > 1 and self.batch_size % self.microbatch_size:
            raise ConfigError(f"--batch_size {self.batch_size} is not a multiple of --microbatch_size "
                              f"{self.microbatch_size}")
        if self.microbatch_size != 1 and self.pp == 1:
            raise ConfigError("--microbatch_size applies with --pp > 1 only (pipeline micro-batches)")
        if self.sp > 1 and not self.enable_sequence_parallelism:
            raise ConfigError("--sp > 1 needs --enable_sequence_parallelism")
        if self.sp_mode != defaults["sp_mode"] and not self.enable_sequence_parallelism:
            raise ConfigError("--sp_mode needs --enable_sequence_parallelism")
        if self.use_flash_attn and self.attention not in ("auto", "flash"):
            raise ConfigError(f"--use_flash_attn is --attention flash; it cannot go with --attention {self.attention}")
        if self.use_flash_attn:
            self.attention = "flash"
        if self.attention == "flash" and self.mixed_precision == "fp32":
            raise ConfigError("--attention flash runs in fp16/bf16 only; choose --mixed_precision bf16")
        if self.dataloader_workers is not None and self.dataloader_workers < 0:
            raise ConfigError(f"--dataloader_workers must not be negative, got {self.dataloader_workers}")

    def _check_hybrid(self) -> None:
        """What --plugin 3d cannot run (ColossalAI would assert deep inside boost())."""
        if self.zero_cpu_offload and self.zero_stage == 0:
            raise ConfigError("--zero_cpu_offload needs --zero_stage 1 or 2 (it offloads ZeRO's optimizer states)")
        if self.zero_stage > 0 and self.mixed_precision == "fp32":
            raise ConfigError(f"--zero_stage {self.zero_stage}: ColossalAI's ZeRO optimizer trains in fp16/bf16 "
                              "only; choose --mixed_precision bf16, or --zero_stage 0 for fp32")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def check_machine(config: TrainConfig, cuda_available: bool) -> None:
    """Refuse settings this machine cannot run, before anything is loaded.

    Raises:
        PluginError: a plugin that needs CUDA, without it.
        ConfigError: fp16 without CUDA, an attention path this machine cannot run.
    """
    check_cuda(config.plugin, cuda_available)
    if not cuda_available:
        if config.mixed_precision == "fp16":
            raise ConfigError("--mixed_precision fp16 needs CUDA (its loss scaling runs on GPU); on CPU use fp32 or bf16")
    attention_of(config, cuda_available)


def attention_of(config: TrainConfig, cuda_available: bool) -> str:
    """The attention path this run trains with (--attention, `auto` resolved for this machine and layout).

    Two layouts of --plugin 3d keep documents apart with the 4-D mask only (colossalai 0.5.0, read and run
    in tests/test_shardformer_isolation.py): the pipeline cuts every tensor of a batch into micro-batches
    but hands the whole block mask to each, which would then be masked with the first row's documents; and
    sequence parallelism's attention applies a given mask only (without one it is not even causal).

    Raises:
        ConfigError: a path this machine or layout cannot run.
    """
    isolate = config.packed_attention == "isolate"
    split = config.pp > 1 and config.batch_size > config.microbatch_size
    requested = "sdpa" if config.attention == "auto" and (split or config.enable_sequence_parallelism) \
        else config.attention
    path = resolve_attention(requested, isolate, cuda_available)
    if path == "flex" and split:
        raise ConfigError("--attention flex with --pp > 1: the pipeline cannot cut the block mask into its "
                          "micro-batches; use --attention sdpa (or --batch_size equal to --microbatch_size)")
    if config.enable_sequence_parallelism and not (isolate and path == "sdpa"):
        raise ConfigError("--enable_sequence_parallelism keeps the attention causal and the documents apart "
                          "only with the 4-D mask: use --packed_attention isolate --attention sdpa")
    return path


def loader_workers(config: TrainConfig, cuda_available: bool) -> int:
    """--dataloader_workers, or its default for this machine."""
    if config.dataloader_workers is not None:
        return config.dataloader_workers
    return 2 if cuda_available else 0
