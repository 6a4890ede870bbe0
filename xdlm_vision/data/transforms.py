"""Image preprocessing shared by extraction and pixel datasets (Pillow + torchvision).

``center_crop_arr`` follows the ADM / LlamaGen recipe for ImageNet: halve the image with a BOX
filter while its shorter side is at least twice the target, then resize with BICUBIC so the shorter
side equals the target, then take the central square.
"""

from __future__ import annotations

from PIL import Image
from torchvision import transforms


def center_crop_arr(image: Image.Image, image_size: int) -> Image.Image:
    """PIL image -> square PIL image of side ``image_size`` (ADM's center_crop_arr)."""
    while min(image.size) >= 2 * image_size:
        image = image.resize(tuple(s // 2 for s in image.size), resample=Image.BOX)
    scale = image_size / min(image.size)
    image = image.resize(tuple(round(s * scale) for s in image.size), resample=Image.BICUBIC)
    left = (image.size[0] - image_size) // 2
    top = (image.size[1] - image_size) // 2
    return image.crop((left, top, left + image_size, top + image_size))


class CenterCropArr:
    """Picklable transform wrapper around :func:`center_crop_arr` (DataLoader workers need it)."""

    def __init__(self, image_size: int) -> None:
        self.image_size = image_size

    def __call__(self, image: Image.Image) -> Image.Image:
        return center_crop_arr(image, self.image_size)

    def __repr__(self) -> str:
        return f"CenterCropArr({self.image_size})"


def to_signed_tensor() -> transforms.Compose:
    """PIL image -> float tensor (C, H, W) in [-1, 1]."""
    return transforms.Compose([transforms.ToTensor(), transforms.Normalize([0.5] * 3, [0.5] * 3)])


def extraction_transform(image_size: int) -> transforms.Compose:
    """The deterministic preprocessing of ``extract-codes``: RGB centre crop -> (3, S, S) in [-1, 1].

    Flips are not applied here; extraction stores the flipped view's codes separately.
    """
    return transforms.Compose([CenterCropArr(image_size), to_signed_tensor()])
