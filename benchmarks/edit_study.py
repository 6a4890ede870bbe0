"""How well does editing work? Bottom half regenerated, with the true class and with a wrong one.

For every validation image of a preset's data the bottom half of the token grid is regenerated
(`xdlm-vision edit`'s conditioning: the top half is held), once asking for the image's own class
and once for another class (``(label + 1) mod C``: a class swap of the region). The preset's
frozen classifier then reads the edited images. Reported per setting:

* agreement: the share of edits the classifier assigns to the requested class;
* kept original (class swap only): the share still read as the original class;
* held unchanged: the share of held tokens equal to the input after the edit (100 % by
  construction without border revision; measured here, not assumed);
* with ``--border 1``: the same with the row of held tokens next to the region revisable (k > 0).

Writes ``OUT/edit_study.json``, and with ``--docs`` the table into docs/editing.md (between the
``<!-- STUDY -->`` markers) and a picture docs/editing_<preset>.png.

    python benchmarks/edit_study.py --preset digits [--checkpoint RUN] [--steps 8] [--cfg 0,1]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def digits_data():
    from xdlm_vision.data.digits import load_digits_split
    from xdlm_vision.evaluation.digits_classifier import classify_digits

    arrays = load_digits_split("val")
    return torch.as_tensor(arrays.tokens).long(), torch.as_tensor(arrays.labels).long(), \
        (lambda tokens: classify_digits(tokens).labels.cpu())


def fashion_data(lm):
    try:
        from xdlm_vision.data.fashion import load_fashion_split
        from xdlm_vision.evaluation.fashion_classifier import classify_fashion
    except ImportError:
        raise SystemExit("the fashion preset is not in this checkout yet") from None
    split = load_fashion_split("test")
    images = torch.as_tensor(split.images[:1000]).float()
    with torch.no_grad():
        tokens = torch.cat([lm.tokenizer.encode(images[i:i + 200].to(lm.device)).cpu()
                            for i in range(0, len(images), 200)])

    def judge(toks):
        from xdlm_vision.sampling import decode_tokens

        return classify_fashion(decode_tokens(lm, toks)).labels.cpu()

    return tokens.long(), torch.as_tensor(split.labels[:1000]).long(), judge


PRESETS = {"digits": digits_data, "fashion": fashion_data}


def edit_all(lm, tokens, labels, keep, revise, steps, cfg, seeds, batch):
    """Edit every image i of ``tokens`` (M, h, w) as ``labels[i]`` with seed ``seeds[i]``; (M, h, w)."""
    from xdlm_vision.core import KnownTokens
    from xdlm_vision.sampling import SamplingOptions, sampler_steps

    out = []
    flat = tokens.reshape(len(tokens), -1)
    for i in range(0, len(tokens), batch):
        ids = flat[i:i + batch]
        b = len(ids)
        known = KnownTokens(ids, keep.reshape(1, -1).expand(b, -1).clone(),
                            None if revise is None else revise.reshape(1, -1).expand(b, -1).clone())
        last = None
        for last in sampler_steps(lm, labels[i:i + batch].tolist(), list(seeds[i:i + b]),
                                  SamplingOptions(steps=steps, cfg=cfg), known=known):
            pass
        out.append(last.z_s.cpu())
    return torch.cat(out).reshape(tokens.shape)


def picture(lm, tokens, labels, keep, path: Path, num_classes: int, steps: int, cfg: float, seed: int) -> None:
    """Rows: the inputs, the region greyed out, edits as the own class, as the next class (one column
    per class; the first validation image of each class, with the study's seed for that image)."""
    import numpy as np
    from PIL import Image, ImageDraw

    from xdlm_vision.sampling import decode_tokens
    from xdlm_vision.viz import save_png
    from xdlm_vision.viz.export import font
    from xdlm_vision.viz.outline import draw_outline
    from xdlm_vision.viz.render import auto_scale, decode_state, tile, to_uint8, upscale

    picks = [int((labels == c).nonzero()[0]) for c in range(num_classes)]
    own = labels[picks]
    seeds = [seed + i for i in picks]
    edits = {"true": edit_all(lm, tokens[picks], own, keep, None, steps, cfg, seeds, len(picks)),
             "swap": edit_all(lm, tokens[picks], (own + 1) % num_classes, keep, None, steps, cfg, seeds, len(picks))}
    masked = tokens[picks].clone()
    masked[:, ~keep] = lm.mask_id
    rows = [decode_tokens(lm, tokens[picks]), decode_state(masked, lambda t: decode_tokens(lm, t), lm.mask_id),
            decode_tokens(lm, edits["true"]), decode_tokens(lm, edits["swap"])]
    scale = auto_scale(*rows[0].shape[-2:], target=72)
    region = (~keep)[None].expand(len(picks), -1, -1)
    arrays = np.concatenate([draw_outline(upscale(to_uint8(r), scale), region) for r in rows])
    grid = Image.fromarray(tile(arrays, len(picks)))
    names = ["input", "region", "own class", "next class"]
    label_w = 90
    canvas = Image.new("RGB", (grid.width + label_w, grid.height), (255, 255, 255))
    canvas.paste(grid, (label_w, 0))
    draw = ImageDraw.Draw(canvas)
    row_h = grid.height / len(names)
    for i, name in enumerate(names):
        draw.text((6, int(row_h * i + row_h / 2 - 6)), name, fill=(20, 20, 20), font=font(13))
    save_png(canvas, path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", choices=sorted(PRESETS), default="digits")
    p.add_argument("--checkpoint", default=None, help="model to edit with (default: the packaged digits model)")
    p.add_argument("--tokenizer-checkpoint", default=None)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--cfg", default="0,1", help="comma list of guidance gammas")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--out", default="runs/edit_study")
    p.add_argument("--docs", action="store_true", help="write the table into docs/editing.md and the picture")
    p.add_argument("--picture-only", action="store_true", help="only redraw docs/editing_<preset>.png")
    args = p.parse_args()

    from xdlm_vision.core import border
    from xdlm_vision.sampling import load_for_sampling

    t0 = time.time()
    lm = load_for_sampling(args.checkpoint, device="cpu", tokenizer_checkpoint=args.tokenizer_checkpoint)
    tokens, labels, judge = digits_data() if args.preset == "digits" else fashion_data(lm)
    h, w = lm.grid_shape
    keep = torch.ones(h, w, dtype=torch.bool)
    keep[h // 2:] = False  # regenerate the bottom half
    revise = border(keep.reshape(1, -1), (h, w), 1).reshape(h, w) if lm.space.k > 0 else None
    c = lm.num_classes
    if args.picture_only:
        picture(lm, tokens, labels, keep, ROOT / "docs" / f"editing_{args.preset}.png", c, args.steps,
                max(float(v) for v in args.cfg.split(",")), args.seed)
        return
    swapped = (labels + 1) % c
    rows = []
    for cfg in [float(v) for v in args.cfg.split(",")]:
        for name, requested, rev in [("true class", labels, None), ("class swap", swapped, None),
                                     ("true class, border 1", labels, revise)]:
            if name.endswith("border 1") and rev is None:
                continue
            seeds = list(range(args.seed, args.seed + len(tokens)))  # image i: seed + i
            edited = edit_all(lm, tokens, requested, keep, rev, args.steps, cfg, seeds, args.batch_size)
            pred = judge(edited)
            held = keep & ~(rev if rev is not None else torch.zeros_like(keep))
            row = {"setting": name, "cfg": cfg, "agreement": float((pred == requested).float().mean()),
                   "kept_original": float((pred == labels).float().mean()) if name == "class swap" else None,
                   "held_unchanged": float((edited[:, held] == tokens[:, held]).float().mean()),
                   "border_revised": None if rev is None else float((edited[:, rev] != tokens[:, rev]).float().mean()),
                   "num": len(tokens)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    baseline = float((judge(tokens) == labels).float().mean())
    result = {"preset": args.preset, "checkpoint": str(lm.path), "k": lm.space.k, "steps": args.steps,
              "classifier_on_inputs": baseline, "rows": rows, "seconds": time.time() - t0}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "edit_study.json").write_text(json.dumps(result, indent=2))
    print(f"classifier on the unedited inputs: {baseline:.3f}; {time.time() - t0:.0f} s")
    if args.docs:
        picture(lm, tokens, labels, keep, ROOT / "docs" / f"editing_{args.preset}.png", c, args.steps,
                max(float(v) for v in args.cfg.split(",")), args.seed)
        write_table(result, ROOT / "docs" / "editing.md")


def write_table(result: dict, path: Path) -> None:
    intro = (f"**{result['preset']}** ({result['rows'][0]['num']} validation images, bottom half regenerated, "
             f"{result['steps']} ancestral steps, k = {result['k']:g}; the classifier reads "
             f"{result['classifier_on_inputs']:.1%} of the unedited inputs correctly; "
             f"{result['seconds'] / 60:.1f} min on a shared 2-core CPU):")
    header = ("| setting | CFG γ | agreement with the requested class | still read as the original class | "
              "held tokens unchanged | border tokens revised |")
    lines = [f"<!-- STUDY {result['preset']} -->", intro, "", header, "|---|---|---|---|---|---|"]
    for r in result["rows"]:
        kept = "—" if r["kept_original"] is None else f"{r['kept_original']:.1%}"
        revised = "—" if r.get("border_revised") is None else f"{r['border_revised']:.1%}"
        lines.append(f"| {r['setting']} | {r['cfg']:g} | {r['agreement']:.1%} | {kept} | "
                     f"{r['held_unchanged']:.2%} | {revised} |")
    lines.append(f"<!-- /STUDY {result['preset']} -->")
    text = path.read_text() if path.exists() else ""
    start, end = f"<!-- STUDY {result['preset']} -->", f"<!-- /STUDY {result['preset']} -->"
    if start in text and end in text:
        text = text[:text.index(start)] + "\n".join(lines) + text[text.index(end) + len(end):]
    else:
        text += "\n" + "\n".join(lines) + "\n"
    path.write_text(text)


if __name__ == "__main__":
    main()
