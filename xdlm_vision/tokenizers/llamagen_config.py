"""Configuration and size registry of the LlamaGen VQ tokenizer architecture.

``VQ_SIZES["VQ-16"]`` is the configuration of LlamaGen's ``vq_ds16_c2i.pt`` (16x downsampling,
16384 codes of dimension 8, L2-normalised codebook); ``VQ_SIZES["VQ-8"]`` is its 8x sibling
(``vq_ds8_c2i.pt``). Any other width is a :class:`LlamaGenVQConfig` built by hand or read from a
JSON file with :func:`config_from_json`.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from xdlm_vision.errors import UserError


@dataclass(frozen=True)
class LlamaGenVQConfig:
    """Widths of a LlamaGen-style VQ-VAE (defaults = VQ-16)."""

    base_channels: int = 128  # channels after conv_in; level i has base_channels * ch_mult[i]
    encoder_ch_mult: tuple[int, ...] = (1, 1, 2, 2, 4)  # one entry per resolution level
    decoder_ch_mult: tuple[int, ...] = (1, 1, 2, 2, 4)  # listed low-to-high like the encoder's
    encoder_res_blocks: int = 2  # ResnetBlocks per encoder level
    decoder_res_blocks: int = 3  # ResnetBlocks per decoder level (LlamaGen: num_res_blocks + 1)
    z_channels: int = 256  # encoder output / decoder input channels
    codebook_size: int = 16384  # number of codes N
    codebook_dim: int = 8  # dimension of one code
    codebook_l2_norm: bool = True  # cosine lookup; decoding uses the L2-normalised rows
    codebook_show_usage: bool = True  # state dict holds the 65536-entry buffer quantize.codebook_used
    in_channels: int = 3  # image channels in
    out_channels: int = 3  # image channels out
    norm_groups: int = 32  # GroupNorm groups; every channel count must be divisible by it
    norm_eps: float = 1e-6  # GroupNorm epsilon

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # a JSON file may hold any type: check before building
            value, kind = getattr(self, f.name), f.type if isinstance(f.type, str) else f.type.__name__
            low = 0 if f.name.endswith("res_blocks") else 1  # a level may have no residual block
            ok = {"int": isinstance(value, int) and not isinstance(value, bool) and value >= low,
                  "float": isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < 1e6,
                  "bool": isinstance(value, bool)}.get(kind, True)
            if kind.startswith(("tuple", "list")):
                ok = isinstance(value, (list, tuple)) and len(value) > 0 and all(
                    isinstance(m, int) and not isinstance(m, bool) and m > 0 for m in value)
            if not ok:
                what = "a whole number >= 0" if kind == "int" and low == 0 else f"a positive {kind}"
                raise UserError(f"LlamaGen VQ config: {f.name} must be {what}, got {value!r} (fix --tokenizer)")
        # JSON gives lists; keep tuples so the config stays hashable and comparable
        object.__setattr__(self, "encoder_ch_mult", tuple(int(m) for m in self.encoder_ch_mult))
        object.__setattr__(self, "decoder_ch_mult", tuple(int(m) for m in self.decoder_ch_mult))
        if len(self.encoder_ch_mult) != len(self.decoder_ch_mult):
            raise UserError(
                "LlamaGen VQ config: encoder_ch_mult and decoder_ch_mult need the same number of levels, "
                f"got {self.encoder_ch_mult} and {self.decoder_ch_mult} (fix --tokenizer)"
            )
        widths = [self.base_channels * m for m in self.encoder_ch_mult + self.decoder_ch_mult]
        bad = [w for w in widths if w % self.norm_groups]
        if bad:
            raise UserError(
                f"LlamaGen VQ config: channel counts {sorted(set(bad))} are not divisible by "
                f"norm_groups={self.norm_groups} (fix --tokenizer)"
            )

    @property
    def downsample(self) -> int:
        """Pixels per token along each side: one stride-2 conv between consecutive levels."""
        return 2 ** (len(self.encoder_ch_mult) - 1)

    def to_dict(self) -> dict:
        """JSON-serialisable form (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


VQ_SIZES: dict[str, LlamaGenVQConfig] = {
    "VQ-16": LlamaGenVQConfig(),
    "VQ-8": LlamaGenVQConfig(encoder_ch_mult=(1, 2, 2, 4), decoder_ch_mult=(1, 2, 2, 4)),
}


@dataclass(frozen=True)
class ResolvedConfig:
    """A config plus the registry name it came from (``None`` for custom widths)."""

    config: LlamaGenVQConfig
    size: str | None = field(default=None)


def config_from_dict(d: dict) -> LlamaGenVQConfig:
    """Our flat field names, or LlamaGen's reference layout (``model_args`` + ``encoder_kwargs`` +
    ``decoder_kwargs``, as in tests/data/llamagen_tiny/config.json)."""
    if "model_args" in d:
        return _from_reference_layout(d)
    names = {f.name for f in dataclasses.fields(LlamaGenVQConfig)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise UserError(f"LlamaGen VQ config: unknown fields {unknown}; valid fields: {sorted(names)}")
    return LlamaGenVQConfig(**d)


def _from_reference_layout(d: dict) -> LlamaGenVQConfig:
    """Translate LlamaGen's ModelArgs / Encoder / Decoder keyword arguments."""
    args, enc, dec = d["model_args"], d.get("encoder_kwargs", {}), d.get("decoder_kwargs", {})
    return LlamaGenVQConfig(
        base_channels=int(enc.get("ch", 128)),
        encoder_ch_mult=tuple(args.get("encoder_ch_mult", enc.get("ch_mult", (1, 1, 2, 2, 4)))),
        decoder_ch_mult=tuple(args.get("decoder_ch_mult", dec.get("ch_mult", (1, 1, 2, 2, 4)))),
        encoder_res_blocks=int(enc.get("num_res_blocks", 2)),
        # LlamaGen's Decoder builds num_res_blocks + 1 blocks per level
        decoder_res_blocks=int(dec.get("num_res_blocks", 2)) + 1,
        z_channels=int(args.get("z_channels", 256)),
        codebook_size=int(args.get("codebook_size", 16384)),
        codebook_dim=int(args.get("codebook_embed_dim", 8)),
        codebook_l2_norm=bool(args.get("codebook_l2_norm", True)),
        codebook_show_usage=bool(args.get("codebook_show_usage", True)),
        in_channels=int(enc.get("in_channels", 3)),
        out_channels=int(dec.get("out_channels", 3)),
    )


def resolve_config(name_or_path: str | dict | LlamaGenVQConfig) -> ResolvedConfig:
    """A registry name ("VQ-16", "VQ-8"), a JSON config file, a dict or a config -> config.

    Raises UserError naming ``--tokenizer`` for unknown names and unreadable files.
    """
    if isinstance(name_or_path, LlamaGenVQConfig):
        return ResolvedConfig(name_or_path, _registry_name(name_or_path))
    if isinstance(name_or_path, dict):
        cfg = config_from_dict(name_or_path)
        return ResolvedConfig(cfg, _registry_name(cfg))
    if name_or_path in VQ_SIZES:
        return ResolvedConfig(VQ_SIZES[name_or_path], name_or_path)
    path = Path(name_or_path)
    if not path.is_file():
        raise UserError(
            f"--tokenizer {name_or_path!r} is neither a size ({', '.join(VQ_SIZES)}) nor a JSON config file"
        )
    cfg = config_from_json(path)
    return ResolvedConfig(cfg, _registry_name(cfg))


def config_from_json(path: str | Path) -> LlamaGenVQConfig:
    """Read a config JSON file (either layout of :func:`config_from_dict`)."""
    try:
        d = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"--tokenizer {str(path)!r}: cannot read JSON config ({exc})") from None
    if not isinstance(d, dict):
        raise UserError(f"--tokenizer {str(path)!r}: JSON config must be an object")
    return config_from_dict(d)


def _registry_name(cfg: LlamaGenVQConfig) -> str | None:
    return next((name for name, c in VQ_SIZES.items() if c == cfg), None)
