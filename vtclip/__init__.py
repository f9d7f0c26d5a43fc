"""vtclip: VT-CLIP (visual-guided texts for CLIP), a reference implementation."""
from .settings import get_device
from .backbones import FrozenCLIP, ImageFeatures, WeightsUnavailableError, load_clip, KNOWN_BACKBONES

__version__ = "0.1.0"
