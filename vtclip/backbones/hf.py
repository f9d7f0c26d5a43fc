"""transformers adapter: OpenAI's ViT CLIPs from the hub, any local CLIP directory, Pocket CLIP.

Spatial maps of a ViT: the last layer's patch tokens (class token dropped), laid out on the
patch grid; ``raw`` = the tokens as they leave the last block (width C), ``projected`` = the same
post-layernorm + visual projection that turns the class token into the image embedding (D).
Taught in: chapter 02 (spatial features).
"""
from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Sequence

import torch
from PIL import Image
from safetensors import SafetensorError
from torchvision import transforms as T

from .. import settings
from .base import FrozenCLIP, WeightsUnavailableError
from .digest import folder_digest

#: Our names for OpenAI's ViT CLIPs and their hub ids.
HF_MODELS = {
    "ViT-B/32": "openai/clip-vit-base-patch32",
    "ViT-B/16": "openai/clip-vit-base-patch16",
    "ViT-L/14": "openai/clip-vit-large-patch14",
}


class ToRGB:
    """A PIL image as RGB, transparency composited onto white, as ``CLIPImageProcessor`` does
    (``transformers.image_transforms.convert_to_rgb``). PIL's ``convert("RGB")`` drops the alpha
    channel instead, keeping whatever colour transparent pixels hold."""

    def __call__(self, im):
        if "A" not in im.getbands() and im.info.get("transparency") is None:
            return im.convert("RGB")
        im = im.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", im.size, (255, 255, 255, 255)), im).convert("RGB")

    def __repr__(self) -> str:          # part of the feature-cache key (through the transform's repr)
        return "ToRGB(transparency on white)"


def processor_transform(processor) -> T.Compose:
    """A PIL -> tensor transform equal to a ``CLIPImageProcessor``'s convert/resize/crop/normalise: RGB
    first (``ToRGB``: transparency on white), the shorter side to ``size["shortest_edge"]``, or the whole
    image to ``size["height"] x size["width"]`` (aspect not kept) when the processor gives those, then the
    centre crop.

    Until issue 22 an RGBA image was resized first and converted last, dropping its alpha: PIL resizes
    RGBA with premultiplied alpha, so that differed from the processor by up to 3.8 after
    normalisation. Where it still differs: the processor resizes tensors (torchvision) and we resize the
    PIL image, both bicubic with antialiasing, which differ by about 0.015 after normalisation (RGB or
    RGBA alike); ``test_preprocess_matches_the_processor_on_rgba_images`` pins both numbers.
    """
    edge = processor.size.get("shortest_edge")
    size = edge if edge else (processor.size["height"], processor.size["width"])
    crop = (processor.crop_size["height"], processor.crop_size["width"])
    return T.Compose([
        ToRGB(),                                     # first, as the processor does: see the docstring
        T.Resize(size, interpolation=T.InterpolationMode.BICUBIC),
        T.CenterCrop(crop),
        T.ToTensor(),
        T.Normalize(processor.image_mean, processor.image_std),
    ])


