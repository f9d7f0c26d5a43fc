"""What ``vtclip bench`` measures and how often: ``BenchConfig`` and its presets."""
from __future__ import annotations

from dataclasses import dataclass

TRAIN_METHODS = ("vtclip", "clip-adapter", "tip-adapter-f", "coop")
#: options that skip work outside an epoch (Tip-Adapter-F's val search of alpha, beta)
METHOD_OPTIONS = {"tip-adapter-f": dict(alpha=1.0, beta=1.0)}


@dataclass(frozen=True)
class BenchConfig:
    """What ``vtclip bench`` measures and how often."""

    device: str = "cpu"                  # "cpu" or "cuda"
    quick: bool = False                  # tiny architectures, seconds (tests); numbers not meaningful
    image_size: int = 224                # input resolution of the real-size backbones
    extract_batch: tuple = (16, 8)       # images per batch for (RN50, ViT-B/16) throughput
    precisions: tuple = ("fp32",)        # extraction precisions (bf16/fp16 = CUDA autocast)
    channels_last: tuple = (False, True)  # RN50 memory formats to try
    warmup: int = 1                      # untimed runs before every measurement
    repeats: int = 3                     # timed runs; the median is reported
    classes: int = 1000                  # K of the training problem (ImageNet-sized)
    shots: int = 16                      # images per class: an epoch is classes * shots images
    train_batch: int = 32                # images per training step (the paper's batch)
    train_steps: int | None = 2          # steps timed per epoch (None: the full epoch)
    train_repeats: int = 2               # timed epochs (after one warm-up epoch)
    on_the_fly_repeats: int = 1          # the same with the encoder in every step (slow on a CPU)
    coop_classes: tuple | None = (100, 250)  # K at which CoOp is timed, then extrapolated; None: `classes`
    infer_classes: tuple = (10, 100, 1000)   # K for the inference comparison
    infer_batch: int = 16                # images per inference batch
    seed: int = 0                        # seeds the random weights, pixels and features

    @classmethod
    def cpu(cls, **kw) -> "BenchConfig":
        """A CPU run of ~15 min on 2 cores: one timed step per epoch, extrapolated epochs."""
        return cls(**{**dict(train_steps=1), **kw})

    @classmethod
    def cuda(cls, **kw) -> "BenchConfig":
        """A GPU run: full epochs, K = 1000 for every method, bf16/fp16 and channels-last."""
        return cls(**{**dict(device="cuda", extract_batch=(256, 256), precisions=("fp32", "bf16", "fp16"),
                             warmup=3, repeats=10, train_steps=None, train_repeats=2, on_the_fly_repeats=2,
                             coop_classes=None, infer_batch=256), **kw})

    @classmethod
    def quick_run(cls, device: str = "cpu", **kw) -> "BenchConfig":
        """Seconds: tiny architectures of both families and small K (for tests)."""
        return cls(**{**dict(device=device, quick=True, image_size=64, extract_batch=(2, 2),
                             warmup=1, repeats=1, classes=20, shots=2, train_batch=4, train_steps=1,
                             train_repeats=1, coop_classes=(5, 10), infer_classes=(5, 20),
                             infer_batch=2), **kw})
