"""Documents -> fixed-length token sequences ("wrap" packing) and the train/validation split.

Wrap packing (MDLM's ``wrap``, as used for the paper's LM1B/OWT runs): every document is followed by
one end-of-text token and all documents are concatenated into one stream,

    d1 d1 d1 EOT d2 d2 EOT d3 d3 d3 d3 EOT ...

which is cut into consecutive rows of ``seq_len`` tokens. A row may start or end in the middle of
a document; nothing is padded, and the final incomplete row is dropped (at most ``seq_len - 1``
tokens), so every token the model sees is real text or a real separator.

The split is by document, decided by a stable hash of (seed, document text): the same document
lands on the same side whatever the file order or the Python process (no ``hash()``
randomisation), and no document is shared between the two sides.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch

from xdlm_vision.errors import UserError


@dataclass
class DocumentSplit:
    train: list  # documents (any type) for training, in input order
    val: list  # documents for validation, in input order


@dataclass
class PackedSequences:
    tokens: torch.Tensor  # (S, L) int64 token ids
    labels: torch.Tensor  # (S,) int64 class ids (0 when unlabelled)


def split_fraction(seed: int, text: str) -> float:
    """A number in [0, 1) fixed by (seed, text) — the document's position in the split."""
    digest = hashlib.blake2b(f"{int(seed)}\0{text}".encode("utf-8", errors="surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2.0**64


def split_documents(docs: list, val_fraction: float, seed: int = 0, key=lambda d: d.text) -> DocumentSplit:
    """Deterministic document-level split: a document goes to validation when its hash fraction
    is below ``val_fraction``. With ``val_fraction > 0`` and at least two documents, validation
    gets at least one (the one with the smallest fraction) and training keeps at least one."""
    if not 0.0 <= val_fraction < 1.0:
        raise UserError(f"text.val_fraction must be in [0, 1), got {val_fraction}")
    fractions = [split_fraction(seed, key(d)) for d in docs]  # (D,)
    is_val = [f < val_fraction for f in fractions]
    if val_fraction > 0 and len(docs) >= 2:
        if not any(is_val):
            is_val[min(range(len(docs)), key=fractions.__getitem__)] = True
        if all(is_val):
            is_val[max(range(len(docs)), key=fractions.__getitem__)] = False
    return DocumentSplit(
        train=[d for d, v in zip(docs, is_val) if not v],
        val=[d for d, v in zip(docs, is_val) if v],
    )


def wrap_stream(token_lists: list[list[int]], eot_id: int) -> torch.Tensor:
    """All documents joined, each followed by ``eot_id``: (T,) int64, T = sum(len + 1)."""
    pieces = []
    sep = torch.tensor([eot_id], dtype=torch.long)
    for ids in token_lists:
        pieces.append(torch.as_tensor(ids, dtype=torch.long).reshape(-1))  # (n_i,)
        pieces.append(sep)
    if not pieces:
        return torch.zeros(0, dtype=torch.long)
    return torch.cat(pieces)


def pack_wrap(token_lists: list[list[int]], seq_len: int, eot_id: int) -> torch.Tensor:
    """Wrap-pack documents into rows of ``seq_len`` tokens: (S, seq_len) int64,
    S = floor(sum(len_i + 1) / seq_len); the incomplete tail is dropped."""
    if seq_len < 1:
        raise UserError(f"text.seq_len must be >= 1, got {seq_len}")
    stream = wrap_stream(token_lists, eot_id)  # (T,)
    rows = stream.numel() // seq_len
    return stream[: rows * seq_len].reshape(rows, seq_len)  # (S, L)


def pack_labelled(
    token_lists: list[list[int]], labels: list[int] | None, seq_len: int, eot_id: int
) -> PackedSequences:
    """Wrap packing, one stream per label (so every row carries one label), labels ascending.

    ``labels=None``: a single unlabelled stream, every row gets label 0.
    """
    if labels is None:
        tokens = pack_wrap(token_lists, seq_len, eot_id)  # (S, L)
        return PackedSequences(tokens, torch.zeros(tokens.shape[0], dtype=torch.long))
    if len(labels) != len(token_lists):
        raise UserError(f"{len(labels)} labels for {len(token_lists)} documents")
    blocks, block_labels = [], []
    for label in sorted(set(labels)):
        group = [ids for ids, lab in zip(token_lists, labels) if lab == label]
        packed = pack_wrap(group, seq_len, eot_id)  # (S_c, L)
        blocks.append(packed)
        block_labels.append(torch.full((packed.shape[0],), int(label), dtype=torch.long))
    if not blocks:
        return PackedSequences(torch.zeros(0, seq_len, dtype=torch.long), torch.zeros(0, dtype=torch.long))
    return PackedSequences(torch.cat(blocks), torch.cat(block_labels))
