"""Text tokenizers: byte-level and HuggingFace (tiny tokenizers built offline) round trips and errors."""

from __future__ import annotations

import pytest

from xdlm_vision.errors import UserError
from xdlm_vision.tokenizers.text import (
    EOT_TEXT,
    ByteTokenizer,
    HFTokenizer,
    TextTokenizer,
    load_text_tokenizer,
)

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Return a new list containing all items from the iterable in ascending order.",
    "def f(x):\n    return {'a': x, \"b\": [1, 2]}  # comment",
    "Ünïcödé text — with emoji 🙂 and tabs\tand\nnewlines.",
]


def _bpe_tokenizer(special=("<|endoftext|>",)):
    tokenizers = pytest.importorskip("tokenizers")
    from tokenizers import decoders, models, pre_tokenizers, trainers

    tok = tokenizers.Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=list(special),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(SENTENCES * 3, trainer=trainer)
    return tok


def test_byte_round_trip_and_ids():
    tok = ByteTokenizer()
    assert isinstance(tok, TextTokenizer)
    assert (tok.vocab_size, tok.eot_id) == (257, 256)
    for text in SENTENCES + ["", "a"]:
        ids = tok.encode(text)
        assert all(0 <= i < 256 for i in ids)
        assert ids == list(text.encode("utf-8"))
        assert tok.decode(ids) == text
    assert tok.decode(tok.encode("ab") + [256] + tok.encode("c")) == f"ab{EOT_TEXT}c"
    assert tok.token_text(ord("x")) == "x" and tok.token_text(10) == "\u21b5" and tok.token_text(256) == EOT_TEXT
    assert tok.token_text(0xC3) == "\\xc3"
    with pytest.raises(UserError):
        tok.decode([257])
    assert isinstance(load_text_tokenizer("byte"), ByteTokenizer)


def test_hf_tokenizer_json_round_trip(tmp_path):
    raw = _bpe_tokenizer()
    path = tmp_path / "tokenizer.json"
    raw.save(str(path))
    for spec in (str(path), str(tmp_path)):  # the file, or a folder holding only tokenizer.json
        tok = load_text_tokenizer(spec)
        assert isinstance(tok, HFTokenizer)
        assert tok.vocab_size == raw.get_vocab_size(with_added_tokens=True)
        assert tok.eot_id == raw.token_to_id("<|endoftext|>")
        for text in SENTENCES:
            ids = tok.encode(text)
            assert ids and max(ids) < tok.vocab_size and tok.eot_id not in ids
            assert tok.decode(ids) == text
        assert tok.encode_batch(SENTENCES) == [tok.encode(s) for s in SENTENCES]
        shown = "".join(tok.token_text(i) for i in tok.encode(SENTENCES[2]))
        assert shown == SENTENCES[2].replace("\n", "\u21b5")  # byte-level BPE tokens carry their spaces


def test_wordpiece_tokens_display_like_decoded_text(tmp_path):
    tokenizers = pytest.importorskip("tokenizers")
    from tokenizers import decoders, models, pre_tokenizers, trainers

    raw = tokenizers.Tokenizer(models.WordPiece(unk_token="[UNK]"))
    raw.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    raw.decoder = decoders.WordPiece()
    raw.train_from_iterator(["the cats sat on the mats", "a cat is sitting"] * 5, trainer=trainers.WordPieceTrainer(
        vocab_size=60, special_tokens=["[UNK]", "[SEP]"], show_progress=False))
    raw.save(str(tmp_path / "wp.json"))
    tok = load_text_tokenizer(str(tmp_path / "wp.json"))
    assert tok.eot_id == raw.token_to_id("[SEP]")
    ids = tok.encode("the catsits sat")
    assert len(ids) > 3  # the unseen "catsits" is split into word pieces
    assert "".join(tok.token_text(i) for i in ids).strip() == tok.decode(ids) == "the catsits sat"


def test_hf_tokenizer_directory_through_transformers(tmp_path):
    transformers = pytest.importorskip("transformers")
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=_bpe_tokenizer(), eos_token="<|endoftext|>")
    fast.save_pretrained(str(tmp_path / "tok"))
    tok = load_text_tokenizer(str(tmp_path / "tok"))
    assert tok._auto is not None  # went through AutoTokenizer (local files only)
    assert tok.eot_id == fast.eos_token_id
    assert tok.vocab_size == len(fast)
    for text in SENTENCES:
        assert tok.decode(tok.encode(text)) == text
    assert tok.encode_batch(SENTENCES[:2]) == [tok.encode(s) for s in SENTENCES[:2]]


def test_hf_errors(tmp_path):
    with pytest.raises(UserError, match="text.tokenizer"):
        load_text_tokenizer(str(tmp_path / "missing"))
    raw = _bpe_tokenizer(special=("[UNK]",))
    raw.save(str(tmp_path / "noeot.json"))
    with pytest.raises(UserError, match="end-of-text"):
        load_text_tokenizer(str(tmp_path / "noeot.json"))
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(UserError, match="cannot read tokenizer"):
        load_text_tokenizer(str(tmp_path / "bad.json"))
