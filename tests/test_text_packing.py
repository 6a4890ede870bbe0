"""Wrap packing (exact boundaries, separators), the deterministic split, corpora and the data entry."""

from __future__ import annotations

import json
import random

import pytest
import torch

from xdlm_vision.config import TextConfig
from xdlm_vision.data.text.corpus import Document, read_documents, stdlib_docstrings
from xdlm_vision.data.text.dataset import build_text_corpus, evaluation_set_from_spec
from xdlm_vision.data.text.packing import pack_labelled, pack_wrap, split_documents, wrap_stream
from xdlm_vision.errors import UserError
from xdlm_vision.tokenizers.text import ByteTokenizer

EOT = 99


def test_pack_wrap_exact_rows():
    docs = [[1, 2, 3], [4], [5, 6]]
    # stream: 1 2 3 E 4 E 5 6 E  (9 tokens)
    assert wrap_stream(docs, EOT).tolist() == [1, 2, 3, EOT, 4, EOT, 5, 6, EOT]
    assert pack_wrap(docs, 3, EOT).tolist() == [[1, 2, 3], [EOT, 4, EOT], [5, 6, EOT]]
    assert pack_wrap(docs, 4, EOT).tolist() == [[1, 2, 3, EOT], [4, EOT, 5, 6]]  # tail [E] dropped
    assert pack_wrap(docs, 10, EOT).shape == (0, 10)
    assert pack_wrap([[]], 1, EOT).tolist() == [[EOT]]  # an empty document still gets its separator


def test_pack_wrap_matches_brute_force():
    rng = random.Random(0)
    for _ in range(20):
        docs = [[rng.randrange(50) for _ in range(rng.randrange(0, 12))] for _ in range(rng.randrange(1, 8))]
        seq_len = rng.randrange(1, 9)
        stream = []
        for d in docs:
            stream += d + [EOT]
        rows = [stream[i:i + seq_len] for i in range(0, len(stream) - seq_len + 1, seq_len)]
        packed = pack_wrap(docs, seq_len, EOT)
        assert packed.dtype == torch.long
        assert packed.tolist() == rows
        assert len(stream) - packed.numel() < seq_len


def test_pack_labelled_one_stream_per_label():
    docs, labels = [[1, 2], [3], [4, 5, 6], [7]], [1, 0, 1, 0]
    packed = pack_labelled(docs, labels, 2, EOT)
    # label 0: 3 E 7 E -> [3,E],[7,E]; label 1: 1 2 E 4 5 6 E -> [1,2],[E,4],[5,6] (tail E dropped)
    assert packed.tokens.tolist() == [[3, EOT], [7, EOT], [1, 2], [EOT, 4], [5, 6]]
    assert packed.labels.tolist() == [0, 0, 1, 1, 1]
    assert pack_labelled(docs, None, 2, EOT).labels.tolist() == [0] * 5  # 11 tokens -> 5 rows
    with pytest.raises(UserError):
        pack_labelled(docs, [0], 2, EOT)


def test_split_is_deterministic_disjoint_and_order_free():
    docs = [Document(f"document number {i} " * (i % 5 + 1)) for i in range(200)]
    a = split_documents(docs, 0.1, seed=3)
    shuffled = docs[::-1]
    b = split_documents(shuffled, 0.1, seed=3)
    assert {d.text for d in a.val} == {d.text for d in b.val}
    assert [d.text for d in a.train] == [d.text for d in docs if d not in a.val]  # input order kept
    assert not {d.text for d in a.train} & {d.text for d in a.val}
    assert len(a.train) + len(a.val) == 200
    assert 5 <= len(a.val) <= 40
    c = split_documents(docs, 0.1, seed=4)
    assert {d.text for d in c.val} != {d.text for d in a.val}
    assert split_documents(docs, 0.0).val == []
    tiny = split_documents(docs[:2], 0.01)  # a positive fraction always yields one validation doc
    assert len(tiny.val) == 1 and len(tiny.train) == 1
    with pytest.raises(UserError, match="val_fraction"):
        split_documents(docs, 1.0)


