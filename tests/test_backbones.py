"""Backbone adapters against the reference libraries' own forward passes (tiny random models)."""
from __future__ import annotations

import json

import open_clip
import pytest
import torch
import torch.nn.functional as F

import vtclip as vt
from vtclip.backbones import HFCLIPBackbone, OpenCLIPBackbone, WeightsUnavailableError
from vtclip.prompts import text_classifier, zero_shot_logits

PROMPTS = ["a photo of a cat.", "a red star", "the dog"]


# ---- open_clip ResNet ---------------------------------------------------------------------------
def test_open_clip_pooled_and_text_equal_library(tiny_rn):
    x = torch.randn(3, 3, 64, 64)
    f = tiny_rn.encode_image(x)
    ref = F.normalize(tiny_rn.model.encode_image(x), dim=-1)
    torch.testing.assert_close(f.pooled, ref, atol=1e-5, rtol=0)
    ref_t = F.normalize(tiny_rn.model.encode_text(open_clip.get_tokenizer("RN50", context_length=16)(PROMPTS)), dim=-1)
    torch.testing.assert_close(tiny_rn.encode_text(PROMPTS), ref_t, atol=1e-5, rtol=0)


def test_open_clip_spatial_shapes(tiny_rn):
    x = torch.randn(2, 3, 64, 64)
    raw = tiny_rn.encode_image(x, spatial="raw")
    proj = tiny_rn.encode_image(x, spatial="projected")
    assert raw.grid == proj.grid == (2, 2)                    # 64 px / stride 32
    assert raw.spatial.shape == (2, 4, tiny_rn.raw_dim)       # C = ResNet width * 32
    assert proj.spatial.shape == (2, 4, tiny_rn.embed_dim)    # D
    assert tiny_rn.spatial_dim("raw") == 16 * 32 and tiny_rn.spatial_dim("projected") == 32


def test_attention_pool_of_raw_map_reproduces_pooled(tiny_rn):
    """The raw map is exactly what the attention pool consumes: pooling it gives the embedding."""
    x = torch.randn(2, 3, 64, 64)
    f = tiny_rn.encode_image(x, spatial="raw")
    b, hw, c = f.spatial.shape
    fmap = f.spatial.transpose(1, 2).reshape(b, c, *f.grid)
    pooled = F.normalize(tiny_rn.model.visual.attnpool(fmap), dim=-1)
    torch.testing.assert_close(pooled, f.pooled, atol=1e-5, rtol=0)


def test_projected_map_is_the_attention_pool_value_path(tiny_rn):
    """With uniform attention (zero queries) the pool output is the mean of the projected values
    over all HW + 1 tokens (the mean token first). So: HW*mean(projected) + value(mean token)
    equals (HW + 1) * unnormalised pooled. This pins down the value trick exactly."""
    pool = tiny_rn.model.visual.attnpool
    with torch.no_grad():
        pool.q_proj.weight.zero_()
        pool.q_proj.bias.zero_()
    x = torch.randn(2, 3, 64, 64)
    fmap = tiny_rn.feature_map(x)                                   # (B, C, H, W)
    pooled = pool(fmap)                                             # (B, D) unnormalised
    proj = tiny_rn.encode_image(x, spatial="projected").spatial     # (B, HW, D)
    mean_token = fmap.flatten(2).mean(-1) + pool.positional_embedding[0]
    value0 = pool.c_proj(pool.v_proj(mean_token))                   # (B, D)
    hw = proj.shape[1]
    torch.testing.assert_close((proj.sum(1) + value0) / (hw + 1), pooled, atol=1e-5, rtol=1e-4)


def test_zero_shot_logits_equal_open_clip(tiny_rn):
    x = torch.randn(2, 3, 64, 64)
    names = ["cat", "dog", "red star"]
    text = text_classifier(tiny_rn, names, ["a photo of a {}."])
    ours = zero_shot_logits(tiny_rn.encode_image(x).pooled, text, tiny_rn.logit_scale)
    img, txt, scale = tiny_rn.model(x, open_clip.get_tokenizer("RN50", context_length=16)([f"a photo of a {n}." for n in names]))
    torch.testing.assert_close(ours, scale * img @ txt.T, atol=1e-4, rtol=1e-5)


