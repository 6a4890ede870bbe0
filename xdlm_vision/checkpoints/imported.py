"""``import-official``: an XDLM authors' released file written as one of our checkpoint directories.

:mod:`xdlm_vision.official` reads the file (nothing in it is executed) and builds the model; this
module writes the result in the checkpoint format of :mod:`xdlm_vision.checkpoints.files`, a
sampling-only directory that :func:`~xdlm_vision.checkpoints.load_checkpoint` opens like any other
(docs/official.md).
"""

from __future__ import annotations

import json
from pathlib import Path

from xdlm_vision import __version__
from xdlm_vision.checkpoints.files import FORMAT, FORMAT_VERSION
from xdlm_vision.errors import UserError
from xdlm_vision.io import atomic_path
from xdlm_vision.official import build_official, inner_tokenizer, official_record, read_official

__all__ = ["import_official"]


def import_official(path: str | Path, out: str | Path, ema: bool = True, algo: str | None = None,
                    k: float | None = None, flag: str = "FILE") -> Path:
    """Write ``out`` as a sampling-only checkpoint directory and return it.

    ``out`` holds ``ema.safetensors`` (EMA import) or ``model.safetensors`` (``ema=False``),
    ``config.json`` (our record with the official process and the source file's SHA-256, algorithm,
    k1 and what was assumed) and, for an ImageNet .ckpt, the VQ it embeds as ``vq.safetensors``.
    The directory appears complete or not at all (:func:`xdlm_vision.io.atomic_path`); an
    existing non-empty ``out`` is refused.
    """
    from safetensors.torch import save_file

    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"--out {out} exists and is not empty; choose a new directory")
    om = build_official(read_official(path, flag), ema, algo, k)
    weights = {n: t.detach().contiguous() for n, t in om.model.state_dict().items()}
    tag = {"format": "pt", "official_sha256": om.file.sha256, "weights": "ema" if ema else "raw"}
    with atomic_path(out, suffix="") as tmp:
        tmp.mkdir()
        save_file(weights, str(tmp / ("ema.safetensors" if ema else "model.safetensors")), metadata=tag)
        if om.arch.kind == "official_dit" and om.file.vq_state:
            save_file({name: v.contiguous() for name, v in om.file.vq_state.items()}, str(tmp / "vq.safetensors"))
            inner = inner_tokenizer(om, tmp / "vq.safetensors")  # hashes the written file
            inner["checkpoint"] = str((out / "vq.safetensors").resolve())  # where it will be
        else:
            inner = inner_tokenizer(om, None)
        record = {"format": FORMAT, "format_version": FORMAT_VERSION, "toolkit_version": __version__,
                  **official_record(om, inner)}
        (tmp / "config.json").write_text(json.dumps(record, indent=2))
    return out
