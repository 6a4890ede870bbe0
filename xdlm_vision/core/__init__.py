"""The XDLM core: pure tensor math, no nn.Module, no I/O.

- :mod:`process`    token space (N data tokens + mask, mixing ratio k), forward corruption, prior
- :mod:`schedules`  alpha_t schedules (linear, cosine)
- :mod:`timesteps`  antithetic time sampling for training
- :mod:`loss`       continuous-time NELBO (training loss), finite-step KL, MDLM baseline loss
- :mod:`objective`  the diffusion spec and the per-batch NELBO (draw t, z_t; run the model)
- :mod:`posterior`  p(z_s | z_t): dense form for analysis and the O(B L) mixture sampler step
- :mod:`guidance`   classifier-free guidance (XDLM convention) and its schedules
- :mod:`samplers`   ancestral and confidence-based samplers as generators of per-step states
- :mod:`conditioning` known tokens for editing (inpaint/outpaint/variations) and partial re-noising
- :mod:`rng`        per-sample random streams (results independent of batch size)
"""

from xdlm_vision.core.conditioning import KnownTokens, border, renoise
from xdlm_vision.core.guidance import GuidanceSchedule, guided_logits
from xdlm_vision.core.loss import finite_step_kl, masked_cross_entropy, nelbo
from xdlm_vision.core.objective import DiffusionSpec, batch_nelbo
from xdlm_vision.core.posterior import PosteriorDraw, posterior_probs, posterior_step
from xdlm_vision.core.process import TokenSpace, corrupt, forward_marginal, sample_prior
from xdlm_vision.core.rng import seeded_generators
from xdlm_vision.core.samplers import SAMPLERS, SamplerStep, ancestral_sampler, confidence_sampler, sample
from xdlm_vision.core.schedules import get_schedule
from xdlm_vision.core.timesteps import sample_times

__all__ = [
    "SAMPLERS",
    "DiffusionSpec",
    "GuidanceSchedule",
    "KnownTokens",
    "PosteriorDraw",
    "SamplerStep",
    "TokenSpace",
    "ancestral_sampler",
    "batch_nelbo",
    "border",
    "confidence_sampler",
    "corrupt",
    "finite_step_kl",
    "forward_marginal",
    "get_schedule",
    "guided_logits",
    "masked_cross_entropy",
    "nelbo",
    "posterior_probs",
    "posterior_step",
    "renoise",
    "sample",
    "sample_prior",
    "sample_times",
    "seeded_generators",
]
