"""The ``text`` entry of the trainer's data registry (``data.name: text``).

``text_meta(cfg)`` and ``text_build(cfg)`` follow the contract of
:mod:`xdlm_vision.data.registry`: vocabulary N = the tokenizer's size, a 1-D grid
``(text.seq_len,)``, no classes (or the JSONL labels when ``text.label_field`` is set), and a
``tokenizer`` spec of kind ``"text"`` from which sampling and evaluation rebuild the tokenizer and
the validation split. This module imports nothing heavy at the top, so the registry can import
it eagerly.
"""

from __future__ import annotations

from typing import Any


def _names(cfg, options) -> list[str]:
    if options.label_field is None:
        return []
    from xdlm_vision.data.text.corpus import read_documents
    from xdlm_vision.data.text.dataset import class_names_of
    from xdlm_vision.errors import UserError

    if not cfg.data.path:
        raise UserError("text.label_field needs a JSONL file in data.path (the embedded corpus has no labels)")
    docs = read_documents(cfg.data.path, options.text_field, options.label_field)
    if cfg.data.val_path:
        docs += read_documents(cfg.data.val_path, options.text_field, options.label_field)
    return class_names_of(docs)


def _meta(cfg, tokenizer, names: list[str]) -> Any:
    from xdlm_vision.config import text_options
    from xdlm_vision.data.meta import DataMeta
    from xdlm_vision.data.text.dataset import corpus_spec

    options = text_options(cfg)
    spec = corpus_spec(options, tokenizer, cfg.data.path, cfg.data.val_path)
    return DataMeta(num_tokens=int(tokenizer.vocab_size), grid_shape=(int(options.seq_len),),
                    num_classes=len(names), class_names=list(names), tokenizer_spec=spec)


def text_meta(cfg) -> Any:
    """DataMeta of a text run (loads the tokenizer; reads the data only for labelled JSONL)."""
    from xdlm_vision.config import text_options
    from xdlm_vision.data.text.dataset import check_options
    from xdlm_vision.tokenizers.text import load_text_tokenizer

    options = text_options(cfg)
    check_options(options)
    return _meta(cfg, load_text_tokenizer(options.tokenizer), _names(cfg, options))


def text_build(cfg) -> Any:
    """DataBundle of a text run: packed train/validation sequences, items (tokens (L,), label)."""
    from xdlm_vision.config import text_options
    from xdlm_vision.data.meta import DataBundle
    from xdlm_vision.data.text.dataset import build_text_corpus

    options = text_options(cfg)
    corpus = build_text_corpus(options, cfg.data.path, cfg.data.val_path)
    return DataBundle(corpus.train, corpus.val, _meta(cfg, corpus.tokenizer, corpus.class_names))

