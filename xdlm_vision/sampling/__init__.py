"""Sampling: a loaded checkpoint -> token grids (images) or token sequences (text).

- :mod:`model`     device choice, :func:`load_for_sampling` (checkpoint + its tokenizer)
- :mod:`generate`  labels, seeds, :class:`SamplingOptions`, the step stream, batches, decoding
- :mod:`compare`   several checkpoints sampled alike (``sample --compare``, the demo's compare tab)
- :mod:`text`      sampling text from a text checkpoint, keeping the trajectory

Saving images (PNG grids, per-image files) is :mod:`xdlm_vision.viz.images`.
"""

from xdlm_vision.checkpoints import LoadedModel, packaged_checkpoint
from xdlm_vision.sampling.compare import (
    CompareModel,
    compare_class_count,
    compare_class_names,
    compare_steps,
    load_compare_models,
    sample_compare,
)
from xdlm_vision.sampling.generate import (
    SAMPLER_CHOICES,
    SamplingOptions,
    batches,
    decode_tokens,
    decoder,
    generate,
    parse_classes,
    sample_seeds,
    sampler_steps,
)
from xdlm_vision.sampling.model import checkpoint_tokenizer, load_for_sampling, one_line, resolve_device

__all__ = [
    "SAMPLER_CHOICES",
    "CompareModel", "LoadedModel", "SamplingOptions", "batches", "checkpoint_tokenizer", "compare_class_count",
    "compare_class_names", "compare_steps", "decode_tokens", "decoder", "generate", "load_compare_models",
    "load_for_sampling", "one_line", "packaged_checkpoint", "parse_classes", "resolve_device", "sample_compare",
    "sample_seeds", "sampler_steps",
]
