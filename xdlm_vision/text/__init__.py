"""Text-LM mode on the same XDLM core (``core.corrupt``, ``core.nelbo``, the core samplers and
their :class:`~xdlm_vision.core.SamplerStep` masks are used unchanged; nothing here re-implements
the math).

- :mod:`tokenizers`  byte-level (N = 257) and local HuggingFace tokenizers behind one interface
- :mod:`corpus`      the embedded stdlib-docstring corpus, ``.txt``/``.jsonl`` readers
- :mod:`packing`     "wrap" packing with end-of-text separators, deterministic document split
- :mod:`config`      the ``text:`` section of a training config (:class:`TextConfig`)
- :mod:`dataset`     packed datasets; rebuild a checkpoint's data from its stored spec
- :mod:`entry`       the ``text`` entry of the trainer's data registry
- :mod:`generate`    sampling text (ancestral / confidence) with the trajectory kept
- :mod:`trajectory`  the trajectory as coloured ANSI text or a self-contained HTML page
- :mod:`perplexity`  validation NELBO / perplexity (``text_nelbo``, ``checkpoint_perplexity``)

Submodules are imported on use; importing this package loads nothing heavy.
"""
