"""``xdlm-vision extract-codes``: tokenise an image folder once, to memory-mappable shards.

Multi-GPU: ``accelerate launch -m xdlm_vision extract-codes ...`` (or ``accelerate launch
$(which xdlm-vision) extract-codes ...``); each process encodes the shards ``i % world == rank``.
"""

from __future__ import annotations

import argparse

from xdlm_vision.commands import flags

HELP = "encode an ImageFolder once into sharded .npy token arrays + labels + manifest (resumable)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--images", required=True, type=flags.IN_PATH,
        help="ImageFolder root: one sub-folder of images per class (an unreadable image stops the run, naming it)"
    )
    parser.add_argument(
        "--tokenizer-checkpoint",
        required=True,
        type=flags.IN_PATH,
        help="tokenizer weights: LlamaGen .pt/.safetensors (e.g. vq_ds16_c2i.pt) or a diffusers VQModel folder",
    )
    parser.add_argument(
        "--out", required=True, type=flags.OUT_DIR,
        help="output folder (created; rerun with the same flags to resume)"
    )
    parser.add_argument(
        "--tokenizer",
        default="VQ-16",
        help="architecture: VQ-16 (default), VQ-8, a LlamaGen config JSON file, or 'diffusers'",
    )
    parser.add_argument(
        "--image-size", type=flags.int_in(1, 8192), default=256, help="centre-crop side in pixels (default 256)"
    )
    parser.add_argument(
        "--flip", action="store_true", help="also store the codes of the horizontally flipped crop"
    )
    parser.add_argument("--batch-size", type=flags.int_in(1, 65536), default=32,
                        help="images per encoder call (default 32)")
    parser.add_argument("--shard-size", type=flags.int_in(1, 10_000_000), default=1024,
                        help="images per shard file (default 1024)")
    parser.add_argument(
        "--class-map", default=None, type=flags.IN_PATH, help="JSON {folder: class id} the class folders must match"
    )
    parser.add_argument("--num-workers", type=flags.int_in(0, 256), default=4, help="DataLoader workers, 0..256 (default 4)")


def run(args: argparse.Namespace) -> int:
    from xdlm_vision.data.extract import ExtractConfig, extract_codes

    cfg = ExtractConfig(
        images=args.images,
        checkpoint=args.tokenizer_checkpoint,
        out=args.out,
        image_size=args.image_size,
        flip=args.flip,
        batch_size=args.batch_size,
        shard_size=args.shard_size,
        tokenizer=args.tokenizer,
        class_map=args.class_map,
        num_workers=args.num_workers,
    )
    result = extract_codes(cfg)
    if result.complete:
        print(
            f"{result.num_images} images in {result.num_shards} shards -> {result.out} "
            f"(encoded {result.written} shards here, {result.skipped} already done)"
        )
    return 0
