"""Text documents: the embedded standard-library corpus and plain-text / JSONL files.

A *document* is one string (plus an optional label for conditioning). The packer
(:mod:`xdlm_vision.data.text.packing`) joins documents with an end-of-text token.

* :func:`stdlib_documents` — the embedded default corpus, available on every machine with no
  download and no extra package: the docstrings of a fixed list of Python standard-library modules
  (the module, its public classes and functions, and the classes' public methods), gathered at run
  time with :func:`inspect.getdoc` in a fixed order, duplicates dropped. Its exact content follows
  the installed Python version (about 1 400 documents / 380 kB on CPython 3.11).
* :func:`read_documents` — a ``.txt`` file (documents separated by blank lines), a ``.jsonl`` file
  (one JSON object per line, the text under ``text_field``), or a directory of such files (sorted).
"""

from __future__ import annotations

import importlib
import inspect
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

from xdlm_vision.errors import UserError

# Modules whose docstrings form the embedded corpus (order matters: it fixes the corpus order).
STDLIB_MODULES = (
    "abc", "argparse", "ast", "base64", "bisect", "calendar", "collections", "colorsys", "contextlib",
    "copy", "csv", "dataclasses", "datetime", "decimal", "difflib", "enum", "fnmatch", "fractions",
    "functools", "getopt", "gettext", "glob", "gzip", "hashlib", "heapq", "hmac", "html", "http.client",
    "imaplib", "inspect", "io", "ipaddress", "itertools", "json", "logging", "mailbox", "math",
    "mimetypes", "numbers", "operator", "optparse", "os", "pathlib", "pickle", "pprint", "queue",
    "random", "re", "sched", "secrets", "shlex", "shutil", "socket", "statistics", "string", "struct",
    "subprocess", "tarfile", "tempfile", "textwrap", "threading", "timeit", "tokenize", "traceback",
    "typing", "unittest", "urllib.parse", "uuid", "warnings", "weakref", "zipfile",
)


@dataclass(frozen=True)
class Document:
    text: str
    label: str | None = None  # optional class label (JSONL ``label_field``)


def _public_members(namespace: dict, owner: str | None) -> list[tuple[str, object]]:
    """Sorted public (name, object) pairs; for modules only objects defined in that module."""
    members = []
    for name, obj in sorted(namespace.items()):
        if name.startswith("_"):
            continue
        if owner is not None and getattr(obj, "__module__", None) != owner:
            continue
        members.append((name, obj))
    return members


def stdlib_docstrings(modules: tuple[str, ...] = STDLIB_MODULES) -> list[str]:
    """Docstrings of ``modules`` and of their public classes, functions and methods.

    Deterministic: modules in the given order, members sorted by name, each distinct docstring kept
    once (first occurrence). Modules missing from a stripped-down Python are skipped.
    """
    seen: set[str] = set()
    docs: list[str] = []

    def add(obj) -> None:
        doc = inspect.getdoc(obj)
        if doc and doc.strip() and doc not in seen:
            seen.add(doc)
            docs.append(doc)

    with warnings.catch_warnings():  # reading deprecated members (typing.io, ...) warns
        warnings.simplefilter("ignore", DeprecationWarning)
        for mod_name in modules:
            _collect_module(mod_name, add)
    return docs


def _collect_module(mod_name: str, add) -> None:
    """Feed the docstrings of one module, its public classes/functions and their methods to add()."""
    try:
        module = importlib.import_module(mod_name)
    except ImportError:
        return
    add(module)
    for _, obj in _public_members(vars(module), module.__name__):
        if inspect.isclass(obj):
            add(obj)
            for _, method in _public_members(vars(obj), None):
                if inspect.isfunction(method):
                    add(method)
        elif inspect.isfunction(obj):
            add(obj)


def stdlib_documents() -> list[Document]:
    """The embedded corpus as documents (no labels)."""
    return [Document(text) for text in stdlib_docstrings()]


def _read_txt(path: Path) -> list[Document]:
    """Documents of a plain-text file: paragraphs separated by one or more blank lines."""
    text = path.read_text(encoding="utf-8", errors="replace").replace("\r\n", "\n")
    paragraphs, current = [], []
    for line in text.split("\n"):
        if line.strip():
            current.append(line)
        elif current:
            paragraphs.append("\n".join(current))
            current = []
    if current:
        paragraphs.append("\n".join(current))
    return [Document(p) for p in paragraphs]


def _read_jsonl(path: Path, text_field: str, label_field: str | None) -> list[Document]:
    docs = []
    with path.open(encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UserError(f"{path}:{line_no}: not valid JSON ({exc.msg})") from None
            if not isinstance(record, dict) or text_field not in record:
                raise UserError(f"{path}:{line_no}: no field {text_field!r}; set text.text_field to the key "
                                f"that holds the text")
            label = None
            if label_field is not None:
                if label_field not in record:
                    raise UserError(f"{path}:{line_no}: no label field {label_field!r} (text.label_field)")
                label = str(record[label_field])
            docs.append(Document(str(record[text_field]), label))
    return docs


def read_documents(path: str | Path, text_field: str = "text", label_field: str | None = None) -> list[Document]:
    """Documents of a ``.txt``/``.jsonl`` file or of every such file in a directory (sorted names)."""
    root = Path(path)
    if not root.exists():
        raise UserError(f"text data path {str(path)!r} does not exist; set data.path to a .txt/.jsonl file "
                        f"or folder, or leave it unset for the embedded corpus")
    files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
    files = [p for p in files if p.suffix.lower() in (".txt", ".jsonl", ".json", ".text", "")]
    if not files:
        raise UserError(f"no .txt or .jsonl files under {root} (data.path)")
    docs: list[Document] = []
    for file in files:
        if file.suffix.lower() in (".jsonl", ".json"):
            docs.extend(_read_jsonl(file, text_field, label_field))
        else:
            if label_field is not None:
                raise UserError(f"{file}: text.label_field needs JSONL input, got a plain-text file")
            docs.extend(_read_txt(file))
    if not docs:
        raise UserError(f"no documents found in {root} (data.path)")
    return docs
