"""Cost models of the benchmarked work, in FLOPs (taught in book/appendix_cost.ipynb)."""
from __future__ import annotations


def head_flops(K: int, HW: int, C: int, D: int, layers: int = 1, ffn_ratio: float = 0.5, B: int = 1) -> dict:
    """FLOPs of ``VTCLIPHead``'s forward: once per class set, per image, and in total for B images.

    Layer 1's text self-attention and queries depend on the class set only; a later layer's inputs
    depend on the image, so it pays both parts per image. Heads do not change the count (h x d = D).
    """
    hidden = max(1, int(D * ffn_ratio))
    class_set = 2 * (4 * K * D * D + 2 * K * K * D       # self-attention: in/out projections, scores, mix
                     + K * D * D)                         # queries
    image = 2 * (2 * HW * C * D                           # keys and values of the HW positions
                 + 2 * K * HW * D                         # scores and weighted sum, all heads
                 + K * D * D                              # output projection
                 + 2 * K * D * hidden)                    # feed-forward
    per_image = image + (layers - 1) * (class_set + image)
    return {"class_set": class_set, "per_image": per_image, "total": class_set + B * per_image}


def text_tower_flops(K: int, L: int, W: int, layers: int, D: int) -> int:
    """Forward FLOPs of a CLIP text transformer on K prompts of L tokens (width W, MLP 4W) + projection."""
    per_layer = 2 * (K * L * 12 * W * W + 2 * K * L * L * W)   # projections + MLP, scores + mix
    return layers * per_layer + 2 * K * W * D
