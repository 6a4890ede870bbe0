"""Text data for the text-LM mode on the same XDLM core (``data.name: text``).

- :mod:`corpus`      the embedded stdlib-docstring corpus, ``.txt``/``.jsonl`` readers
- :mod:`packing`     "wrap" packing with end-of-text separators, deterministic document split
- :mod:`dataset`     packed datasets; rebuild a checkpoint's data from its stored spec
- :mod:`entry`       the ``text`` entry of the data registry (:mod:`xdlm_vision.data.registry`)

The rest of the text mode lives with its layer: the tokenizers in :mod:`xdlm_vision.tokenizers.text`,
the ``text:`` config section in :mod:`xdlm_vision.config`, sampling in :mod:`xdlm_vision.sampling.text`,
the coloured trajectory in :mod:`xdlm_vision.viz.text_trajectory`, perplexity in ``eval nelbo``
(:mod:`xdlm_vision.evaluation.jobs`). See docs/text.md.
"""
