"""Training settings, shared by the `sft` and `cpt` stage kinds."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from openrecipe.config.base import StrictModel

# Device types where `compile: auto` compiles (bench/train.py measures compiled against eager).
COMPILE_PAYS_OFF = frozenset({"cuda"})


class LoraSettings(StrictModel):
    rank: int = Field(16, ge=1, le=1024)
    alpha: float = Field(32.0, gt=0)
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    target_modules: list[str] | Literal["all-linear"] = Field("all-linear", description="Module names or all-linear")


class ScheduleSettings(StrictModel):
    kind: Literal["cosine", "linear", "constant"] = "cosine"
    warmup_steps: int = Field(0, ge=0)
    warmup_ratio: float = Field(0.0, ge=0.0, lt=1.0, description="Used when warmup_steps is 0")
    min_lr_ratio: float = Field(0.0, ge=0.0, le=1.0, description="Final LR as a fraction of the peak")


class Probe(StrictModel):
    """A question asked during training; passes when the reply contains every `expect` string."""

    prompt: str
    expect: list[str] = Field(min_length=1)
    reject: list[str] = Field(default_factory=list, description="Strings the reply must not contain")


class ProbeSettings(StrictModel):
    every_steps: int = Field(0, ge=0, description="Run probes every N optimizer steps (0 = only at epoch ends)")
    identity: bool = Field(True, description="Add held-out identity questions when the recipe has an identity")
    extra: list[Probe] = Field(default_factory=list)
    stop_when_passed: bool = Field(True, description="Stop training as soon as every probe passes")
    min_epochs: float = Field(0.0, ge=0.0, description="Do not stop before this many epochs")
    max_new_tokens: int = Field(40, ge=1)


class DistributedSettings(StrictModel):
    """How several processes (torchrun / accelerate launch) share a run; one process ignores it."""

    strategy: Literal["ddp", "fsdp", "deepspeed"] = Field(
        "ddp",
        description="ddp: every process holds the whole model; fsdp: FSDP2 shards parameters, gradients and "
        "optimizer state over the processes; deepspeed: DeepSpeed ZeRO (needs the deepspeed package)",
    )
    zero_stage: Literal[2, 3] | None = Field(
        None,
        description="deepspeed only: 2 shards gradients and optimizer state, 3 also the parameters (default 2)",
    )
    timeout_s: int = Field(
        600,
        ge=10,
        description="A collective waiting this long (a process died or hangs) fails, stopping the whole job",
    )

    @model_validator(mode="after")
    def _stage_needs_deepspeed(self) -> DistributedSettings:
        if self.zero_stage is not None and self.strategy != "deepspeed":
            raise ValueError(
                f"zero_stage applies to strategy: deepspeed, not {self.strategy}; remove it or set strategy: deepspeed"
            )
        return self

    @property
    def stage(self) -> int:
        """The ZeRO stage a deepspeed run uses."""
        return self.zero_stage or 2


class TrainSettings(StrictModel):
    method: Literal["lora", "full", "qlora"] = "lora"
    lora: LoraSettings = Field(default_factory=LoraSettings)
    learning_rate: float = Field(2e-4, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    betas: tuple[float, float] = (0.9, 0.999)
    epochs: float = Field(1.0, gt=0, description="Passes over the training mixture (fractions allowed)")
    max_steps: int | None = Field(None, ge=1, description="Overrides epochs when set")
    batch_size: int = Field(8, ge=1, description="Global batch size (examples per optimizer step)")
    micro_batch_size: int | None = Field(None, ge=1, description="Per-forward batch; accumulation fills the rest")
    micro_batch_tokens: Annotated[int, Field(ge=16)] | Literal["auto"] | None = Field(
        "auto",
        description="Most padded tokens per forward pass; micro-batches split further to stay under it, capping "
        "activation memory at the same summed loss. auto: 256 on CPU, no cap on GPUs; null: no cap",
    )
    max_grad_norm: float | None = Field(1.0, gt=0)
    schedule: ScheduleSettings = Field(default_factory=ScheduleSettings)
    precision: Literal["auto", "bf16", "fp32"] = Field("auto", description="auto: bf16 autocast where fast")
    gradient_checkpointing: bool = False
    compile: bool | Literal["auto"] = Field(
        "auto",
        description="torch.compile the decoder; micro-batches are padded to a few fixed shapes (length buckets), "
        "each compiled once. auto: on for CUDA GPUs, off on CPU (where compiling measured not to pay off; "
        "README's training section)",
    )
    eval_fraction: float = Field(0.05, ge=0.0, lt=0.5, description="Held-out share of the data for eval loss")
    eval_every_steps: int = Field(0, ge=0, description="0 = at the end of each epoch")
    save_every_steps: int = Field(50, ge=1)
    keep_checkpoints: int = Field(2, ge=2)
    nonfinite_patience: int = Field(5, ge=1, description="Stop after this many consecutive NaN/inf steps")
    tensorboard: bool = False
    distributed: DistributedSettings = Field(default_factory=DistributedSettings)

    @model_validator(mode="after")
    def _batches(self) -> TrainSettings:
        if self.micro_batch_size is not None and self.batch_size % self.micro_batch_size:
            raise ValueError(
                f"batch_size ({self.batch_size}) must be a multiple of micro_batch_size ({self.micro_batch_size})"
            )
        return self

    @property
    def micro(self) -> int:
        return self.micro_batch_size or self.batch_size

    def token_cap(self, device_type: str) -> int | None:
        """A cap bounds activation memory on CPU, where small matmuls are already efficient (measured in the
        README's training section); GPUs keep whole micro-batches, where larger matmuls make them fast."""
        if self.micro_batch_tokens == "auto":
            return 256 if device_type == "cpu" else None
        return self.micro_batch_tokens

    def compiles(self, device_type: str) -> bool:
        """Whether to compile on this device type: `auto` follows the per-device measurement in the README."""
        if self.compile == "auto":
            return device_type in COMPILE_PAYS_OFF
        return self.compile

    @property
    def accumulation(self) -> int:
        return self.batch_size // self.micro

    def trajectory(self) -> dict:
        """Settings that change the training trajectory: resuming under different ones is refused."""
        return self.model_dump(
            mode="json",
            exclude={
                "save_every_steps",
                "keep_checkpoints",
                "tensorboard",
                "epochs",
                "max_steps",
                "eval_every_steps",
                "nonfinite_patience",
                "compile",
                "micro_batch_tokens",  # memory only: the same summed loss, split differently
                "distributed",  # how processes share the work, not what they compute
            },
        )
