"""Packed text datasets: documents -> tokenizer -> wrap packing -> (tokens (L,), label) items.

:func:`build_text_corpus` is the one place that turns text options into train/validation tensors;
the trainer's data registry (:mod:`xdlm_vision.data.text.entry`), the perplexity evaluation and the
tests all go through it, so a checkpoint's validation set can be rebuilt exactly from the spec
stored with it (:func:`corpus_spec` / :func:`corpus_from_spec`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch.utils.data import Dataset

from xdlm_vision.config import TextConfig
from xdlm_vision.data.text.corpus import Document, read_documents, stdlib_documents
from xdlm_vision.data.text.packing import PackedSequences, pack_labelled, split_documents
from xdlm_vision.errors import UserError
from xdlm_vision.tokenizers.text import TextTokenizer, encode_documents, load_text_tokenizer

EMBEDDED_CORPUS = "stdlib-docstrings"  # name of the embedded corpus in specs and logs


class PackedTextDataset(Dataset):
    """Items ``(tokens (L,) int64, label int64)`` of packed sequences."""

    def __init__(self, packed: PackedSequences) -> None:
        self.tokens = packed.tokens  # (S, L)
        self.labels = packed.labels  # (S,)

    def __len__(self) -> int:
        return int(self.tokens.shape[0])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.tokens[index], self.labels[index]

    @property
    def seq_len(self) -> int:
        return int(self.tokens.shape[1])


@dataclass
class TextCorpus:
    train: PackedTextDataset
    val: PackedTextDataset | None  # None when val_fraction = 0 and no data.val_path
    tokenizer: TextTokenizer
    class_names: list[str]  # [] for an unconditional corpus
    num_documents: int  # documents read (before the split)


def _load_documents(path: str | None, options: TextConfig) -> list[Document]:
    if path is None:
        if options.label_field is not None:
            raise UserError("text.label_field needs a JSONL file in data.path (the embedded corpus has no labels)")
        docs = stdlib_documents()
    else:
        docs = read_documents(path, options.text_field, options.label_field)
    if options.max_documents is not None:
        if options.max_documents < 1:
            raise UserError(f"text.max_documents must be >= 1 or null, got {options.max_documents}")
        docs = docs[: options.max_documents]
    return docs


def _pack(docs: list[Document], tokenizer: TextTokenizer, seq_len: int, label_ids: dict[str, int] | None):
    ids = encode_documents(tokenizer, [d.text for d in docs])
    labels = None if label_ids is None else [label_ids[d.label] for d in docs]
    return PackedTextDataset(pack_labelled(ids, labels, seq_len, tokenizer.eot_id))


def check_options(options: TextConfig) -> None:
    if options.seq_len < 2:
        raise UserError(f"text.seq_len must be >= 2, got {options.seq_len}")
    if not 0.0 <= options.val_fraction < 1.0:
        raise UserError(f"text.val_fraction must be in [0, 1), got {options.val_fraction}")


def class_names_of(docs: list[Document]) -> list[str]:
    """Sorted distinct labels (class id = position in this list)."""
    return sorted({d.label for d in docs if d.label is not None})


def build_text_corpus(
    options: TextConfig, path: str | None = None, val_path: str | None = None, tokenizer: TextTokenizer | None = None
) -> TextCorpus:
    """Read, split, tokenize and pack. ``path=None`` uses the embedded stdlib-docstring corpus.

    With ``val_path`` the validation set is that file (packed the same way) and ``path`` is used
    whole for training; otherwise ``path`` is split by document (``options.val_fraction``).
    """
    check_options(options)
    tokenizer = tokenizer or load_text_tokenizer(options.tokenizer)
    docs = _load_documents(path, options)
    if val_path is not None:
        val_docs = read_documents(val_path, options.text_field, options.label_field)
        split_train, split_val = docs, val_docs
    else:
        split = split_documents(docs, options.val_fraction, options.split_seed)
        split_train, split_val = split.train, split.val
    names = class_names_of(docs + (split_val if val_path is not None else []))
    label_ids = {name: i for i, name in enumerate(names)} if options.label_field is not None else None
    train = _pack(split_train, tokenizer, options.seq_len, label_ids)
    if len(train) == 0:
        raise UserError(f"the training text holds fewer than text.seq_len={options.seq_len} tokens; "
                        f"lower text.seq_len or add text")
    val = _pack(split_val, tokenizer, options.seq_len, label_ids) if split_val else None
    if val is not None and len(val) == 0:
        raise UserError(f"the validation text holds fewer than text.seq_len={options.seq_len} tokens; "
                        f"raise text.val_fraction, lower text.seq_len or pass a larger data.val_path")
    return TextCorpus(train, val, tokenizer, names, len(docs))


def corpus_spec(options: TextConfig, tokenizer: TextTokenizer, path: str | None, val_path: str | None) -> dict[str, Any]:
    """Everything needed to rebuild the tokenizer and the data: stored in checkpoints as the
    ``tokenizer`` spec (``kind: "text"``)."""
    return {
        "kind": "text",
        "tokenizer": options.tokenizer,
        "vocab_size": int(tokenizer.vocab_size),
        "eot_id": int(tokenizer.eot_id),
        "seq_len": int(options.seq_len),
        "data_path": path,
        "val_path": val_path,
        "corpus": EMBEDDED_CORPUS if path is None else "files",
        "options": asdict(options),
    }


def options_from_spec(spec: dict[str, Any]) -> TextConfig:
    """The :class:`TextConfig` recorded in a checkpoint's text spec."""
    if spec.get("kind") != "text":
        raise UserError(f"not a text checkpoint (tokenizer kind {spec.get('kind')!r}); use an image command")
    return TextConfig(**spec["options"])


def evaluation_set_from_spec(spec: dict[str, Any], path: str | None = None,
                             class_names: list[str] | None = None) -> PackedTextDataset:
    """The text a checkpoint is evaluated on, packed exactly as in training.

    ``path=None``: the checkpoint's own validation split (rebuilt from the stored data path, or the
    embedded corpus). ``path``: that file or folder, used whole (labels mapped through
    ``class_names``, the checkpoint's classes).
    """
    options = options_from_spec(spec)
    from xdlm_vision.tokenizers import load_tokenizer

    tokenizer = load_tokenizer(spec)
    if path is None:
        corpus = build_text_corpus(options, spec.get("data_path"), spec.get("val_path"), tokenizer=tokenizer)
        if corpus.val is None:
            raise UserError("this checkpoint was trained without a validation split (text.val_fraction=0); "
                            "pass a text file to evaluate on")
        return corpus.val
    docs = read_documents(path, options.text_field, options.label_field)
    label_ids = None
    if options.label_field is not None:
        label_ids = {name: i for i, name in enumerate(class_names or [])}
        unknown = sorted({d.label for d in docs} - set(label_ids))
        if unknown:
            raise UserError(f"{path}: labels {unknown[:5]} were not seen in training")
    packed = _pack(docs, tokenizer, options.seq_len, label_ids)
    if len(packed) == 0:
        raise UserError(f"{path} holds fewer than {options.seq_len} tokens (the checkpoint's sequence length)")
    return packed