# ---- transformers ViT ---------------------------------------------------------------------------
def test_hf_pooled_text_and_patch_layout(tiny_hf):
    x = torch.randn(3, 3, 32, 32)
    m = tiny_hf.model
    f = tiny_hf.encode_image(x, spatial="projected")
    ref = F.normalize(m.get_image_features(pixel_values=x).pooler_output, dim=-1)
    torch.testing.assert_close(f.pooled, ref, atol=1e-5, rtol=0)
    tok = tiny_hf.tokenizer(PROMPTS, padding=True, return_tensors="pt")
    ref_t = F.normalize(m.get_text_features(**tok).pooler_output, dim=-1)
    torch.testing.assert_close(tiny_hf.encode_text(PROMPTS), ref_t, atol=1e-5, rtol=0)
    # position i of our map is patch token i + 1 of the library's last layer, in row-major order
    hidden = m.vision_model(pixel_values=x).last_hidden_state
    tokens = m.visual_projection(m.vision_model.post_layernorm(hidden[:, 1:]))
    torch.testing.assert_close(f.spatial, tokens, atol=1e-5, rtol=0)
    assert f.grid == (4, 4)
    raw = tiny_hf.encode_image(x, spatial="raw")
    torch.testing.assert_close(raw.spatial, hidden[:, 1:], atol=1e-5, rtol=0)


def test_zero_shot_logits_equal_transformers(tiny_hf):
    x = torch.randn(2, 3, 32, 32)
    names = ["cat", "dog", "bird"]
    text = text_classifier(tiny_hf, names, ["a photo of a {}."])
    ours = zero_shot_logits(tiny_hf.encode_image(x).pooled, text, tiny_hf.logit_scale)
    tok = tiny_hf.tokenizer([f"a photo of a {n}." for n in names], padding=True, return_tensors="pt")
    ref = tiny_hf.model(pixel_values=x, **tok).logits_per_image
    torch.testing.assert_close(ours, ref, atol=1e-4, rtol=1e-5)


def test_backbone_is_frozen(tiny_hf, tiny_rn):
    for clip in (tiny_hf, tiny_rn):
        assert not any(p.requires_grad for p in clip.parameters())
        clip.train()
        assert not clip.training and not clip.model.training


# ---- real-size architectures, random weights ----------------------------------------------------
@pytest.mark.slow
def test_openai_resnets_are_built_with_quick_gelu():
    """OpenAI's CLIPs use QuickGELU; open_clip's 'RN50' config alone would build nn.GELU."""
    from vtclip.backbones.openclip import load_open_clip

    clip = load_open_clip("RN50", pretrained=False)
    acts = {type(m).__name__ for m in clip.model.modules() if "GELU" in type(m).__name__}
    assert acts == {"QuickGELU"}


def test_rn50_architecture_shapes():
    model = open_clip.create_model("RN50", pretrained=None)
    clip = OpenCLIPBackbone(model, open_clip.image_transform(224, is_train=False),
                            open_clip.get_tokenizer("RN50"), "RN50", "random")
    f = clip.encode_image(torch.randn(1, 3, 224, 224))
    assert f.grid == (7, 7) and f.spatial.shape == (1, 49, 2048) and f.pooled.shape == (1, 1024)
    assert clip.encode_image(torch.randn(1, 3, 224, 224), "projected").spatial.shape == (1, 49, 1024)


@pytest.mark.slow
def test_vit_b16_architecture_shapes(tiny_hf):
    from transformers import CLIPConfig, CLIPModel

    cfg = CLIPConfig(vision_config=dict(patch_size=16, image_size=224), projection_dim=512,
                     text_config=dict(num_hidden_layers=1))
    clip = HFCLIPBackbone(CLIPModel(cfg).eval(), tiny_hf.tokenizer, tiny_hf.processor, "ViT-B/16", "random")
    clip.image_size = 224
    f = clip.encode_image(torch.randn(1, 3, 224, 224))
    assert f.grid == (14, 14) and f.spatial.shape == (1, 196, 768) and f.pooled.shape == (1, 512)
    assert clip.encode_image(torch.randn(1, 3, 224, 224), "projected").spatial.shape == (1, 196, 512)


# ---- bad input ----------------------------------------------------------------------------------
def test_unknown_backbone_lists_known_ones():
    with pytest.raises(ValueError, match="Known backbones: RN50, RN101, ViT-B/32"):
        vt.load_clip("RN5O")


