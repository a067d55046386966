"""Tokenizers for prepare-data: load a user's `tokenizer.json`, or train a small byte-level BPE.

The trained BPE is byte-level (any text encodes; no unknown token), has the special token
"<eos>" at id 0 (EOS_ID) and exactly `vocab_size` ids when the corpus is large enough
(256 byte symbols + merges + "<eos>"). Training is deterministic: the same texts in the same
order give a byte-identical `tokenizer.json` (tested), so every peer that rebuilds the bundled
corpus gets the same ids.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from templar_jax.data.errors import DataError

EOS_TOKEN = "<eos>"
EOS_ID = 0
EOS_CANDIDATES = (EOS_TOKEN, "</s>", "<|endoftext|>", "<|end_of_text|>", "<|eot_id|>")


def train_bpe(texts: Iterable[str], vocab_size: int = 4096):
    """Train a byte-level BPE with "<eos>" = id 0 on `texts` (an ordered iterable of documents)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    if vocab_size < 257:
        raise DataError(f"vocab_size {vocab_size} must exceed the 256 byte symbols + <eos>")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[EOS_TOKEN],  # first special token -> id 0
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(texts), trainer=trainer)
    if tok.token_to_id(EOS_TOKEN) != EOS_ID:
        raise DataError(f"trained tokenizer put {EOS_TOKEN} at {tok.token_to_id(EOS_TOKEN)}, not {EOS_ID}")
    return tok


def load_tokenizer(path: str | Path):
    """A `tokenizers.Tokenizer` from a tokenizer.json file (`DataError` if unreadable)."""
    from tokenizers import Tokenizer

    try:
        return Tokenizer.from_file(str(path))
    except Exception as e:  # tokenizers raises a bare Exception on bad JSON
        raise DataError(f"{path}: cannot load tokenizer ({e})") from None


def eos_id_of(tok) -> int:
    """The tokenizer's end-of-document id: the first known EOS-like special token."""
    for name in EOS_CANDIDATES:
        i = tok.token_to_id(name)
        if i is not None:
            return int(i)
    raise DataError(f"tokenizer has none of the EOS tokens {EOS_CANDIDATES}; add one or pass --eos-id")
