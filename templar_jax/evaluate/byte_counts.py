"""UTF-8 bytes per token id, for bits per byte.

Definition used by `templar-jax eval`:

    bits per byte = (sum of target NLL in nats) / ln 2 / (sum of UTF-8 bytes of those targets)

over the same unmasked targets as the loss (pad/EOS targets count neither nats nor bytes).
The bytes of a target are the bytes that token stands for in the text:

* byte-level BPE (GPT-2 style, the bundled tokenizer): every character of the token's string is
  one byte of the 256-symbol byte alphabet, so the count is exact, including tokens that hold
  only part of a multi-byte character (decoding such a token alone would give U+FFFD instead);
* SentencePiece-style vocabularies: "\u2581" stands for one space, `<0xNN>` byte-fallback tokens
  for one byte, anything else for the UTF-8 encoding of its decoded string;
* special tokens (EOS, BOS, ...) stand for no text: 0 bytes.

Bits per byte is tokenizer-independent, so models with different vocabularies compare on it.
"""

from __future__ import annotations

import json
import re

import numpy as np

_BYTE_FALLBACK = re.compile(r"^<0x[0-9A-Fa-f]{2}>$")
_METASPACE = "\u2581"


def _uses_byte_level(tok) -> bool:
    """True when the tokenizer's decoder (or one in a decoder sequence) is ByteLevel."""
    try:
        decoder = json.loads(tok.to_str()).get("decoder") or {}
    except (ValueError, AttributeError):
        return False
    stack = [decoder]
    while stack:
        node = stack.pop()
        if node.get("type") == "ByteLevel":
            return True
        stack.extend(d for d in node.get("decoders", []) or [] if isinstance(d, dict))
    return False


def _special_ids(tok) -> set[int]:
    try:
        added = json.loads(tok.to_str()).get("added_tokens") or []
    except (ValueError, AttributeError):
        return set()
    return {int(t["id"]) for t in added if t.get("special")}


def token_byte_lengths(tok) -> np.ndarray:
    """int64 [vocab_size]: UTF-8 bytes each token id stands for (see the module docstring)."""
    from tokenizers import pre_tokenizers

    vocab_size = tok.get_vocab_size(with_added_tokens=True)
    out = np.zeros(vocab_size, dtype=np.int64)
    special = _special_ids(tok)
    alphabet = set(pre_tokenizers.ByteLevel.alphabet()) if _uses_byte_level(tok) else None
    for i in range(vocab_size):
        piece = tok.id_to_token(i)
        if piece is None or i in special:
            continue
        if alphabet is not None and all(c in alphabet for c in piece):
            out[i] = len(piece)  # one alphabet symbol = one byte
        elif _BYTE_FALLBACK.match(piece):
            out[i] = 1
        elif _METASPACE in piece:
            out[i] = len(piece.replace(_METASPACE, " ").encode("utf-8"))
        else:
            out[i] = len(tok.decode([i], skip_special_tokens=True).encode("utf-8"))
    return out