@pytest.mark.parametrize("name", ["RN50", "ViT-B/16"])
def test_unreachable_weights_say_where_to_put_them(name, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("VTCLIP_HOME", str(tmp_path))
    with pytest.raises(WeightsUnavailableError) as err:
        vt.load_clip(name, device="cpu")
    msg = str(err.value)
    assert name in msg and str(tmp_path / "weights") in msg and "by hand" in msg
    assert not [r for r in caplog.records if r.levelno >= 40], "the failure is also logged, twice in the output"


def test_hub_backbone_records_are_named_after_the_backbone(tmp_path, monkeypatch):
    """A ViT loaded by our name carries that name (records, resume look-ups), not '16'."""
    from conftest import tiny_hf_clip_dir

    from vtclip.experiments import backbone_label

    monkeypatch.setenv("VTCLIP_HOME", str(tmp_path))
    tiny_hf_clip_dir(tmp_path / "weights" / "openai--clip-vit-base-patch16")   # weights placed by hand
    clip = vt.load_clip("ViT-B/16", device="cpu")
    assert clip.name == "ViT-B/16" == backbone_label("ViT-B/16")
    assert vt.load_clip(str(tmp_path / "weights" / "openai--clip-vit-base-patch16")).name == \
        "openai--clip-vit-base-patch16"                                      # a local folder: its name


def test_a_checkpoint_without_its_vocabulary_is_refused(tmp_path):
    import shutil

    from vtclip.backbones import POCKET_DIR

    folder = shutil.copytree(POCKET_DIR, tmp_path / "no-vocab")
    for name in ("vocab.json", "merges.txt", "tokenizer.json"):
        (folder / name).unlink(missing_ok=True)
    with pytest.raises(WeightsUnavailableError, match=r"knows 2 tokens but the text encoder expects 8706"):
        vt.load_clip(str(folder))


def test_a_checkpoint_missing_tensors_is_refused_not_filled_at_random(tmp_path):
    from conftest import tiny_hf_clip_dir
    from safetensors.torch import load_file, save_file

    folder = tiny_hf_clip_dir(tmp_path / "clip")
    vt.load_clip(str(folder), device="cpu")                           # intact: loads
    (weights,) = folder.glob("*.safetensors")
    tensors = load_file(weights)
    save_file({k: v for k, v in tensors.items() if k != "text_projection.weight"}, weights)
    with pytest.raises(WeightsUnavailableError, match=r"1 missing keys \(e.g. text_projection.weight\).*random"):
        vt.load_clip(str(folder), device="cpu")
    save_file({**tensors, "visual_projection.weight": tensors["visual_projection.weight"][:, :-1].contiguous()}, weights)
    with pytest.raises(WeightsUnavailableError, match=r"1 mismatched keys \(e.g. visual_projection.weight: "
                                                      r"\(24, 31\) in the file, \(24, 32\) in config.json\)"):
        vt.load_clip(str(folder), device="cpu")


def test_two_checkpoints_in_same_named_folders_never_share_features(tmp_path):
    # The weights tag names the folder and fingerprints its weight files; it keys the feature cache and
    # the records. Two checkpoints in folders of the same name must get different tags and caches.
    from conftest import tiny_hf_clip_dir

    from vtclip import features
    from vtclip.datasets import get_dataset

    a = vt.load_clip(str(tiny_hf_clip_dir(tmp_path / "a" / "clip", seed=0)), device="cpu")
    b = vt.load_clip(str(tiny_hf_clip_dir(tmp_path / "b" / "clip", seed=1)), device="cpu")
    assert a.name == b.name == "clip" and a.weights_tag != b.weights_tag
    assert a.weights_tag.startswith("local:clip:")
    again = vt.load_clip(str(tmp_path / "a" / "clip"), device="cpu")
    assert again.weights_tag == a.weights_tag                        # same files, same tag
    ds, cache = get_dataset("toy-colours").split("test"), tmp_path / "cache"
    run = lambda clip: features.extract(clip, ds, dataset_name="toy-colours", split="test", cache_dir=cache,
                                        indices=[0, 1], num_workers=0, progress=False)
    fa, fb = run(a), run(b)
    assert len(list((cache / "toy-colours").iterdir())) == 2           # b missed a's entry
    assert not torch.allclose(fa.pooled, fb.pooled)


def test_missing_local_dir_is_an_unknown_name(tmp_path):
    with pytest.raises(ValueError, match="Unknown backbone"):
        vt.load_clip(str(tmp_path / "no-such-dir"))


def test_wrong_image_size_and_channels(tiny_hf):
    with pytest.raises(ValueError, match="32x32"):
        tiny_hf.encode_image(torch.randn(1, 3, 48, 48))
    with pytest.raises(ValueError, match=r"\(B, 3, 32, 32\)"):
        tiny_hf.encode_image(torch.randn(1, 1, 32, 32))
    with pytest.raises(ValueError, match="spatial must be one of"):
        tiny_hf.encode_image(torch.randn(1, 3, 32, 32), spatial="pooled")


def test_a_prompt_ensemble_is_the_normalised_mean_of_its_templates(tiny_hf):
    names, templates = ["cat", "dog", "red car"], ["a photo of a {}.", "art of the {}.", "a {} in a video game."]
    by_hand = torch.stack([F.normalize(tiny_hf.encode_text([t.format(c) for t in templates]), dim=-1).mean(0)
                           for c in names])                              # (K, D): per class, over templates
    torch.testing.assert_close(text_classifier(tiny_hf, names, templates), F.normalize(by_hand, dim=-1))


def test_empty_class_list(tiny_hf):
    with pytest.raises(ValueError, match="at least one class"):
        text_classifier(tiny_hf, [], ["a photo of a {}."])
    with pytest.raises(ValueError, match="non-empty list"):
        tiny_hf.encode_text([])
    with pytest.raises(ValueError, match="exactly one"):
        text_classifier(tiny_hf, ["cat"], ["a photo"])


def test_inputs_of_the_wrong_kind_are_named(tiny_hf, monkeypatch):
    with pytest.raises(ValueError, match="takes a list of class names, got the string 'cat'"):
        text_classifier(tiny_hf, "cat", ["a photo of a {}."])
    with pytest.raises(ValueError, match="expects normalised float pixels, got torch.uint8"):
        tiny_hf.encode_image(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
    monkeypatch.setenv("VTCLIP_DEVICE", "gpu0")
    with pytest.raises(ValueError, match=r"'gpu0' \(from VTCLIP_DEVICE\) is not a torch device"):
        vt.get_device()
    if not torch.cuda.is_available():         # a device asked for by argument gets the same clear refusal
        with pytest.raises(RuntimeError, match="torch sees no CUDA device"):
            vt.load_clip("pocket", device="cuda")
    from vtclip.vtclip import VTCLIPHead

    with pytest.raises(ValueError, match=r"dropout=2: the probability of zeroing an activation, in \[0, 1\)"):
        VTCLIPHead(8, 8, heads=2, dropout=2)


def test_fp16_on_cpu_is_refused():
    with pytest.raises(ValueError, match="needs a GPU"):
        vt.load_clip("pocket", device="cpu", precision="bf16")


def test_preprocess_makes_the_right_size(tiny_hf):
    from PIL import Image

    img = Image.new("RGB", (50, 40), (200, 10, 10))
    assert tiny_hf.preprocess(img).shape == (3, 32, 32)


@pytest.mark.parametrize("size", [{"shortest_edge": 32}, {"height": 32, "width": 32}])
def test_preprocess_follows_the_processor_s_resize_rule(size):
    import numpy as np
    from PIL import Image
    from transformers import CLIPImageProcessor

    from vtclip.backbones.hf import processor_transform

    processor = CLIPImageProcessor(size=size, crop_size={"height": 32, "width": 32})
    ramp = np.tile(np.linspace(0, 255, 64, dtype=np.uint8)[None, :, None], (40, 1, 3))    # 40 x 64, not square
    image = Image.fromarray(ramp)
    ours = processor_transform(processor)(image)
    theirs = torch.as_tensor(processor(images=image, return_tensors="np")["pixel_values"][0])
    assert ours.shape == theirs.shape == (3, 32, 32)
    # the same geometry (squash vs. shorter side + crop); torchvision and PIL round the crop offset and
    # the bicubic kernel slightly differently, hence a tolerance far below what a wrong rule gives (~0.35)
    assert (ours - theirs).abs().mean() < 0.1


@pytest.mark.parametrize("family", ["tiny_hf", "tiny_rn"])
def test_a_prompt_longer_than_the_text_context_is_refused(family, request):
    clip = request.getfixturevalue(family)
    _, context = clip.token_counts(["cat"])                            # 32 (tiny HF), 16 (tiny RN)
    fits = "a photo of a " + " ".join(["cat"] * (context - 7)) + "."   # SOS + context - 2 + EOS
    counts, _ = clip.token_counts([fits, "cat " + fits])
    assert counts == [context, context + 1]
    assert clip.encode_text([fits]).shape[0] == 1
    with pytest.raises(ValueError, match=rf"1 prompt\(s\) are longer than .* text context of {context} tokens"):
        clip.encode_text([fits, "cat " + fits])


# ---- weights tags follow the weights' content (issue 22) ----------------------------------------
def _random_rn50_file(path, seed):
    """A random RN50 state dict saved as ``path`` (fp16: half the disk; loading casts it back)."""
    torch.manual_seed(seed)
    model = open_clip.create_model("RN50", pretrained=None, force_quick_gelu=True)
    torch.save({k: v.half() for k, v in model.state_dict().items()}, path)
    return path


def test_a_replaced_local_rn50_file_gets_another_tag(tmp_path, monkeypatch):
    monkeypatch.setenv("VTCLIP_HOME", str(tmp_path))
    (tmp_path / "weights").mkdir()
    local = _random_rn50_file(tmp_path / "weights" / "RN50.pt", seed=0)
    first = vt.load_clip("RN50", device="cpu").weights_tag
    _random_rn50_file(local, seed=1)                                  # another file in the same place
    second = vt.load_clip("RN50", device="cpu").weights_tag
    assert first.startswith("local:RN50.pt:") and second.startswith("local:RN50.pt:") and first != second


def test_openai_s_own_rn50_file_is_tagged_openai_like_the_hub_download(tmp_path, monkeypatch):
    from vtclip.backbones import openclip
    from vtclip.backbones.digest import file_sha256

    local = tmp_path / "RN50.pt"
    local.write_bytes(b"stands for OpenAI's release")
    assert openclip.weights_tag_of("RN50", local) == f"local:RN50.pt:{file_sha256(local)[:12]}"
    monkeypatch.setitem(openclip.OPENAI_SHA256, "RN50", file_sha256(local))   # as if it were OpenAI's file
    assert openclip.weights_tag_of("RN50", local) == "openai"
    assert openclip.weights_tag_of("RN50", tmp_path / "absent.pt") == "openai"   # the hub's copy


def test_a_checkpoint_replaced_under_a_hub_name_gets_another_tag_and_features(tmp_path, monkeypatch):
    import shutil

    from conftest import tiny_hf_clip_dir

    from vtclip import features
    from vtclip.datasets import get_dataset

    monkeypatch.setenv("VTCLIP_HOME", str(tmp_path))
    folder = tmp_path / "weights" / "openai--clip-vit-base-patch16"
    ds = get_dataset("toy-colours").split("test")

    def load_and_extract():
        clip = vt.load_clip("ViT-B/16", device="cpu")
        return clip.weights_tag, features.extract(clip, ds, dataset_name="toy-colours", split="test", indices=[0, 1],
                                                  num_workers=0, progress=False)

    tiny_hf_clip_dir(folder, seed=0)
    tag_a, fa = load_and_extract()
    shutil.rmtree(folder)
    tiny_hf_clip_dir(folder, seed=1)                                    # the checkpoint replaced by another
    tag_b, fb = load_and_extract()
    assert tag_a.startswith("openai/clip-vit-base-patch16:") and tag_a != tag_b
    assert not torch.allclose(fa.pooled, fb.pooled)                     # not the old checkpoint's features


def test_a_new_revision_of_a_hub_download_gets_another_tag_and_features(tmp_path, monkeypatch):
    """A hub download is tagged with the digest of the snapshot it was read from (it was the bare repo
    id, so a new revision of the repo kept the old revision's cached features)."""
    from conftest import fake_hub_download, tiny_hf_clip_dir

    from vtclip import features
    from vtclip.backbones.digest import folder_digest
    from vtclip.datasets import get_dataset

    monkeypatch.setenv("VTCLIP_HOME", str(tmp_path))
    repo_id, ds = "openai/clip-vit-base-patch16", get_dataset("toy-colours").split("test")

    def load_and_extract():
        clip = vt.load_clip("ViT-B/16", device="cpu")
        return clip.weights_tag, features.extract(clip, ds, dataset_name="toy-colours", split="test", indices=[0, 1],
                                                  num_workers=0, progress=False)

    fake_hub_download(tmp_path / "hub", repo_id, tiny_hf_clip_dir(tmp_path / "rev-a", seed=0), "a" * 40)
    tag_a, fa = load_and_extract()
    assert tag_a == f"{repo_id}:{folder_digest(tmp_path / 'rev-a')}"     # the same files placed by hand: same tag
    fake_hub_download(tmp_path / "hub", repo_id, tiny_hf_clip_dir(tmp_path / "rev-b", seed=1), "b" * 40)
    tag_b, fb = load_and_extract()                                      # refs/main now names revision b
    assert tag_b.startswith(f"{repo_id}:") and tag_a != tag_b
    assert not torch.allclose(fa.pooled, fb.pooled)                     # not the old revision's features
    assert len(list((tmp_path / "features" / "toy-colours").iterdir())) == 2


def test_an_altered_hub_copy_of_rn50_gets_another_tag(tmp_path, monkeypatch):
    """OpenAI's RN50 from the hub's download cache is "openai" as the hub served it; bytes that differ from
    what the hub served (its SHA-256, the blob's name) get a digest tag, and so new cache entries."""
    from conftest import fake_hub_download

    from vtclip import features
    from vtclip.datasets import get_dataset

    monkeypatch.setenv("VTCLIP_HOME", str(tmp_path))
    (tmp_path / "download").mkdir()
    weights = _random_rn50_file(tmp_path / "download" / "open_clip_pytorch_model.bin", seed=0)
    snapshot = fake_hub_download(tmp_path / "hub", "timm/resnet50_clip.openai", weights.parent)
    ds = get_dataset("toy-colours").split("test")

    def load_and_extract():
        clip = vt.load_clip("RN50", device="cpu")
        return clip.weights_tag, features.extract(clip, ds, dataset_name="toy-colours", split="test", indices=[0, 1],
                                                  num_workers=0, progress=False)

    tag_a, fa = load_and_extract()
    assert tag_a == "openai"
    blob = (snapshot / weights.name).resolve()
    _random_rn50_file(tmp_path / "other.bin", seed=1)
    blob.write_bytes((tmp_path / "other.bin").read_bytes())             # the cached file overwritten
    tag_b, fb = load_and_extract()
    assert tag_b.startswith("altered:open_clip_pytorch_model.bin:")
    assert not torch.allclose(fa.pooled, fb.pooled)


def test_the_digest_cache_never_serves_a_changed_file(tmp_path):
    import os

    from vtclip.backbones.digest import _cache_path, file_sha256

    f = tmp_path / "model.safetensors"
    f.write_bytes(b"a" * 100)
    first = file_sha256(f)
    assert first in _cache_path().read_text()                          # remembered
    st = f.stat()
    f.write_bytes(b"b" * 100)                                          # same size, edited in place ...
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))                   # ... and the old mtime put back
    assert file_sha256(f) != first and file_sha256(f) == file_sha256(f)


