"""Read the XDLM authors' checkpoint files without executing anything they contain.

Accepted inputs (``docs/official.md``):

- a Lightning ``.ckpt`` (``state_dict`` with ``backbone.*`` and ``image_tokenizer.vae.*`` keys,
  ``ema.shadow_params`` as an unnamed list, ``hyper_parameters`` holding omegaconf and official
  classes);
- a plain state dict (``backbone.*`` or bare backbone names) saved with ``torch.save``;
- an EMA-only dict ``{decay, num_updates, shadow_params}``;
- a ``*.safetensors`` export (optionally with a ``config.json`` beside it), or a directory holding
  ``model.safetensors`` + ``config.json``.

Torch files are pickles. Before loading, every global the pickle names is listed (torch's
``get_unsafe_globals_in_checkpoint``, which only walks the opcodes with ``pickletools``); each one
must belong to the few modules official checkpoints use (omegaconf, the official repository's
``vision_datasets`` / ``models``, ``torch.nn`` modules, Lightning, a few builtins), and is then
registered as an *inert stand-in*: a class under that name that stores its arguments and state and
runs nothing. The file is then read with ``torch.load(weights_only=True)``. Any other global — a
function such as ``os.system`` — is refused with one line before anything is unpickled. The
official modules themselves are never imported, and omegaconf interpolations (one of them in the
official configs would call ``os.sched_getaffinity``) are never resolved.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from xdlm_vision.errors import UserError

# module prefixes and exact names a released checkpoint's pickle may name (all become stand-ins)
ALLOWED_PREFIXES = (
    "omegaconf.", "vision_datasets.", "models.", "algo.", "trainer_base.", "xdm_utils.", "torch.nn.modules.",
    "lightning.", "pytorch_lightning.", "lightning_fabric.",
)
ALLOWED_NAMES = frozenset({
    "builtins.dict", "builtins.list", "builtins.int", "builtins.float", "builtins.str", "builtins.bool",
    "builtins.tuple", "builtins.set", "typing.Any", "collections.defaultdict", "collections.OrderedDict",
})
BACKBONE_PREFIX = "backbone."
VQ_PREFIX = "image_tokenizer.vae."
VQ_MARKERS = ("quantize.embedding.weight", "encoder.conv_in.weight", "decoder.conv_out.weight")


class StandIn:
    """Inert placeholder for a class named in an official pickle: keeps args and state, runs nothing."""

    official_name = "?"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args
        self.kwargs = kwargs
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __repr__(self) -> str:
        return f"<stand-in {self.official_name}>"


def _plain_dict_factory(*_args: Any, **_kwargs: Any) -> dict:
    """Stand-in for collections.defaultdict: a plain dict (the default factory is dropped)."""
    return {}


def _stand_in_for(name: str):
    if name == "collections.defaultdict":
        return _plain_dict_factory
    return type(name.rsplit(".", 1)[-1], (StandIn,), {"official_name": name, "__module__": __name__})


def is_allowed_global(name: str) -> bool:
    return name in ALLOWED_NAMES or name.startswith(ALLOWED_PREFIXES)


def safe_torch_load(path: str | Path, flag: str = "FILE") -> Any:
    """torch.load(weights_only=True) with an inert stand-in for every allowed global; UserError
    (one line, nothing executed) for a truncated file or a global outside the allowed set."""
    path = Path(path)
    if not zipfile.is_zipfile(path):
        raise UserError(f"{flag} {path}: not a complete torch checkpoint (not a zip archive: truncated, "
                        "corrupt or a legacy format)")
    try:
        names = sorted(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
    except Exception as exc:  # noqa: BLE001 - zip/pickle errors of damaged files come in many types
        raise UserError(f"{flag} {path}: cannot list the pickle's globals ({exc.__class__.__name__}: "
                        f"{_line(exc)}); the file is truncated or corrupt") from None
    refused = [n for n in names if not is_allowed_global(n)]
    if refused:
        raise UserError(f"{flag} {path}: its pickle names {', '.join(refused[:3])}, which no official XDLM "
                        "checkpoint uses; refusing to load it (nothing was executed)")
    pairs = [(_stand_in_for(n), n) for n in names]
    try:
        with torch.serialization.safe_globals(pairs):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise UserError(f"{flag} {path}: cannot read it with weights_only=True ({exc.__class__.__name__}: "
                        f"{_line(exc)}); the file is truncated or corrupt") from None


def _line(exc: Exception, limit: int = 200) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 4] + " ..."


def to_plain(obj: Any) -> Any:
    """omegaconf stand-ins -> plain dicts/lists/values (interpolation strings stay strings);
    other stand-ins -> their ``official_name``."""
    if isinstance(obj, StandIn):
        state = obj.state
        if isinstance(state, dict) and "_content" in state:
            return to_plain(state["_content"])
        if isinstance(state, dict) and "_val" in state:
            return to_plain(state["_val"])
        return f"<{obj.official_name}>"
    if isinstance(obj, dict):
        return {str(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return repr(obj)


@dataclass
class OfficialFile:
    """What an official file holds, in official names (no ``backbone.`` prefix)."""

    path: Path
    sha256: str
    layout: str  # lightning | state_dict | ema | safetensors
    raw: dict[str, torch.Tensor] | None  # raw (non-EMA) backbone weights and buffers
    shadow: list[torch.Tensor] | None  # ema.shadow_params in named_parameters() order
    ema_info: dict = field(default_factory=dict)  # decay, num_updates
    hparams: dict = field(default_factory=dict)  # the Hydra config as plain data ({} if absent)
    vocab_size: int | None = None  # hyper_parameters.vocab_size (V)
    vq_state: dict[str, torch.Tensor] | None = None  # image_tokenizer.vae.* without the prefix
    vq_args: dict = field(default_factory=dict)  # the embedded VQ's ModelArgs (plain)
    tokenizer_info: dict = field(default_factory=dict)  # the official tokenizer object's plain state

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Backbone name -> shape of the raw weights (empty for EMA-only files)."""
        return {k: tuple(v.shape) for k, v in (self.raw or {}).items()}


