"""The Pocket world: a scene renderer with captions, Pocket CLIP and its pretraining, the suite.

* ``vtclip.pocket.render``    -- seeded scenes -> 64 px images and varied captions
* ``vtclip.pocket.tokenizer`` -- OpenAI's CLIP BPE cut to its first 8,192 merges
* ``vtclip.pocket.pretrain``  -- ``PocketConfig``, the model, the contrastive loss, ``pretrain``
* ``vtclip.pocket.suite``     -- the Pocket benchmark datasets (registered in ``DATASETS``)
* ``vtclip.pocket.cli``       -- ``vtclip pocket pretrain|eval``

Taught in: chapter 0 (the Pocket world).
"""
from . import render, tokenizer

__all__ = ["render", "tokenizer"]