# ---- weights files that cannot be used: one or two lines naming the file (issue 22) -------------
def _short(msg: str) -> bool:
    return msg.count("\n") <= 1 and len(msg) < 500 and "Traceback" not in msg


def test_an_empty_rn50_file_is_named_with_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("VTCLIP_HOME", str(tmp_path))
    local = tmp_path / "weights" / "RN50.pt"
    local.parent.mkdir()
    local.touch()
    with pytest.raises(WeightsUnavailableError) as err:
        vt.load_clip("RN50", device="cpu")
    msg = str(err.value)
    assert msg.startswith(f"{local} is empty (0 bytes)") and "Replace it with OpenAI's RN50.pt" in msg and _short(msg)


def test_another_models_state_dict_saved_as_rn50_is_named_in_two_lines(tmp_path, monkeypatch):
    import torchvision

    monkeypatch.setenv("VTCLIP_HOME", str(tmp_path))
    local = tmp_path / "weights" / "RN50.pt"
    local.parent.mkdir()
    torch.save(torchvision.models.resnet18().state_dict(), local)
    with pytest.raises(WeightsUnavailableError) as err:
        vt.load_clip("RN50", device="cpu")
    msg = str(err.value)
    assert msg.startswith(f"{local} holds tensors of another model (") and "not RN50's weights" in msg
    assert "e.g. positional_embedding" in msg and "unexpected, e.g. conv1.weight" in msg and _short(msg)


