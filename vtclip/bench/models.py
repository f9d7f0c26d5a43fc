"""The benchmarked backbones: real architectures with random weights (nothing is downloaded)."""
from __future__ import annotations

import logging

import torch

from .config import BenchConfig


def build_rn50(cfg: BenchConfig, device: torch.device):
    """open_clip RN50 with random weights (or a tiny ModifiedResNet with ``quick``)."""
    import open_clip

    from ..backbones import OpenCLIPBackbone

    torch.manual_seed(cfg.seed)
    if cfg.quick:
        model = open_clip.CLIP(embed_dim=64, vision_cfg=dict(image_size=64, layers=[1, 1, 1, 1], width=16),
                               text_cfg=dict(context_length=77, vocab_size=49408, width=32, heads=2, layers=1))
        name = "RN-tiny"
    else:
        level = logging.getLogger().level
        logging.getLogger().setLevel(logging.ERROR)      # "no pretrained weights loaded": intended
        try:
            model = open_clip.create_model("RN50", pretrained=None)
        finally:
            logging.getLogger().setLevel(level)
        name = "RN50"
    clip = OpenCLIPBackbone(model, open_clip.image_transform(cfg.image_size, is_train=False),
                            open_clip.get_tokenizer("RN50"), name, "random")
    return clip.to(device)


def build_vit_b16(cfg: BenchConfig, device: torch.device):
    """A transformers CLIP with the ViT-B/16 configuration and random weights (tiny with ``quick``)."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    from ..backbones import HFCLIPBackbone

    torch.manual_seed(cfg.seed)
    if cfg.quick:
        config = CLIPConfig(text_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                             num_attention_heads=2),
                            vision_config=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                               num_attention_heads=2, image_size=64, patch_size=16),
                            projection_dim=32)
    else:   # CLIPConfig's defaults are OpenAI's base towers; patch 16 makes it ViT-B/16
        config = CLIPConfig(text_config={}, vision_config=dict(patch_size=16, image_size=224),
                            projection_dim=512)
    size = config.vision_config.image_size
    proc = CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size})
    clip = HFCLIPBackbone(CLIPModel(config).eval(), None, proc,
                          "ViT-tiny" if cfg.quick else "ViT-B/16", "random")
    return clip.to(device)