class HFCLIPBackbone(FrozenCLIP):
    """A frozen transformers ``CLIPModel`` with a ViT image tower."""

    family = "transformers"

    def __init__(self, model, tokenizer, processor, name: str, weights_tag: str,
                 spatial: str = "raw", dtype: torch.dtype = torch.float32):
        super().__init__(name, weights_tag, spatial, dtype)
        self.model = model.to(dtype)
        self.tokenizer = tokenizer
        self.processor = processor
        self.preprocess = processor_transform(processor)
        vcfg = model.config.vision_config
        self.image_size = vcfg.image_size
        self.patch_size = vcfg.patch_size
        self.raw_dim = vcfg.hidden_size                              # C
        self.embed_dim = model.config.projection_dim                 # D
        self.context_length = model.config.text_config.max_position_embeddings
        self.freeze()

    def _logit_scale(self) -> torch.Tensor:
        return self.model.logit_scale.float()

    def tokenize(self, texts: Sequence[str]) -> dict:
        """Token ids and attention mask, padded to the longest prompt: (K, L) each."""
        enc = self.tokenizer(list(texts), padding=True, truncation=True,
                             max_length=self.context_length, return_tensors="pt")
        return {k: v.to(self.device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}

    def token_counts(self, texts: Sequence[str]) -> tuple[list[int], int]:
        return [len(ids) for ids in self.tokenizer(list(texts))["input_ids"]], self.context_length

    def _encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        return self.model.get_text_features(**self.tokenize(texts)).pooler_output   # (K, D)

    def _encode_image(self, pixels: torch.Tensor, spatial: str):
        vm = self.model.vision_model
        hidden = vm(pixel_values=pixels).last_hidden_state          # (B, 1 + HW, C)
        pooled = self.model.visual_projection(vm.post_layernorm(hidden[:, 0]))   # (B, D)
        tokens = hidden[:, 1:]                                      # (B, HW, C)
        if spatial == "projected":
            tokens = self.model.visual_projection(vm.post_layernorm(tokens))     # (B, HW, D)
        side = self.image_size // self.patch_size
        fmap = tokens.transpose(1, 2).reshape(tokens.shape[0], -1, side, side)  # (B, C|D, H, W)
        return pooled, fmap


def _hand_placement_help(name: str, repo_id: str, local: Path) -> str:
    return (f"To place the weights by hand, download the files of the hub repo {repo_id} "
            "(config.json, model.safetensors, tokenizer.json / vocab.json + merges.txt, "
            f"preprocessor_config.json) on a machine with internet and copy them into {local}, "
            f"or pass that directory to load_clip(...).")


def load_hf_clip(name_or_dir: str, spatial: str = "raw", dtype: torch.dtype = torch.float32,
                 device: torch.device | str = "cpu", name: str | None = None,
                 weights_tag: str | None = None) -> HFCLIPBackbone:
    """Load a transformers CLIP by our name (``ViT-B/16``), hub id, or local directory."""
    from transformers import AutoTokenizer, CLIPImageProcessor, CLIPModel

    path = Path(os.path.expanduser(str(name_or_dir)))
    if path.is_dir():
        source, repo_id, local = str(path), None, path
    else:
        repo_id = HF_MODELS.get(name_or_dir, name_or_dir)
        local = settings.home("weights", repo_id.replace("/", "--"))
        source = str(local) if local.is_dir() else repo_id
    if source == str(local):
        check_folder(local)
    try:
        with _transformers_quiet():
            # a tensor of another shape is reported in ``loading`` (below, with its name), not raised
            model, loading = CLIPModel.from_pretrained(source, cache_dir=str(settings.home("hub")),
                                                       output_loading_info=True, ignore_mismatched_sizes=True)
            tokenizer = AutoTokenizer.from_pretrained(source, cache_dir=str(settings.home("hub")))
            processor = CLIPImageProcessor.from_pretrained(source, cache_dir=str(settings.home("hub")))
    except RuntimeError as err:       # transformers: a tensor whose shape the config does not expect
        raise WeightsUnavailableError(
            f"The weights in {source} do not fit the model its config.json describes (a tensor of another "
            f"shape: {_first_line(err)}). Copy config.json and model.safetensors of one checkpoint "
            "together.") from err
    except SafetensorError as err:    # damaged in a way check_folder does not look for
        raise WeightsUnavailableError(f"The weights in {source} cannot be read ({_first_line(err)}); copy the "
                                      "checkpoint's model.safetensors again.") from err
    except (OSError, ValueError) as err:
        where = f"the local directory {path}" if repo_id is None else (
            f"{local} and the download cache {settings.home('hub')}")
        help_ = "" if repo_id is None else "\n" + _hand_placement_help(name_or_dir, repo_id, local)
        raise WeightsUnavailableError(
            f"Could not load CLIP weights for {name_or_dir!r}: {err}\nLooked in {where}.{help_}"
        ) from err
    # transformers fills tensors the file lacks (or has in another shape) with fresh random values
    # and only prints a report: a checkpoint saved under other key names would run as a random CLIP
    broken = {k: sorted(map(_key_text, loading.get(k) or [])) for k in ("missing_keys", "mismatched_keys")}
    if any(broken.values()):
        raise WeightsUnavailableError(
            f"The weights in {source} do not fit transformers' CLIPModel: "
            + "; ".join(f"{len(v)} {k.replace('_', ' ')} (e.g. {', '.join(v[:3])})" for k, v in broken.items() if v)
            + ". They would be filled with random values. Save the checkpoint with "
            "CLIPModel.save_pretrained, or copy the original model.safetensors and config.json.")
    vocab = model.config.text_config.vocab_size
    if len(tokenizer) < vocab:   # e.g. vocab.json / merges.txt missing: every word would be the unknown token
        raise WeightsUnavailableError(
            f"The tokenizer of {name_or_dir!r} knows {len(tokenizer)} tokens but the text encoder expects "
            f"{vocab}: its vocabulary files (vocab.json and merges.txt, or tokenizer.json) are missing or "
            f"incomplete in {source}. Copy them from the same checkpoint.")
    tag = weights_tag or weights_tag_of(path if repo_id is None else local, repo_id)
    # records are named after the backbone: a local directory by its folder name, else the name given
    # ("ViT-B/16", not the last part of that string, which a record-name lookup would never find)
    label = name or (path.name if repo_id is None else str(name_or_dir))
    return HFCLIPBackbone(model.to(device), tokenizer, processor, label, tag, spatial, dtype)


def _key_text(key) -> str:
    """A missing key as it is; a mismatched one, ``(name, shape in the file, shape the config wants)``,
    as words."""
    if isinstance(key, tuple) and len(key) == 3:
        return f"{key[0]}: {tuple(key[1])} in the file, {tuple(key[2])} in config.json"
    return str(key)


def check_folder(folder: Path) -> None:
    """Refuse, naming the file, a checkpoint folder whose config.json is not a CLIP's or whose
    ``.safetensors`` file is cut short (transformers says neither: a load report of a random model
    dozens of lines long, or a safetensors traceback naming no file)."""
    config = folder / "config.json"
    if config.is_file():
        try:
            model_type = json.loads(config.read_text()).get("model_type")
        except (ValueError, AttributeError) as err:     # not JSON, or JSON but not an object
            raise WeightsUnavailableError(f"{config} is not a JSON config ({_first_line(err)}); copy the "
                                          "checkpoint's config.json again.") from err
        if model_type != "clip":
            what = f"describes a {model_type!r} model" if model_type else "names no model_type"
            raise WeightsUnavailableError(
                f"{config} {what}, not a CLIP. Point load_clip at a transformers CLIPModel checkpoint "
                "(model_type \"clip\", as CLIPModel.save_pretrained writes it).")
    for f in sorted(folder.glob("*.safetensors")):
        problem = _safetensors_problem(f)
        if problem:
            raise WeightsUnavailableError(f"{f} is {problem}. Copy the checkpoint's {f.name} again.")


def _safetensors_problem(f: Path) -> str | None:
    """What is wrong with a ``.safetensors`` file's size against its own header (None: nothing)."""
    size = f.stat().st_size
    with open(f, "rb") as fh:
        head = fh.read(8)                                   # little-endian length of the JSON header
        n = int.from_bytes(head, "little") if len(head) == 8 else None
        if n is None or 8 + n > size:
            return f"cut short ({size} bytes, less than its header)"
        try:
            header = json.loads(fh.read(n))
            end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
        except (ValueError, AttributeError, KeyError, TypeError, IndexError):
            return "damaged (its header is not a safetensors header)"
    if size != 8 + n + end:
        return f"{'cut short' if size < 8 + n + end else 'damaged'} ({size} bytes; its header describes {8 + n + end})"
    return None


@contextlib.contextmanager
def _transformers_quiet():
    """transformers' warnings off while a checkpoint loads: its load report of a checkpoint that does
    not fit runs to dozens of lines, and what is wrong is said in one of ours instead."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


def _first_line(err: Exception, limit: int = 200) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text if len(text) <= limit else text[:limit] + "..."


def weights_tag_of(folder: Path, repo_id: str | None) -> str:
    """The weights tag of a checkpoint: the digest of the contents of the folder it is read from.

    A folder given by path is ``local:<name>:<digest>``; a hub model placed by hand in
    ``$VTCLIP_HOME/weights/<org>--<name>`` is ``<repo id>:<digest>`` (it was the bare repo id, so a
    replaced checkpoint there kept its tag and its cached features); a hub download is
    ``<repo id>:<digest>`` of the snapshot folder it was read from (it was the bare repo id too, so a
    new revision of the repo, or a file of the download cache replaced, kept the old features). The
    same files placed by hand or downloaded give the same tag.
    """
    if repo_id is None:
        return f"local:{folder.resolve().name}:{weights_digest(folder)}"
    if folder.is_dir():
        return f"{repo_id}:{weights_digest(folder)}"
    snapshot = hub_snapshot(repo_id)
    return f"{repo_id}:{weights_digest(snapshot)}" if snapshot is not None else repo_id


def hub_snapshot(repo_id: str) -> Path | None:
    """The folder of the download cache that ``from_pretrained(repo_id)`` reads (the revision the
    cache's ``refs/main`` names), or None if there is none."""
    config = cached_hub_file(repo_id, "config.json", settings.home("hub"))
    return config.parent if config is not None else None


def cached_hub_file(repo_id: str, filename: str, cache: Path) -> Path | None:
    """The file ``filename`` of ``repo_id`` in the hub's download cache ``cache`` (the revision its
    ``refs/main`` names), or None if the cache has none (or has it recorded as absent)."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, filename, cache_dir=str(cache))
    return Path(found) if isinstance(found, str) else None      # else None or "cached as absent"


def weights_digest(folder: Path) -> str:
    """A 12-hex digest of the contents of a checkpoint folder (weights, config, tokenizer files)."""
    return folder_digest(folder)


def sampled_digest(folder: Path) -> str:
    """The older, sampled fingerprint of a folder's weight files (size + first and last MiB).

    Kept for the shipped Pocket CLIP only: its committed records carry it (``pocket:dfc8f57a7616``),
    and git already tracks that checkpoint's content. Every other folder uses ``weights_digest``.
    """
    import hashlib

    h = hashlib.sha1()
    for f in sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin")):
        size = f.stat().st_size
        with open(f, "rb") as fh:
            h.update(f"{f.name}:{size}".encode() + fh.read(1 << 20))
            fh.seek(max(0, size - (1 << 20)))
            h.update(fh.read())
    return h.hexdigest()[:12]
