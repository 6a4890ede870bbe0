"""Image tokenizers: one interface (:class:`ImageTokenizer`), three implementations.

- :class:`PixelTokenizer` (CIFAR-10 / digits pixel intensities),
- LlamaGen VQ-VAE (:mod:`.llamagen`, state-dict compatible with ``vq_ds16_c2i.pt``),
- a diffusers ``VQModel`` directory (:mod:`.diffusers_vq`).

Build one with :func:`open_tokenizer` (CLI flags) or :func:`load_tokenizer` (a recorded spec);
record one with :func:`tokenizer_spec`. See docs/tokenizers.md.
"""

from xdlm_vision.tokenizers.base import ImageTokenizer
from xdlm_vision.tokenizers.factory import load_tokenizer, open_tokenizer, tokenizer_spec
from xdlm_vision.tokenizers.pixel import PixelTokenizer

__all__ = ["ImageTokenizer", "PixelTokenizer", "load_tokenizer", "open_tokenizer", "tokenizer_spec"]
