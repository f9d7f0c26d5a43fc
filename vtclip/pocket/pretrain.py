"""Pocket CLIP: a small transformers ``CLIPModel`` contrastively pretrained on rendered scenes.

Every batch is rendered on the fly from ``(seed, step)``, so a run is deterministic under its
seed, needs no dataset on disk, and resumes exactly from a checkpoint (model + optimiser +
schedule + step). What made shape learnable in minutes on 2 CPU cores (measured, 400-step runs):

* **Locked text warm-up** (``text_freeze``): with both towers random, the image tower encodes
  colour first, the text tower then learns to ignore shape words, and shape never starts
  (zero-shot shape stayed at chance after 600 steps). Holding the random text tower fixed for the
  first steps gives the image tower distinct targets to fit: 79% zero-shot shape after 400 steps.
* **Multi-positive loss**: "a star" is true of every star in the batch, so every image a caption
  is true of is its positive (soft targets, as in UniCL / SupCon), not a negative.
  ``loss="clip"`` gives CLIP's one-positive InfoNCE.
* **ViT init for small data**: 2-D sin-cos position codes and mimetic attention init; and objects
  centred on the patch lattice (``render.LATTICE``).
Taught in: chapter 0 (the Pocket world).
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import render, world
from .tokenizer import NUM_MERGES, build_tokenizer, clip_vocab

#: Per-channel pixel mean/std of pretraining renders (measured on 4,000 scenes, rounded).
PIXEL_MEAN = (0.48, 0.47, 0.47)
PIXEL_STD = (0.16, 0.14, 0.15)


@dataclass(frozen=True)
class PocketConfig:
    """Pocket CLIP's architecture and its pretraining recipe."""

    image_size: int = render.IMAGE_SIZE   # input pixels (square)
    patch_size: int = 8                   # ViT patch; grid = image_size / patch_size per side
    vision_width: int = 128               # ViT hidden size
    vision_layers: int = 4                # ViT blocks
    vision_heads: int = 4                 # ViT attention heads
    text_width: int = 128                 # text transformer hidden size
    text_layers: int = 3                  # text transformer blocks
    text_heads: int = 4                   # text attention heads
    context_length: int = 32              # max tokens per caption (captions use <= 16)
    embed_dim: int = 128                  # D, the joint embedding size
    num_merges: int = NUM_MERGES          # BPE merges kept from OpenAI's list
    steps: int = 2000                     # optimiser steps
    batch_size: int = 128                 # image-caption pairs per step
    lr: float = 1e-3                      # peak AdamW learning rate
    warmup: int = 100                     # linear warm-up steps, then cosine decay to lr_min
    lr_min: float = 2e-5                  # final learning rate
    weight_decay: float = 0.05            # AdamW decay on matrices (not on norms/biases/scale)
    loss: str = "multi-positive"          # "multi-positive" (all true captions) or "clip"
    init_temperature: float = 0.07        # initial softmax temperature 1 / logit_scale (CLIP: 0.07)
    text_freeze: int = 300                # steps the text tower stays at its random init (LR 0)
    group_size: int = 1                   # scenes per group (1: iid); v1: sharing colour/size/background,
                                          # v2: sharing the object (shape, colour, size, style)
    mimetic_init: bool = True             # ViT attention starts near identity (Trockman & Kolter 2023)
    sincos_pos: float = 1.0               # ViT position embeddings start as 2-D sin-cos x this (0: random)
    world: str = "v1"                     # "v1" (shape on six textures) or "v2" (``world``: broad scenes)
    seed: int = 0                         # initialisation and the stream of rendered batches
    threads: int = 2                      # torch CPU threads (2 = this project's CI machine)
    checkpoint_every: int = 250           # steps between resumable checkpoints

    @classmethod
    def v1(cls) -> "PocketConfig":
        """The recipe of Pocket CLIP v1 (world v1: one shape on six textures, 2000 steps), shipped
        until issue 20 replaced it (git history keeps its checkpoint)."""
        return cls()

    @classmethod
    def shipped(cls) -> "PocketConfig":
        """The recipe of the checkpoint in ``data/pocket-clip``: world v2 (``world``), broad scenes, captions in
        everyday and rare words, 3600 steps.

        Batches come in groups of 4 scenes of one object on different backgrounds, at different
        places and in different clutter: a caption that names the texture or the position then has
        hard negatives in its batch, as web-scale batches have by their size. Without the groups
        (a first v2 run, group_size=1) the image tower left texture out of its pooled feature
        (linear probe 17.8 % over 10 families, chance 10 %): at batch 128 the object alone tells
        almost every pair apart.
        """
        return cls(world="v2", steps=3600, group_size=4)

    @classmethod
    def tiny(cls, steps: int = 40) -> "PocketConfig":
        """A seconds-long run for tests: tiny towers, small batches."""
        return cls(vision_width=32, vision_layers=1, vision_heads=2, text_width=32, text_layers=1,
                   text_heads=2, embed_dim=32, num_merges=2048, steps=steps, batch_size=32,
                   warmup=5, lr=3e-3, text_freeze=0, checkpoint_every=10, threads=1)

    def __post_init__(self):
        if self.world not in ("v1", "v2"):
            raise ValueError(f"world must be 'v1' or 'v2', got {self.world!r}")
        if self.loss not in ("multi-positive", "clip"):
            raise ValueError(f"loss must be 'multi-positive' or 'clip', got {self.loss!r}")
        if min(self.steps, self.batch_size, self.checkpoint_every, self.warmup) <= 0:
            raise ValueError("steps, batch_size, warmup and checkpoint_every must be positive")
        if self.image_size % self.patch_size:
            raise ValueError(f"patch_size {self.patch_size} must divide image_size {self.image_size}")

    def replace(self, **kw) -> "PocketConfig":
        return dataclasses.replace(self, **kw)


