"""Turn a trained checkpoint into a packaged, sampling-only one under xdlm_vision/assets/.

    python scripts/package_checkpoint.py runs/fashion --out xdlm_vision/assets/fashion --fp16

Writes ``config.json`` and ``ema.safetensors`` (the EMA weights, float16 with ``--fp16``: half
the size, and sampling upcasts them to float32 on load). A checkpoint that decodes through VQ
weights (a trained fashion tokenizer) gets them copied beside it as ``tokenizer.safetensors`` +
``tokenizer.json``, and its config.json then records that file by a path relative to the
directory (``xdlm_vision.checkpoints.loaded.anchor_tokenizer_paths`` resolves it) with the
copy's SHA-256, so the folder works wherever the package is installed. ``--tokenizer-from DIR``
instead records the identical weights an already packaged sibling ships (a twin trained over the
same tokenizer, e.g. ``fashion-mdlm`` next to ``fashion``) by a path relative to the new folder:
no second copy; refused unless it holds the same tensors. Register the folder in ``PACKAGED``
(xdlm_vision/checkpoints/packaged.py) and in pyproject's package-data.

    python scripts/package_checkpoint.py runs/k_tradeoff_long/fashion/k0_seed0 \
        --out xdlm_vision/assets/fashion_mdlm --fp16 --tokenizer-from xdlm_vision/assets/fashion
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))


def save_tensors(src: Path, dst: Path, fp16: bool) -> None:
    """Copy a safetensors file, casting floating tensors to float16 when asked; metadata kept."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(src), framework="pt") as f:
        meta = f.metadata() or {}
        tensors = {name: f.get_tensor(name) for name in f.keys()}
    if fp16:
        tensors = {n: t.half() if t.is_floating_point() else t for n, t in tensors.items()}
    save_file({n: t.contiguous() for n, t in tensors.items()}, str(dst), metadata=meta)


def shared_tokenizer(weights: Path, out: Path, sibling: Path) -> str:
    """``sibling``'s tokenizer.safetensors as a path relative to ``out``, if it holds the very
    weights the checkpoint was trained over (same tensors: the sibling may have been re-saved)."""
    import os

    from safetensors.torch import load_file

    theirs = sibling / "tokenizer.safetensors"
    if not theirs.is_file():
        raise SystemExit(f"error: --tokenizer-from {sibling}: no tokenizer.safetensors there")
    a, b = load_file(str(weights)), load_file(str(theirs))
    if a.keys() != b.keys() or any(not a[n].equal(b[n]) for n in a):
        raise SystemExit(f"error: --tokenizer-from {sibling}: its tokenizer is not the one {weights} names")
    return Path(os.path.relpath(theirs.resolve(), out.resolve())).as_posix()


def package(checkpoint: str, out: Path, fp16: bool, tokenizer_from: Path | None = None) -> Path:
    from xdlm_vision.checkpoints.files import read_checkpoint_config, resolve_checkpoint_dir
    from xdlm_vision.checkpoints.loaded import anchor_tokenizer_paths
    from xdlm_vision.tokenizers.checkpoints import sha256_file

    ckpt = resolve_checkpoint_dir(checkpoint)
    record = anchor_tokenizer_paths(read_checkpoint_config(ckpt), ckpt)
    spec = record.get("tokenizer") or {}
    vq = spec.get("kind") == "llamagen" and bool(spec.get("checkpoint"))
    if tokenizer_from is not None and not vq:
        raise SystemExit(f"error: --tokenizer-from: {ckpt} decodes through no VQ weights; nothing to share")
    # every refusal above and in shared_tokenizer comes before anything is written
    rel = shared_tokenizer(Path(spec["checkpoint"]), out, tokenizer_from) if tokenizer_from else "tokenizer.safetensors"
    out.mkdir(parents=True, exist_ok=True)
    save_tensors(ckpt / "ema.safetensors", out / "ema.safetensors", fp16)
    if vq:
        weights = Path(spec["checkpoint"])
        if tokenizer_from is None:
            save_tensors(weights, out / "tokenizer.safetensors", fp16=False)  # small; float32 keeps codes exact
            arch = weights.with_suffix(".json")
            if arch.is_file():
                shutil.copyfile(arch, out / "tokenizer.json")
        spec = {**spec, "checkpoint": rel, "sha256": sha256_file(out / rel)}
        record["tokenizer"] = spec
        record["config"]["tokenizer"]["path"] = rel  # not the training machine's path
        if isinstance(record.get("data"), dict) and record["data"].get("tokenizer_spec"):
            record["data"] = {**record["data"], "tokenizer_spec": spec}
    (out / "config.json").write_text(json.dumps(record, indent=2) + "\n")
    return ckpt


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", help="a run directory or one step directory")
    p.add_argument("--out", required=True, help="the packaged folder to write, e.g. xdlm_vision/assets/fashion")
    p.add_argument("--fp16", action="store_true", help="store the model weights as float16")
    p.add_argument("--tokenizer-from", type=Path, default=None, metavar="DIR",
                   help="a packaged folder that already ships this checkpoint's VQ tokenizer: refer to it "
                        "instead of copying it")
    args = p.parse_args(argv)
    out = Path(args.out)
    ckpt = package(args.checkpoint, out, args.fp16, args.tokenizer_from)
    size = sum(f.stat().st_size for f in out.iterdir() if f.is_file())
    print(f"packaged {ckpt} -> {out} ({size / 1e6:.2f} MB: " +
          ", ".join(f"{f.name} {f.stat().st_size / 1e6:.2f}" for f in sorted(out.iterdir()) if f.is_file()) + ")")
    return 0


if __name__ == "__main__":
    sys.exit(main())
