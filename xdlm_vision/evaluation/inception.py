"""Inception-v3 features through torch-fidelity, from a weights file the user passes (no download).

The extractor is ``torch_fidelity.feature_extractor_inceptionv3.FeatureExtractorInceptionV3``:
a port of the TF "2015-12-05" Inception graph that the ADM evaluator, pytorch-fid and
torch-fidelity share, with TF1-style bilinear resizing of uint8 inputs to 299x299. We request
``'2048'`` (pool_3 features, for FID and precision/recall) and ``'logits_unbiased'`` (for IS).

The weights file is the one torch-fidelity downloads itself
(``weights-inception-2015-12-05-6726825d.pth``), or the same state dict saved as
``.safetensors``. torch-fidelity reads a path with ``torch.load(weights_only=False)``, i.e. it
unpickles; we never do that with a user's file: we read it with ``weights_only=True`` (or with
safetensors), re-serialise the plain tensor dict into memory and hand torch-fidelity that buffer.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from xdlm_vision.errors import UserError

FEATURES = ("2048", "logits_unbiased")
FLAG = "--inception-weights"


@dataclass
class InceptionFeatures:
    pool: np.ndarray  # (M, 2048) float32 pool_3 features (FID, precision/recall)
    logits: np.ndarray  # (M, 1008) float32 unbiased logits (IS = softmax over them)


def read_state_dict(path: str | Path, flag: str = FLAG) -> dict[str, torch.Tensor]:
    """A state dict of tensors from ``.pth``/``.pt`` (weights-only) or ``.safetensors``."""
    p = Path(path)
    if not p.is_file():
        raise UserError(
            f"{flag} {path}: no such file. Pass the torch-fidelity Inception weights "
            "(weights-inception-2015-12-05-6726825d.pth); nothing is downloaded"
        )
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(p))
        else:
            state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - corrupt files raise many types
        raise UserError(f"{flag} {path}: cannot read the weights ({exc.__class__.__name__}: {exc})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{flag} {path}: expected a state dict of tensors")
    return state


def build_extractor(state: dict[str, torch.Tensor], flag: str = FLAG) -> torch.nn.Module:
    """torch-fidelity's InceptionV3 extractor (eval, float32) loaded from a tensor dict."""
    try:
        from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
    except ImportError:
        raise UserError("FID/IS need torch-fidelity: pip install 'xdlm-vision[eval]'") from None
    buf = io.BytesIO()
    torch.save(state, buf)  # tensors only, written by us: safe for torch-fidelity's torch.load
    buf.seek(0)
    try:
        return FeatureExtractorInceptionV3("inception-v3-compat", list(FEATURES), feature_extractor_weights_path=buf)
    except RuntimeError as exc:  # load_state_dict: missing / unexpected keys or shape mismatch
        first = str(exc).splitlines()[0]
        raise UserError(f"{flag}: the file is not torch-fidelity's InceptionV3 state dict ({first})") from None


class InceptionExtractor:
    """Batched uint8 images -> :class:`InceptionFeatures`; grey images are repeated to RGB."""

    def __init__(self, weights_path: str | Path, device: str | torch.device = "cpu", flag: str = FLAG) -> None:
        self.weights_path = Path(weights_path)
        self.device = torch.device(device)
        self.model = build_extractor(read_state_dict(weights_path, flag), flag).to(self.device)

    def to(self, device: str | torch.device) -> InceptionExtractor:
        """Move the network (e.g. to the GPU once sampling is done)."""
        self.device = torch.device(device)
        self.model.to(self.device)
        return self

    @torch.no_grad()
    def __call__(self, images: np.ndarray | torch.Tensor, batch_size: int = 64, progress: bool = False) -> InceptionFeatures:
        """images (M, H, W, C) uint8 NHWC (C = 1 or 3) -> features; the extractor resizes to 299."""
        x = torch.as_tensor(np.asarray(images))
        if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[-1] not in (1, 3):
            raise UserError(f"Inception features need uint8 images (M, H, W, 1|3), got {x.dtype} {tuple(x.shape)}")
        pools, logits = [], []
        starts = range(0, x.shape[0], batch_size)
        if progress:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc="inception", unit="batch")
        for start in starts:
            batch = x[start : start + batch_size].permute(0, 3, 1, 2)  # (b, C, H, W)
            if batch.shape[1] == 1:
                batch = batch.expand(-1, 3, -1, -1)  # (b, 3, H, W)
            pool, logit = self.model(batch.contiguous().to(self.device))  # (b, 2048), (b, 1008)
            pools.append(pool.float().cpu())
            logits.append(logit.float().cpu())
        if not pools:
            return InceptionFeatures(np.zeros((0, 2048), np.float32), np.zeros((0, 1008), np.float32))
        return InceptionFeatures(torch.cat(pools).numpy(), torch.cat(logits).numpy())


def random_inception_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """A stand-in state dict with the real layout and random weights (tests, dry runs; FID meaningless).

    The module is built on the meta device (no memory, no init cost) just to list names and
    shapes; conv/linear weights get He-scaled normals so features neither vanish nor explode,
    batch-norm statistics are the identity (mean 0, var 1).
    """
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    class _Unloaded(FeatureExtractorInceptionV3):
        def load_state_dict(self, state_dict, strict=True, assign=False):  # keep the (meta) init
            return None

    empty = io.BytesIO()
    torch.save({}, empty)
    empty.seek(0)
    with torch.device("meta"):
        model = _Unloaded("inception-v3-random", ["2048"], feature_extractor_weights_path=empty)
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for name, t in model.state_dict().items():
        if name.endswith("running_var") or (name.endswith(".weight") and t.ndim == 1):
            state[name] = torch.ones(t.shape, dtype=t.dtype)
        elif name.endswith("num_batches_tracked"):
            state[name] = torch.zeros(t.shape, dtype=t.dtype)
        elif t.ndim >= 2:
            fan_in = int(np.prod(t.shape[1:]))
            state[name] = torch.randn(t.shape, generator=gen) * (2.0 / fan_in) ** 0.5
        else:  # biases, running means
            state[name] = torch.zeros(t.shape, dtype=t.dtype)
    return state