def _looks_like_vq(keys) -> bool:
    keys = set(keys)
    return any(m in keys for m in VQ_MARKERS) and not any(k.startswith(("vocab_embed", "temb_modules")) for k in keys)


def _split_state(state: dict, path: Path, flag: str) -> tuple[dict, dict | None]:
    """(backbone weights without prefix, VQ weights or None) from a flat state dict."""
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if any(k.startswith(BACKBONE_PREFIX) for k in tensors):
        backbone = {k[len(BACKBONE_PREFIX):]: v for k, v in tensors.items() if k.startswith(BACKBONE_PREFIX)}
    else:
        backbone = {k: v for k, v in tensors.items() if not k.startswith(VQ_PREFIX)}
    vq = {k[len(VQ_PREFIX):]: v for k, v in tensors.items() if k.startswith(VQ_PREFIX)} or None
    if _looks_like_vq(backbone):
        raise UserError(f"{flag} {path} holds a LlamaGen VQ tokenizer, not an XDLM model; pass it with "
                        "--tokenizer-checkpoint and give the model file to --checkpoint / import-official")
    if not backbone:
        raise UserError(f"{flag} {path} holds no backbone weights (no 'backbone.*' keys)")
    return backbone, vq


def is_our_checkpoint(path: Path) -> bool:
    """A directory or weights file of one of our checkpoints (config.json with our format tag, or a run dir)."""
    cfg = path / "config.json" if path.is_dir() else path.parent / "config.json"
    if path.is_dir() and (path / "checkpoints").is_dir():
        return True
    try:
        meta = json.loads(cfg.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("format") == "xdlm-vision-checkpoint" and (
        path.is_dir() or path.name in ("ema.safetensors", "model.safetensors"))


def read_official(path: str | Path, flag: str = "FILE") -> OfficialFile:
    """Open any accepted official file (see the module docstring); UserError for everything else."""
    from xdlm_vision.tokenizers.checkpoints import sha256_file

    path = Path(path)
    if not path.exists():
        raise UserError(f"{flag} {path}: no such file or directory")
    if is_our_checkpoint(path):
        raise UserError(f"{flag} {path} is already an xdlm-vision checkpoint; use it directly with --checkpoint")
    if path.is_dir():
        weights = path / "model.safetensors"
        if not weights.is_file():
            raise UserError(f"{flag} {path}: a directory must hold an official model.safetensors + config.json export")
        return _read_safetensors(weights, flag, sha256_file(weights))
    digest = sha256_file(path)
    if path.suffix == ".safetensors":
        return _read_safetensors(path, flag, digest)
    obj = safe_torch_load(path, flag)
    if not isinstance(obj, dict):
        raise UserError(f"{flag} {path} holds a {type(obj).__name__}, not an official checkpoint dict")
    if isinstance(obj.get("model"), dict) and _looks_like_vq(obj["model"]):
        raise UserError(f"{flag} {path} holds a LlamaGen VQ tokenizer, not an XDLM model; pass it with "
                        "--tokenizer-checkpoint and give the model file to --checkpoint / import-official")
    if "shadow_params" in obj and "state_dict" not in obj:
        return OfficialFile(path, digest, "ema", None, _shadow_list(obj, path, flag),
                            {k: obj.get(k) for k in ("decay", "num_updates")})
    if "state_dict" in obj or "ema" in obj:
        return _read_lightning(obj, path, digest, flag)
    raw, vq = _split_state(obj, path, flag)
    return OfficialFile(path, digest, "state_dict", raw, None, vq_state=vq)


def _shadow_list(ema: Any, path: Path, flag: str) -> list[torch.Tensor]:
    shadow = ema.get("shadow_params") if isinstance(ema, dict) else None
    if not isinstance(shadow, (list, tuple)) or not all(isinstance(t, torch.Tensor) for t in shadow):
        raise UserError(f"{flag} {path}: ema.shadow_params is not a list of tensors")
    return list(shadow)


def _read_lightning(obj: dict, path: Path, digest: str, flag: str) -> OfficialFile:
    raw, vq = (None, None)
    if isinstance(obj.get("state_dict"), dict):
        raw, vq = _split_state(obj["state_dict"], path, flag)
    shadow, info = None, {}
    if obj.get("ema") is not None:
        shadow = _shadow_list(obj["ema"], path, flag)
        info = {k: obj["ema"].get(k) for k in ("decay", "num_updates")}
    hp = obj.get("hyper_parameters") or {}
    hparams = to_plain(hp.get("config")) if isinstance(hp, dict) else {}
    vocab = hp.get("vocab_size") if isinstance(hp, dict) else None
    tok = hp.get("tokenizer") if isinstance(hp, dict) else None
    tok_info = {}
    vq_args = {}
    if isinstance(tok, StandIn) and isinstance(tok.state, dict):
        tok_info = {k: to_plain(v) for k, v in tok.state.items() if not isinstance(v, StandIn)}
        tok_info["class"] = tok.official_name
        vq_args = _find_model_args(tok.state)
    return OfficialFile(path, digest, "lightning", raw, shadow, info, hparams if isinstance(hparams, dict) else {},
                        int(vocab) if isinstance(vocab, int) else None, vq, vq_args, tok_info)


def _find_model_args(state: Any, depth: int = 0) -> dict:
    """The pickled VQ's ModelArgs (codebook size, channel multipliers, ...) as a plain dict."""
    if depth > 6:
        return {}
    if isinstance(state, StandIn):
        if state.official_name.endswith(".ModelArgs") and isinstance(state.state, dict):
            return {k: to_plain(v) for k, v in state.state.items()}
        return _find_model_args(state.state, depth + 1)
    if isinstance(state, dict):
        for v in state.values():
            found = _find_model_args(v, depth + 1)
            if found:
                return found
    return {}


def _read_safetensors(path: Path, flag: str, digest: str) -> OfficialFile:
    from safetensors.torch import load_file

    try:
        state = load_file(str(path))
    except Exception as exc:  # noqa: BLE001
        raise UserError(f"{flag} {path}: cannot read safetensors ({exc.__class__.__name__}: {_line(exc)})") from None
    raw, vq = _split_state(state, path, flag)
    hparams, vocab = {}, None
    cfg_path = path.with_name("config.json")
    if cfg_path.is_file():
        try:
            hparams = json.loads(cfg_path.read_text())
        except ValueError as exc:
            raise UserError(f"{flag} {cfg_path}: not valid JSON ({exc})") from None
        if not isinstance(hparams, dict):
            hparams = {}
        vocab = hparams.get("vocab_size") if isinstance(hparams.get("vocab_size"), int) else None
    return OfficialFile(path, digest, "safetensors", raw, None, hparams=hparams, vocab_size=vocab, vq_state=vq)
