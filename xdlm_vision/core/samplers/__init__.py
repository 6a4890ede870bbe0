"""Samplers: generator functions yielding :class:`SamplerStep`; new sampler = new file + entry."""

from xdlm_vision.core.samplers.ancestral import ancestral_sampler
from xdlm_vision.core.samplers.base import SamplerStep, sample, transitions
from xdlm_vision.core.samplers.confidence import confidence_sampler

SAMPLERS = {"ancestral": ancestral_sampler, "confidence": confidence_sampler}

__all__ = ["SAMPLERS", "SamplerStep", "ancestral_sampler", "confidence_sampler", "sample", "transitions"]