def test_a_truncated_safetensors_file_in_a_local_folder_is_named(tmp_path, capfd):
    from conftest import tiny_hf_clip_dir

    folder = tiny_hf_clip_dir(tmp_path / "clip")
    weights = folder / "model.safetensors"
    whole = weights.read_bytes()
    for cut in (len(whole) // 2, 5):                                   # data cut short; header cut short
        weights.write_bytes(whole[:cut])
        with pytest.raises(WeightsUnavailableError) as err:
            vt.load_clip(str(folder), device="cpu")
        msg = str(err.value)
        assert msg.startswith(f"{weights} is cut short ({cut} bytes") and "Copy the checkpoint's" in msg and _short(msg)


def test_a_folder_that_holds_no_clip_says_so_and_prints_no_load_report(tmp_path, capfd):
    from conftest import tiny_hf_clip_dir
    from safetensors.torch import load_file, save_file
    from transformers import BertConfig, BertModel

    folder = tmp_path / "bert"
    BertModel(BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64)).save_pretrained(folder)
    with pytest.raises(WeightsUnavailableError) as err:
        vt.load_clip(str(folder), device="cpu")
    msg = str(err.value)
    assert msg.startswith(f"{folder / 'config.json'} describes a 'bert' model, not a CLIP") and _short(msg)
    clip = tiny_hf_clip_dir(tmp_path / "clip")                         # a CLIP whose tensors do not fit
    tensors = load_file(clip / "model.safetensors")
    save_file({f"renamed.{k}": v for k, v in tensors.items()}, clip / "model.safetensors")
    capfd.readouterr()
    with pytest.raises(WeightsUnavailableError, match="missing keys"):
        vt.load_clip(str(clip), device="cpu")
    out, errs = capfd.readouterr()
    assert "LOAD REPORT" not in out + errs and len(out + errs) < 200   # our one message, not transformers' report


