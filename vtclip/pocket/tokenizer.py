"""A small but genuine CLIP BPE tokenizer: OpenAI's byte-level BPE cut to its first merges.

OpenAI's CLIP vocabulary is 256 byte characters, the same 256 with an end-of-word mark ``</w>``,
one token per BPE merge (in merge order), then ``<|startoftext|>`` and ``<|endoftext|>``. Keeping
only the first ``num_merges`` merges keeps every id below ``512 + num_merges`` exactly as in
OpenAI's tokenizer (BPE applies merges in rank order, so a cut list stops each word at an
intermediate state of the full segmentation), shrinks the embedding table ~6x, and still spells
every word of Pocket captions with one or two tokens. Only the two special tokens move
(to the end of the cut vocabulary).
Taught in: chapter 0 (the Pocket world).
"""
from __future__ import annotations

import gzip
from pathlib import Path

#: Merges kept from OpenAI's list (all Pocket caption words are then 1-2 tokens).
NUM_MERGES = 8192
BOS, EOS = "<|startoftext|>", "<|endoftext|>"


def openai_bpe_path() -> Path:
    """open_clip's bundled copy of OpenAI's merge list."""
    import open_clip

    path = Path(open_clip.__file__).with_name("bpe_simple_vocab_16e6.txt.gz")
    if not path.is_file():
        raise FileNotFoundError(f"OpenAI's BPE merge list is missing from open_clip ({path}); "
                                "reinstall open-clip-torch")
    return path


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's map of the 256 byte values to printable unicode characters."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def clip_vocab(num_merges: int = NUM_MERGES) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """(vocab token -> id, merges) of OpenAI's CLIP BPE cut to its first ``num_merges`` merges."""
    if not 0 <= num_merges <= 48894:
        raise ValueError(f"num_merges must be in [0, 48894] (OpenAI's list has 48894), got {num_merges}")
    lines = gzip.open(openai_bpe_path()).read().decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1:1 + num_merges]]
    chars = list(bytes_to_unicode().values())
    tokens = chars + [c + "</w>" for c in chars] + ["".join(m) for m in merges] + [BOS, EOS]
    return {t: i for i, t in enumerate(tokens)}, merges


def build_tokenizer(num_merges: int = NUM_MERGES, model_max_length: int = 32):
    """A transformers ``CLIPTokenizer`` over the cut vocabulary (pad = end-of-text, as OpenAI's)."""
    from transformers import CLIPTokenizer

    vocab, merges = clip_vocab(num_merges)
    return CLIPTokenizer(vocab=vocab, merges=merges, bos_token=BOS, eos_token=EOS, pad_token=EOS,
                         unk_token=EOS, model_max_length=model_max_length)
