"""Class names -> class ids, for ``--class Sneaker`` wherever ``--class 7`` works.

A name matches when it equals a class name after :func:`normalize_name` (case, spaces, hyphens and
other punctuation ignored: ``ankle-boot`` = ``Ankle boot``), or one of its alternatives separated
by ``/`` or ``,`` (``T-shirt/top`` answers to ``tshirt`` and ``top``; an ImageNet name such as
``tench, Tinca tinca`` to ``tench``). Ids stay ids; an unknown or ambiguous name is one UserError
listing a few valid names.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from xdlm_vision.errors import UserError


def normalize_name(text: str) -> str:
    """Lower case with everything but letters and digits removed."""
    return re.sub(r"[^0-9a-z]+", "", text.lower())


def _aliases(name: str) -> set[str]:
    parts = [name, *re.split(r"[/,]", name)]
    return {normalize_name(p) for p in parts if normalize_name(p)}


def resolve_class(token: str, class_names: Sequence[str] | None, flag: str = "--class") -> int:
    """``"7"`` -> 7; ``"Sneaker"`` -> the index of the class named so in ``class_names``."""
    text = token.strip()
    if re.fullmatch(r"[+-]?\d+", text):
        return int(text)
    if not class_names:
        raise UserError(f"{flag} {text!r} is not a class id, and this model has no class names")
    key = normalize_name(text)
    exact = [i for i, name in enumerate(class_names) if normalize_name(name) == key]
    hits = exact or [i for i, name in enumerate(class_names) if key in _aliases(name)]
    if len(hits) == 1:
        return hits[0]
    shown = ", ".join(repr(n) for n in list(class_names)[:12]) + (", ..." if len(class_names) > 12 else "")
    if not hits:
        raise UserError(f"{flag} {text!r} names no class of this model; classes: {shown}")
    raise UserError(f"{flag} {text!r} is ambiguous: it matches {', '.join(repr(class_names[i]) for i in hits[:5])}")