def _save_bert(folder):
    from transformers import BertConfig, BertModel

    BertModel(BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64)).save_pretrained(folder)


def _save_clip_vision_tower(folder):
    from transformers import CLIPVisionConfig, CLIPVisionModel

    CLIPVisionModel(CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                                     image_size=32, patch_size=8)).save_pretrained(folder)


def _save_config_without_model_type(folder):
    from conftest import tiny_hf_clip_dir

    tiny_hf_clip_dir(folder)
    (folder / "config.json").write_text(json.dumps({"hidden_size": 32}))


@pytest.mark.parametrize("make, what", [(_save_bert, "describes a 'bert' model"),
                                        (_save_clip_vision_tower, "describes a 'clip_vision_model' model"),
                                        (_save_config_without_model_type, "names no model_type")])
@pytest.mark.parametrize("placed", ["by path", "under a hub name"])
def test_a_folder_that_is_not_a_clip_is_one_message_naming_it(make, what, placed, tmp_path, monkeypatch, capfd):
    """One message naming the folder's config.json and what it describes; nothing of transformers' own
    (its load report of a model that does not fit runs to 85 lines)."""
    monkeypatch.setenv("VTCLIP_HOME", str(tmp_path / "home"))
    hub_name = tmp_path / "home" / "weights" / "openai--clip-vit-base-patch16"      # ViT-B/16 placed by hand
    folder = tmp_path / "not-a-clip" if placed == "by path" else hub_name
    make(folder)
    capfd.readouterr()
    with pytest.raises(WeightsUnavailableError) as err:
        vt.load_clip(str(folder) if placed == "by path" else "ViT-B/16", device="cpu")
    msg = str(err.value)
    assert msg.startswith(f"{folder / 'config.json'} {what}, not a CLIP.") and _short(msg)
    out, errs = capfd.readouterr()
    assert out + errs == ""


def test_preprocess_matches_the_processor_on_rgba_images(tiny_hf):
    """Transparency composited onto white before the resize, as CLIPImageProcessor does; what is left
    is the two libraries' bicubic resizes (about 0.015 after normalisation, RGB images alike)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (50, 70, 4), dtype=np.uint8)
    pixels[..., 3] = np.where(rng.random((50, 70)) < 0.5, 0, 255)        # half the pixels transparent
    for img in (Image.fromarray(pixels, "RGBA"), Image.fromarray(pixels[..., :3], "RGB")):
        ref = tiny_hf.processor(images=img, return_tensors="pt").pixel_values[0]
        assert (tiny_hf.preprocess(img) - ref).abs().max() < 0.03, img.mode
