"""Options of the text-LM mode (the ``text:`` section of a training config).

Kept import-light (a dataclass only) so that :mod:`xdlm_vision.config` can include it as a section.
The data location itself is the common ``data.path`` (a ``.txt``/``.jsonl`` file or a folder;
unset = the embedded standard-library corpus) and ``data.val_path`` (an optional separate
validation file; unset = a document-level split of ``data.path``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TextConfig:
    tokenizer: str = "byte"  # "byte" (256 bytes + end-of-text, N = 257) or a local HuggingFace tokenizer dir/json
    seq_len: int = 128  # tokens per packed training sequence (the DiT's 1-D grid length)
    text_field: str = "text"  # JSONL key holding the document text
    label_field: str | None = None  # JSONL key of a class label to condition on (None = unconditional)
    val_fraction: float = 0.05  # share of documents held out for validation (when data.val_path is unset)
    split_seed: int = 0  # seed of the deterministic document-level train/validation split
    max_documents: int | None = None  # use only the first this many documents (None = all); for quick runs


def text_options(cfg) -> TextConfig:
    """The ``text`` section of a run config, or the defaults when the config has none."""
    section = getattr(cfg, "text", None)
    if section is None:
        return TextConfig()
    if isinstance(section, dict):
        return TextConfig(**section)
    return section