def build_model(cfg: PocketConfig):
    """A randomly initialised transformers ``CLIPModel`` of ``cfg``'s size (seeded by cfg.seed)."""
    from transformers import CLIPConfig, CLIPModel

    vocab = 512 + cfg.num_merges + 2
    text = dict(vocab_size=vocab, hidden_size=cfg.text_width, intermediate_size=4 * cfg.text_width,
                num_hidden_layers=cfg.text_layers, num_attention_heads=cfg.text_heads,
                max_position_embeddings=cfg.context_length,
                bos_token_id=vocab - 2, eos_token_id=vocab - 1, pad_token_id=vocab - 1)
    vision = dict(hidden_size=cfg.vision_width, intermediate_size=4 * cfg.vision_width,
                  num_hidden_layers=cfg.vision_layers, num_attention_heads=cfg.vision_heads,
                  image_size=cfg.image_size, patch_size=cfg.patch_size)
    torch.manual_seed(cfg.seed)
    model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=cfg.embed_dim,
                                 logit_scale_init_value=math.log(1 / cfg.init_temperature)))
    gen = torch.Generator().manual_seed(cfg.seed)
    with torch.no_grad():
        if cfg.sincos_pos:
            pos = model.vision_model.embeddings.position_embedding.weight          # (1 + HW, C)
            pos[0] = 0
            pos[1:] = cfg.sincos_pos * sincos_2d(cfg.image_size // cfg.patch_size, cfg.vision_width)
        if cfg.mimetic_init:
            for layer in model.vision_model.encoder.layers:
                mimetic_init_(layer.self_attn, gen)
    return model


def sincos_2d(side: int, dim: int) -> torch.Tensor:
    """Fixed 2-D sine-cosine position codes of a side x side grid (row-major): (side^2, dim)."""
    if dim % 4:
        raise ValueError(f"sin-cos position codes need a width divisible by 4, got {dim}")
    ys, xs = torch.meshgrid(torch.arange(side, dtype=torch.float32),
                            torch.arange(side, dtype=torch.float32), indexing="ij")
    omega = 1.0 / 10000 ** (torch.arange(dim // 4) / (dim // 4))                   # (dim/4,)
    x, y = xs.flatten()[:, None] * omega, ys.flatten()[:, None] * omega            # (HW, dim/4)
    return torch.cat([x.sin(), x.cos(), y.sin(), y.cos()], dim=1)                  # (HW, dim)


def mimetic_init_(attn, gen: torch.Generator, a1=0.7, b1=0.7, a2=0.4, b2=0.4) -> None:
    """Initialise a self-attention layer so W_q^T W_k ~ a1 Z + b1 I (per head) and W_v^T W_o^T ~
    a2 Z - b2 I: tokens start by attending to similar tokens (nearby ones, given the sin-cos
    codes), which makes a ViT trained from scratch on little data learn much faster."""
    d, heads = attn.embed_dim, attn.num_heads
    dh = d // heads
    for h in range(heads):
        a = a1 * torch.randn(d, d, generator=gen) / d ** 0.5 + b1 * torch.eye(d)   # (d, d)
        u, s, vh = torch.linalg.svd(a)
        r = s[:dh].sqrt()                                                           # best rank-dh
        attn.q_proj.weight[h * dh:(h + 1) * dh] = (u[:, :dh] * r).T                 # (dh, d)
        attn.k_proj.weight[h * dh:(h + 1) * dh] = (vh[:dh].T * r).T
    m = a2 * torch.randn(d, d, generator=gen) / d ** 0.5 - b2 * torch.eye(d)
    u, s, vh = torch.linalg.svd(m)
    attn.v_proj.weight.copy_((u * s.sqrt()).T)
    attn.out_proj.weight.copy_(vh.T * s.sqrt())


def image_processor(cfg: PocketConfig):
    """The ``CLIPImageProcessor`` shipped with the model (no resize/crop change at 64 px)."""
    from transformers import CLIPImageProcessor

    return CLIPImageProcessor(size={"shortest_edge": cfg.image_size},
                              crop_size={"height": cfg.image_size, "width": cfg.image_size},
                              image_mean=list(PIXEL_MEAN), image_std=list(PIXEL_STD))


def to_pixels(images: np.ndarray) -> torch.Tensor:
    """Rendered uint8 images (B, S, S, 3) -> normalised pixels (B, 3, S, S), as ``preprocess`` does."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    mean, std = torch.tensor(PIXEL_MEAN).view(1, 3, 1, 1), torch.tensor(PIXEL_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def make_batch(cfg: PocketConfig, step: int, tokenizer) -> dict:
    """The batch of step ``step``: pixels (B, 3, S, S), tokens (B, L), positives (B, B) bool."""
    rng = np.random.default_rng([cfg.seed, step, 0x9C11])   # tagged stream, apart from the suite's
    if cfg.world == "v2":
        scenes = v2_scenes(cfg, rng)
        caps = [world.caption(s, rng) for s in scenes]
        return _encode_batch(cfg, scenes, caps, tokenizer, world.matches)
    scenes = []
    while len(scenes) < cfg.batch_size:   # a group differs only in shape: hard negatives for shape
        first = render.sample_scene(rng)
        shared = {"colour": first.colour, "size": first.size, "background": first.background}
        scenes += [first] + [render.sample_scene(rng, **shared) for _ in range(cfg.group_size - 1)]
    scenes = scenes[:cfg.batch_size]
    caps = [render.caption(s, rng) for s in scenes]
    return _encode_batch(cfg, scenes, caps, tokenizer, render.matches)


def v2_scenes(cfg: PocketConfig, rng: np.random.Generator) -> list:
    """A v2 batch's scenes: groups of ``cfg.group_size`` that share the object (shape, colour, size,
    style) and differ in the rest (texture, place, clutter), hard negatives for what captions add."""
    scenes = []
    while len(scenes) < cfg.batch_size:
        first = world.sample_scene(rng)
        same = {"shape": first.shape, "colour": first.colour, "size": first.size, "style": first.style}
        scenes += [first] + [world.sample_scene(rng, **same) for _ in range(cfg.group_size - 1)]
    return scenes[:cfg.batch_size]


def _encode_batch(cfg: PocketConfig, scenes, caps, tokenizer, matches) -> dict:
    """Pixels, tokens and the (B, B) positives of scenes and their (text, named) captions."""
    enc = tokenizer([c[0] for c in caps], padding=True, truncation=True,
                    max_length=cfg.context_length, return_tensors="pt")
    # positives[i, j]: caption j is true of image i (the diagonal always is)
    positives = torch.tensor([[matches(named, s) for _, named in caps] for s in scenes])
    return {"pixel_values": to_pixels(render.render_batch(scenes)), "input_ids": enc["input_ids"],
            "attention_mask": enc["attention_mask"], "positives": positives}


def contrastive_loss(image: torch.Tensor, text: torch.Tensor, logit_scale: torch.Tensor,
                     positives: torch.Tensor | None = None) -> torch.Tensor:
    """Symmetric image-text InfoNCE over a batch: image, text (B, D) -> scalar.

    ``positives`` (B, B) bool marks every true (image, caption) pair; targets spread evenly over
    them. ``None`` (or the identity) is CLIP's loss.
    """
    logits = logit_scale * F.normalize(image, dim=-1) @ F.normalize(text, dim=-1).T   # (B_img, B_txt)
    if positives is None:
        positives = torch.eye(len(image), dtype=torch.bool)
    target = positives.float()
    i2t = -(target / target.sum(1, keepdim=True) * logits.log_softmax(1)).sum(1).mean()
    t2i = -(target / target.sum(0, keepdim=True) * logits.log_softmax(0)).sum(0).mean()
    return (i2t + t2i) / 2


def _optimizer(model, cfg: PocketConfig):
    """AdamW over four groups (decay or not) x (text tower or not) and its LR schedule."""
    groups = {}
    for n, p in model.named_parameters():
        decay = p.ndim >= 2 and "embedding" not in n
        text = n.startswith("text_model.")
        groups.setdefault((decay, text), []).append(p)
    keys = sorted(groups)
    opt = torch.optim.AdamW([{"params": groups[k], "weight_decay": cfg.weight_decay if k[0] else 0.0}
                             for k in keys], lr=cfg.lr, betas=(0.9, 0.98))

    def lr_at(step):  # multiplier of cfg.lr: linear warm-up, then cosine to lr_min
        if step < cfg.warmup:
            return (step + 1) / cfg.warmup
        t = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
        return (cfg.lr_min + (cfg.lr - cfg.lr_min) * 0.5 * (1 + math.cos(math.pi * t))) / cfg.lr

    def text_lr_at(step):  # the text tower waits until the image tower has found shape
        return lr_at(step) if step >= cfg.text_freeze else 0.0

    return opt, torch.optim.lr_scheduler.LambdaLR(opt, [text_lr_at if k[1] else lr_at for k in keys])


def train_step(model, batch: dict, opt, sched, cfg: PocketConfig) -> float:
    """One optimiser step on ``batch``; returns the loss."""
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                pixel_values=batch["pixel_values"])
    pos = batch["positives"] if cfg.loss == "multi-positive" else None
    loss = contrastive_loss(out.image_embeds, out.text_embeds, model.logit_scale.exp(), pos)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    sched.step()
    with torch.no_grad():
        model.logit_scale.clamp_(0, math.log(100))
    return loss.item()


def pretrain(cfg: PocketConfig, out: str | Path, resume: bool = False, progress: bool = True,
             log_every: int = 25, stop_after: int | None = None) -> dict | None:
    """Pretrain Pocket CLIP for ``cfg.steps`` steps and save it (HF format) into ``out``.

    A resumable checkpoint ``out/resume.pt`` is written every ``cfg.checkpoint_every`` steps and
    removed at the end; ``resume=True`` continues from it (same config required) and is refused
    when there is none. ``stop_after`` ends this call after that many steps in all, leaving the
    checkpoint (returns None). Returns the training record also written to ``out/training.json``.
    An ``out`` that already holds a finished model (``model.safetensors``) is refused: records name
    the weights they were measured with.
    """
    from tqdm.auto import tqdm

    out = Path(out)
    if (out / "model.safetensors").is_file():
        raise FileExistsError(
            f"{out} already holds a finished Pocket CLIP (model.safetensors); pretraining would overwrite it "
            "and every record measured with it would no longer match its weights. Pass --out NEW_DIR "
            "(then --backbone NEW_DIR to use it), or move the old checkpoint away.")
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a folder: give a new folder for the checkpoint")
    ckpt = out / "resume.pt"
    foreign = sorted(f.name for f in out.glob("*")) if not ckpt.is_file() else []
    if foreign:                  # without resume.pt nothing there is ours: saving would replace files
        raise FileExistsError(f"{out} already holds {', '.join(foreign[:5])}{' ...' if len(foreign) > 5 else ''}, "
                              "which this run did not write; pretraining writes its checkpoint files there. "
                              "Pass --out NEW_DIR (or an empty folder).")
    if resume and not ckpt.is_file():   # a typo in --out, or a run stopped before its first save
        raise FileNotFoundError(f"--resume: {ckpt} does not exist, so there is nothing to resume "
                                f"(a run leaves it every {cfg.checkpoint_every} steps; one stopped earlier left "
                                "none). Check --out, or drop --resume to start from step 0.")
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(cfg.threads)
    tokenizer = build_tokenizer(cfg.num_merges, cfg.context_length)
    model = build_model(cfg).train()
    opt, sched = _optimizer(model, cfg)
    start, history, window, seconds = 0, [], [], 0.0
    if resume:                           # resume.pt exists: checked above
        state = torch.load(ckpt, weights_only=False)
        if state["config"] != dataclasses.asdict(cfg):
            raise ValueError(f"{ckpt} was written by a different config; delete it or drop --resume")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        start, history, window, seconds = (state[k] for k in ("step", "history", "window", "seconds"))
    elif ckpt.is_file():
        raise FileExistsError(f"{ckpt} exists (an unfinished run); pass --resume to continue it "
                              "or delete it to start over")
    t0, bar = time.perf_counter() - seconds, tqdm(range(start, cfg.steps), initial=start,
                                                    total=cfg.steps, disable=not progress,
                                                    desc="pocket pretrain")
    stop = min(cfg.steps, stop_after or cfg.steps)
    for step in bar:
        window.append(train_step(model, make_batch(cfg, step, tokenizer), opt, sched, cfg))
        if (step + 1) % log_every == 0 or step + 1 == cfg.steps:
            history.append({"step": step + 1, "loss": round(float(np.mean(window)), 4),
                            "lr": sched.get_last_lr()[0], "seconds": round(time.perf_counter() - t0, 1)})
            bar.set_postfix(loss=history[-1]["loss"])
            window = []
        if step + 1 < cfg.steps and ((step + 1) % cfg.checkpoint_every == 0 or step + 1 == stop):
            tmp = ckpt.with_name(f".{ckpt.name}.tmp-{os.getpid()}")   # atomic: a kill keeps the last one whole
            torch.save({"config": dataclasses.asdict(cfg), "model": model.state_dict(),
                        "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                        "step": step + 1, "history": history, "window": window,
                        "seconds": time.perf_counter() - t0}, tmp)
            os.replace(tmp, ckpt)
        if step + 1 == stop < cfg.steps:
            bar.close()
            return None
    record = {"config": dataclasses.asdict(cfg), "wall_seconds": round(time.perf_counter() - t0, 1),
              "final_loss": history[-1]["loss"] if history else None, "history": history,
              "parameters": sum(p.numel() for p in model.parameters()),
              "torch": torch.__version__, "threads": cfg.threads, "machine": machine_info()}
    save_pocket(model.eval(), tokenizer, cfg, out, record)
    ckpt.unlink(missing_ok=True)
    return record


def machine_info() -> dict:
    """What float results depend on besides the seed: CPU model, the kernels torch picks for it.

    A run repeats bit for bit on the same kind of machine; on another CPU (another SIMD kernel or
    BLAS path) the loss drifts in the 4th decimal within ~150 steps and the runs then diverge.
    """
    import platform

    cpu = platform.processor() or platform.machine()
    info = Path("/proc/cpuinfo")                                   # Linux; elsewhere platform's name
    if info.is_file():
        names = [ln.split(":", 1)[1].strip() for ln in info.read_text().splitlines()
                 if ln.startswith("model name")]
        cpu = names[0] if names else cpu
    return {"cpu": cpu, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "mkl": torch.backends.mkl.is_available(), "mkldnn": torch.backends.mkldnn.is_available()}


def save_pocket(model, tokenizer, cfg: PocketConfig, out: str | Path, record: dict) -> Path:
    """Write model (safetensors), tokenizer (+ vocab.json/merges.txt), processor, training.json.

    Everything is written into a temporary folder first and then moved into ``out`` with
    ``model.safetensors`` last: that file marks a finished checkpoint, so an interrupted save leaves
    ``out`` resumable (``resume.pt`` is removed only after it) rather than half a model."""
    out = Path(out)
    tmp = out / f".save-tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)          # our own leftover from this process id only
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    vocab, merges = clip_vocab(cfg.num_merges)   # also vocab.json + merges.txt, as OpenAI's repos ship
    (tmp / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (tmp / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges),
                                    encoding="utf-8")
    image_processor(cfg).save_pretrained(tmp)
    (tmp / "training.json").write_text(json.dumps(record, indent=1) + "\n")
    for f in sorted(tmp.iterdir(), key=lambda f: f.name == "model.safetensors"):   # the marker last
        os.replace(f, out / f.name)
    tmp.rmdir()
    return out
