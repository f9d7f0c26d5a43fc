"""vtclip: VT-CLIP (visual-guided texts for CLIP), a reference implementation.

``import vtclip as vt`` gives the pieces the book uses; see README.md for the map of modules.
"""
from . import features, prompts, settings, table, train
from .backbones import KNOWN_BACKBONES, FrozenCLIP, ImageFeatures, WeightsUnavailableError, load_clip
from .prompts import text_classifier, zero_shot_logits
from .settings import get_device
from .train import TrainConfig
from .vtclip import VTCLIP, VisualGuidedAttention, VTCLIPHead, vtclip_logits

__version__ = "0.1.0"
