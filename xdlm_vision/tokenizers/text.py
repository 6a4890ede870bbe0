"""Text tokenizers behind one small interface.

Every tokenizer here has ``encode(str) -> list[int]`` (no special tokens added),
``decode(list[int]) -> str``, ``vocab_size`` (N, the number of data tokens; the diffusion mask is
id N and is *not* part of the tokenizer), ``eot_id`` (the end-of-text separator used when packing
documents) and ``token_text(id) -> str`` (one token shown on its own, for the coloured trajectory).

* :class:`ByteTokenizer` — the 256 byte values plus one end-of-text id (256): N = 257, no files.
* :class:`HFTokenizer` — any HuggingFace tokenizer saved in a local directory (GPT-2,
  bert-base-uncased, ...) or a single ``tokenizer.json``; ``transformers``/``tokenizers`` are
  imported only here, and nothing is ever downloaded (``local_files_only=True``).

:func:`load_text_tokenizer` maps the config string (``"byte"`` or a path) to one of them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

from xdlm_vision.errors import UserError

EOT_TEXT = "<|endoftext|>"  # how the byte tokenizer writes its end-of-text id
# special tokens tried, in order, as the end-of-text separator of a HuggingFace tokenizer
EOT_CANDIDATES = ("<|endoftext|>", "</s>", "[SEP]", "<eos>", "<|eot_id|>", "<eot>", "[EOS]")


@runtime_checkable
class TextTokenizer(Protocol):
    """What the text mode needs from a tokenizer."""

    vocab_size: int  # N data tokens, ids 0..N-1
    eot_id: int  # end-of-text separator id, in 0..N-1

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: list[int]) -> str: ...

    def token_text(self, token_id: int) -> str: ...


def _visible(text: str) -> str:
    """Make whitespace/control characters visible so one token stays on one line."""
    out = []
    for ch in text:
        if ch == "\n":
            out.append("\u21b5")  # ↵
        elif ch == "\t":
            out.append("\u2192")  # →
        elif ch == "\r":
            out.append("\\r")
        elif ord(ch) < 32 or ord(ch) == 127:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return "".join(out)


def printable(text: str) -> str:
    """``text`` with control characters other than newline and tab written as ``\\xNN`` (so a sampled
    escape byte cannot drive the terminal)."""
    return "".join(
        ch if ch in "\n\t" or not (ord(ch) < 32 or 127 <= ord(ch) < 160) else f"\\x{ord(ch):02x}" for ch in text
    )


class ByteTokenizer:
    """UTF-8 bytes as tokens 0..255 and an end-of-text token 256 (N = 257)."""

    vocab_size = 257
    eot_id = 256

    @property
    def spec(self) -> str:
        return "byte"

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: list[int]) -> str:
        """Bytes between end-of-text ids are decoded as UTF-8 (invalid bytes -> U+FFFD)."""
        parts, run = [], bytearray()
        for i in ids:
            i = int(i)
            if i == self.eot_id:
                parts.append(run.decode("utf-8", errors="replace"))
                parts.append(EOT_TEXT)
                run = bytearray()
            elif 0 <= i < 256:
                run.append(i)
            else:
                raise UserError(f"byte tokenizer got id {i}, outside 0..{self.vocab_size - 1}")
        parts.append(run.decode("utf-8", errors="replace"))
        return "".join(parts)

    def token_text(self, token_id: int) -> str:
        token_id = int(token_id)
        if token_id == self.eot_id:
            return EOT_TEXT
        if 32 <= token_id < 127 or token_id in (9, 10):
            return _visible(chr(token_id))
        return f"\\x{token_id:02x}"


class HFTokenizer:
    """A HuggingFace tokenizer from local files: a directory (``AutoTokenizer``, e.g. GPT-2 or
    bert-base-uncased saved with ``save_pretrained``) or a ``tokenizer.json`` file (``tokenizers``).

    ``vocab_size`` counts every id the tokenizer can produce (added special tokens included), so
    the model's head covers them all. The end-of-text id is the tokenizer's EOS/SEP token, or the
    first of :data:`EOT_CANDIDATES` present in its vocabulary.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise UserError(
                f"tokenizer path {str(path)!r} does not exist; set text.tokenizer=byte or to a local "
                f"HuggingFace tokenizer directory / tokenizer.json (nothing is downloaded)"
            )
        self._auto = None  # transformers tokenizer (a save_pretrained directory)
        self._fast = None  # tokenizers.Tokenizer (a tokenizer.json)
        self._spaced: bool | None = None  # see _joins_with_spaces
        if self.path.is_file():
            self._fast = self._load_json(self.path)
        elif _is_bare_json_dir(self.path):
            self._fast = self._load_json(self.path / "tokenizer.json")
        else:
            self._auto = self._load_auto(self.path)
        self.vocab_size = self._count()
        self.eot_id = self._find_eot()

    @property
    def spec(self) -> str:
        return str(self.path)

    @staticmethod
    def _load_json(path: Path):
        try:
            from tokenizers import Tokenizer
        except ImportError:
            raise UserError("loading a tokenizer.json needs the `tokenizers` package (pip install "
                            "'xdlm-vision[text]'), or use text.tokenizer=byte") from None
        try:
            return Tokenizer.from_file(str(path))
        except Exception as exc:  # noqa: BLE001 - the Rust side raises plain Exception for any bad file
            raise UserError(f"cannot read tokenizer file {path}: {exc}") from None

    @staticmethod
    def _load_auto(path: Path):
        try:
            from transformers import AutoTokenizer
        except ImportError:
            raise UserError("loading a tokenizer directory needs `transformers` (pip install "
                            "'xdlm-vision[text]'), or use text.tokenizer=byte") from None
        try:
            return AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        except (OSError, ValueError) as exc:
            raise UserError(f"cannot load a HuggingFace tokenizer from {path}: {exc}") from None

    def _count(self) -> int:
        if self._auto is not None:
            return len(self._auto)
        return int(self._fast.get_vocab_size(with_added_tokens=True))

    def _token_id(self, token: str) -> int | None:
        if self._auto is not None:
            vocab = self._auto.get_vocab()
            return vocab.get(token)
        return self._fast.token_to_id(token)

    def _find_eot(self) -> int:
        if self._auto is not None:
            for attr in ("eos_token_id", "sep_token_id"):
                value = getattr(self._auto, attr, None)
                if value is not None:
                    return int(value)
        for token in EOT_CANDIDATES:
            value = self._token_id(token)
            if value is not None:
                return int(value)
        raise UserError(
            f"tokenizer {self.path} has no end-of-text token (looked for EOS/SEP and {', '.join(EOT_CANDIDATES)}); "
            "add one to the tokenizer or use text.tokenizer=byte"
        )

    def encode(self, text: str) -> list[int]:
        if self._auto is not None:
            return list(self._auto.encode(text, add_special_tokens=False))
        return list(self._fast.encode(text, add_special_tokens=False).ids)

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        """Many documents at once (the Rust tokenizers run them in parallel)."""
        if self._auto is not None:
            return [list(ids) for ids in self._auto(list(texts), add_special_tokens=False)["input_ids"]]
        return [list(e.ids) for e in self._fast.encode_batch(list(texts), add_special_tokens=False)]

    def decode(self, ids: list[int]) -> str:
        ids = [int(i) for i in ids]
        if self._auto is not None:
            return self._auto.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
        return self._fast.decode(ids, skip_special_tokens=False)

    def _joins_with_spaces(self) -> bool:
        """True for WordPiece/WordLevel-style tokenizers whose decode puts a space between tokens
        (BERT), False when tokens carry their own spaces (GPT-2 byte-level BPE)."""
        if self._spaced is None:
            probe = next((i for i in range(self.vocab_size) if i != self.eot_id and self.decode([i]).strip()), None)
            self._spaced = probe is not None and len(self.decode([probe, probe])) > 2 * len(self.decode([probe]))
        return self._spaced

    def token_text(self, token_id: int) -> str:
        """One token as it reads inside decoded text (``##`` continuations joined, spaces kept)."""
        token_id = int(token_id)
        piece = (self._auto.convert_ids_to_tokens(token_id) if self._auto is not None
                 else self._fast.id_to_token(token_id))
        if piece is None:
            return "?"
        if piece.startswith("##"):  # WordPiece continuation
            return _visible(piece[2:])
        text = self.decode([token_id])
        return _visible(" " + text if self._joins_with_spaces() else text)


def _is_bare_json_dir(path: Path) -> bool:
    """A directory holding only a ``tokenizer.json`` (no transformers config): load it directly."""
    config_files = ("tokenizer_config.json", "vocab.txt", "vocab.json", "config.json")
    return (path / "tokenizer.json").is_file() and not any((path / f).is_file() for f in config_files)


def load_text_tokenizer(spec: str) -> TextTokenizer:
    """``"byte"`` -> :class:`ByteTokenizer`; any other string is a local path -> :class:`HFTokenizer`."""
    if spec == "byte":
        return ByteTokenizer()
    return HFTokenizer(spec)


def encode_documents(tokenizer: TextTokenizer, texts: list[str]) -> list[list[int]]:
    """Token ids of each document (batched where the tokenizer supports it)."""
    batch = getattr(tokenizer, "encode_batch", None)
    if batch is not None:
        return batch(texts)
    return [tokenizer.encode(t) for t in texts]
