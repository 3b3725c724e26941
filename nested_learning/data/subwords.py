"""Subword tokenizers for real text, and the disk cache that keeps their work across the jobs of a sweep.

- `bpe`: byte-level BPE (Hugging Face `tokenizers`, the GPT-2 scheme) trained on the texts it is
  given (the tasks' training split), `vocab_size` tokens counting the 256 byte tokens.
- `byte`: the same byte-level model with no merges: one token per UTF-8 byte, nothing to train.

Byte-level tokens never hold whitespace (every byte, space included, maps to a visible character;
a space is `Ġ`), so a token sequence is an example of data/tasks.py: its tokens joined by spaces.

The cache (`cache_dir`, e.g. ~/.cache/nested_learning/text) holds a trained tokenizer under a key
of everything that determines it (kind, vocabulary size, the training texts, the `tokenizers`
version), and the token ids of a corpus under a key of the tokenizer file and the texts; both keys
also hold CACHE_FORMAT, the version of this code's entries. Entries
are written atomically (a temporary file, then a rename), so jobs of a sweep that prepare the same
corpus at the same time each end with a whole file. BPE training is deterministic (the same texts
give the same file), so a cache miss rebuilds what a hit would have returned.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Sequence

from nested_learning.data.text_sources import require
from nested_learning.errors import UserError

TOKENIZERS = ("bpe", "byte")
TOKENIZER_FILE = "tokenizer.json"  # the copy a run directory keeps (train.run writes it)
BYTE_ALPHABET_SIZE = 256
ENCODE_CHUNK = 1000  # texts per encode_batch call: the progress bar's step
PROGRESS_FROM = 5000  # texts: preparation shorter than this shows no progress bar
# In both cache keys: raise it when what an entry holds, or how it is made, changes (the byte-level
# scheme, what the token ids are ids of), so entries written by older code are never read.
CACHE_FORMAT = 1


def fingerprint(*parts: object) -> str:
    """sha256 of the parts' JSON: the key of a cache entry."""
    return hashlib.sha256(json.dumps(parts, ensure_ascii=False).encode("utf-8")).hexdigest()


class Cache:
    """Text files under `root/<kind>/<key>.json`; root None keeps nothing."""

    def __init__(self, root: str | Path | None):
        self.root = None if root in (None, "", False) else Path(root).expanduser()

    def path(self, kind: str, key: str) -> Path | None:
        return None if self.root is None else self.root / kind / f"{key}.json"

    def get(self, kind: str, key: str) -> str | None:
        path = self.path(kind, key)
        return path.read_text(encoding="utf-8") if path is not None and path.is_file() else None

    def put(self, kind: str, key: str, text: str) -> None:
        path = self.path(kind, key)
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                out.write(text)
            os.replace(temporary, path)
        except OSError as err:
            raise UserError(f"task.cache_dir={self.root}: cannot write the cache there ({err.strerror}); "
                            "give a writable folder, or null to keep no cache") from None


def _byte_level(model):
    from tokenizers import Tokenizer, decoders, pre_tokenizers

    tokenizer = Tokenizer(model)
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    return tokenizer


def byte_tokenizer():
    from tokenizers import models, pre_tokenizers

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    return _byte_level(models.BPE(vocab={c: i for i, c in enumerate(alphabet)}, merges=[]))


def train_bpe(texts: Sequence[str], vocab_size: int):
    from tokenizers import models, pre_tokenizers, trainers

    tokenizer = _byte_level(models.BPE())
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=len(texts) >= PROGRESS_FROM)
    tokenizer.train_from_iterator(texts, trainer)
    return tokenizer


def build_tokenizer(kind: str, vocab_size: int, train_texts: Sequence[str], cache: Cache, tokenizer_file: str | None = None):
    """The tokenizer of a task sequence: loaded from `tokenizer_file` when given (a run's saved
    tokenizer.json), else `kind` built from the training texts, through the cache."""
    require("tokenizers", f"task.tokenizer={kind}")
    import tokenizers
    from tokenizers import Tokenizer

    if tokenizer_file is not None:
        path = Path(tokenizer_file).expanduser()
        try:
            return Tokenizer.from_str(path.read_text(encoding="utf-8"))
        except OSError as err:
            raise UserError(f"task.tokenizer_file={path}: cannot read it ({err.strerror})") from None
        except Exception as err:  # the file is not a tokenizer: the library's reason, on one line
            raise UserError(f"task.tokenizer_file={path}: not a tokenizers file ({str(err).splitlines()[0]})") from None
    if kind not in TOKENIZERS:
        raise UserError(f"task.tokenizer={kind!r}: give one of {', '.join(TOKENIZERS)}")
    if kind == "byte":
        return byte_tokenizer()
    if not isinstance(vocab_size, int) or vocab_size < BYTE_ALPHABET_SIZE + 1:
        raise UserError(f"task.vocab_size={vocab_size!r}: too small for BPE, which starts from the "
                        f"{BYTE_ALPHABET_SIZE} byte tokens; give at least {BYTE_ALPHABET_SIZE + 1} (or task.tokenizer=byte)")
    key = fingerprint(CACHE_FORMAT, "bpe", vocab_size, tokenizers.__version__, list(train_texts))
    saved = cache.get("tokenizer", key)
    if saved is not None:
        return Tokenizer.from_str(saved)
    tokenizer = train_bpe(train_texts, vocab_size)
    cache.put("tokenizer", key, tokenizer.to_str())
    return tokenizer


def encode(tokenizer, texts: Sequence[str], cache: Cache) -> list[list[str]]:
    """Each text's tokens, through the cache (keyed by the cache format, the tokenizer file and the texts)."""
    key = fingerprint(CACHE_FORMAT, tokenizer.to_str(), list(texts))
    saved = cache.get("tokens", key)
    if saved is not None:
        ids = json.loads(saved)
    else:
        from rich.progress import track

        chunks = [texts[i : i + ENCODE_CHUNK] for i in range(0, len(texts), ENCODE_CHUNK)]
        ids = []
        for chunk in track(chunks, description=f"tokenising {len(texts)} texts", transient=True,
                           disable=len(texts) < PROGRESS_FROM):
            ids += [encoding.ids for encoding in tokenizer.encode_batch(list(chunk))]
        cache.put("tokens", key, json.dumps(ids))
    vocab = {i: token for token, i in tokenizer.get_vocab().items()}
    return [[vocab[i] for i in row] for row in ids]