def test_read_txt_and_jsonl(tmp_path):
    (tmp_path / "a.txt").write_text("first para\nline two\n\n\nsecond para\n")
    assert [d.text for d in read_documents(tmp_path / "a.txt")] == ["first para\nline two", "second para"]
    rows = [{"body": "hello", "y": "pos"}, {"body": "world", "y": "neg"}]
    (tmp_path / "b.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    docs = read_documents(tmp_path / "b.jsonl", text_field="body", label_field="y")
    assert [(d.text, d.label) for d in docs] == [("hello", "pos"), ("world", "neg")]
    with pytest.raises(UserError, match="text.text_field"):
        read_documents(tmp_path / "b.jsonl")
    (tmp_path / "c.jsonl").write_text('{"text": "ok"}\n{broken\n')
    with pytest.raises(UserError, match="c.jsonl:2"):
        read_documents(tmp_path / "c.jsonl")
    with pytest.raises(UserError, match="data.path"):
        read_documents(tmp_path / "missing.txt")


def test_stdlib_corpus_is_deterministic_and_sizeable():
    docs = stdlib_docstrings()
    assert docs == stdlib_docstrings()
    assert len(docs) > 500 and sum(map(len, docs)) > 100_000
    assert len(set(docs)) == len(docs)


def test_build_corpus_from_file_keeps_split_documents_apart(tmp_path):
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta"]
    paras = [" ".join(words[(i + j) % 6] for j in range(8)) + f" #{i}" for i in range(60)]
    (tmp_path / "c.txt").write_text("\n\n".join(paras))
    opts = TextConfig(seq_len=16, val_fraction=0.2, split_seed=1)
    corpus = build_text_corpus(opts, str(tmp_path / "c.txt"))
    tok = ByteTokenizer()
    assert corpus.train.tokens.shape[1] == 16 and corpus.val is not None and len(corpus.val) > 0
    train_text = tok.decode(corpus.train.tokens.reshape(-1).tolist())
    val_text = tok.decode(corpus.val.tokens.reshape(-1).tolist())
    val_ids = {p.split("#")[1] for p in val_text.split("<|endoftext|>")[1:-1]}  # whole docs in validation
    assert val_ids and not any(f"#{i}<|endoftext|>" in train_text for i in val_ids)
    again = build_text_corpus(opts, str(tmp_path / "c.txt"))
    assert torch.equal(again.train.tokens, corpus.train.tokens) and torch.equal(again.val.tokens, corpus.val.tokens)
    x, y = corpus.train[0]
    assert x.shape == (16,) and x.dtype == torch.long and int(y) == 0
    with pytest.raises(UserError, match="text.seq_len"):
        build_text_corpus(TextConfig(seq_len=100_000), str(tmp_path / "c.txt"))


def test_text_entry_meta_and_spec_rebuild_validation(tmp_path):
    from xdlm_vision.config import Config
    from xdlm_vision.data.text.entry import text_build, text_meta

    cfg = Config()
    cfg.data.name = "text"
    cfg.text = TextConfig(seq_len=32, max_documents=300)
    meta = text_meta(cfg)
    assert (meta.num_tokens, tuple(meta.grid_shape), meta.num_classes) == (257, (32,), 0)
    spec = meta.tokenizer_spec
    assert spec["kind"] == "text" and spec["eot_id"] == 256 and spec["data_path"] is None
    json.dumps(spec)  # stored in config.json
    bundle = text_build(cfg)
    assert bundle.meta == meta and bundle.train[0][0].shape == (32,)
    val = evaluation_set_from_spec(spec)
    assert torch.equal(val.tokens, bundle.val.tokens)


def test_labelled_jsonl_entry(tmp_path):
    from xdlm_vision.config import Config
    from xdlm_vision.data.text.entry import text_build, text_meta

    rows = [{"text": f"sample text number {i} " * 3, "lang": ["en", "fr", "de"][i % 3]} for i in range(60)]
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    cfg = Config()
    cfg.data.name, cfg.data.path = "text", str(tmp_path / "d.jsonl")
    cfg.text = TextConfig(seq_len=16, label_field="lang", val_fraction=0.2)
    meta = text_meta(cfg)
    assert meta.num_classes == 3 and meta.class_names == ["de", "en", "fr"]
    bundle = text_build(cfg)
    assert set(bundle.train.labels.tolist()) == {0, 1, 2}
    cfg.data.path = None
    with pytest.raises(UserError, match="label_field"):
        text_meta(cfg)
