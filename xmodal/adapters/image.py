"""Image files -> fixed-size RGB image tensors.

Decoding runs on the CPU in DataLoader workers with Pillow: EXIF orientation is
applied, every colour mode (grayscale, palette, CMYK, 16-bit, alpha) becomes 8-bit
RGB, and unusable files (empty, truncated, not an image, too small, decompression
bombs) raise :class:`BadInputError` naming the file and the reason. The evaluation
transform (resize the shorter side to ``image_size / crop_pct``, centre crop) is
deterministic, so its ``uint8`` output is cached on disk by the decode cache; the
training transform (random resized crop, flip, colour jitter, optional timm
RandAugment) runs on the CPU per access. Scaling to float and the backbone's
mean/std normalisation run batched on the training device.

The defaults (224 px, bicubic, crop_pct 0.875) are timm's default data config, which
is what the default backbone ``tf_efficientnet_lite0`` was trained with; mean and std
come from the backbone's data config unless set.
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from pathlib import Path
from typing import Any, Callable, ClassVar, Literal

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import nn
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF
from torchvision.transforms import transforms as T

from xmodal.adapters.base import ModalityAdapter
from xmodal.errors import BadInputError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm")
#: Pillow's own decompression-bomb threshold (about 89.5 megapixels).
DEFAULT_MAX_PIXELS = 89_478_485
INTERPOLATIONS = {
    "bicubic": InterpolationMode.BICUBIC,
    "bilinear": InterpolationMode.BILINEAR,
    "nearest": InterpolationMode.NEAREST,
}


class ImageAdapter(ModalityAdapter):
    """Image files (JPEG, PNG, GIF, WebP, BMP, TIFF ...) to ``uint8`` RGB tensors.

    Args:
        image_size: side of the square image the network sees in evaluation.
        train_size: side of the training crops (``None``: ``image_size``). Training
            a little smaller than testing is cheaper and often *more* accurate,
            because random resized crops make objects look larger than the centre
            crop does (Touvron et al., "Fixing the train-test resolution discrepancy").
        crop_pct: evaluation crops the centre ``crop_pct`` of the image after
            resizing its shorter side to ``image_size / crop_pct`` (timm's convention).
        interpolation: resampling filter: ``bicubic``, ``bilinear`` or ``nearest``.
        mean: per-channel mean for normalisation (``None``: the backbone's).
        std: per-channel standard deviation (``None``: the backbone's).
        augment: random training views (crop, flip, jitter, RandAugment). ``False``
            trains on the evaluation view, which is then decoded once and cached, and
            lets a frozen backbone prefix be computed once (the feature cache).
        crop_scale: area range ``[min, max]`` of the training random resized crop.
        hflip: probability of a horizontal flip in training.
        color_jitter: brightness, contrast and saturation jitter strength in training
            (0 switches it off).
        randaugment: a timm RandAugment string such as ``rand-m9-mstd0.5`` (``None``:
            off), applied in training after the colour jitter.
        max_pixels: refuse images with more pixels than this (decompression bombs);
            the default is Pillow's own threshold.
        min_size: refuse images whose shorter side is below this many pixels
            (1x1 tracking pixels and placeholders); set 1 to accept anything.
    """

    name = "image"
    default_dataset = "hymenoptera"
    fixed_shape = True
    #: Settings that change ``decode``'s output; the others only affect training.
    decode_settings: ClassVar[tuple[str, ...]] = (
        "image_size", "crop_pct", "interpolation", "max_pixels", "min_size",
    )

    def __init__(
        self,
        image_size: int = 224,
        train_size: int | None = None,
        crop_pct: float = 0.875,
        interpolation: Literal["bicubic", "bilinear", "nearest"] = "bicubic",
        mean: list[float] | None = None,
        std: list[float] | None = None,
        augment: bool = True,
        crop_scale: list[float] = (0.08, 1.0),
        hflip: float = 0.5,
        color_jitter: float = 0.4,
        randaugment: str | None = None,
        max_pixels: int = DEFAULT_MAX_PIXELS,
        min_size: int = 16,
    ) -> None:
        super().__init__()
        if image_size < 8 or (train_size is not None and train_size < 8):
            raise ValueError(f"image_size and train_size must be at least 8, not "
                             f"{image_size} / {train_size}")
        if not 0 < crop_pct <= 1:
            raise ValueError(f"crop_pct must be in (0, 1], not {crop_pct}")
        if interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}, "
                             f"not {interpolation!r}")
        for label, value in (("mean", mean), ("std", std)):
            if value is not None and len(value) != 3:
                raise ValueError(f"{label} needs 3 values (R, G, B), not {list(value)}")
        crop_scale = [float(v) for v in crop_scale]
        if len(crop_scale) != 2 or not 0 < crop_scale[0] <= crop_scale[1] <= 1:
            raise ValueError(f"crop_scale must be [min, max] with 0 < min <= max <= 1, not {crop_scale}")
        if randaugment is not None and not str(randaugment).startswith("rand"):
            raise ValueError(f"randaugment must be a timm string like 'rand-m9-mstd0.5', "
                             f"not {randaugment!r}")
        self.image_size = int(image_size)
        self.train_size = int(train_size) if train_size else None
        self.crop_pct = float(crop_pct)
        self.interpolation = interpolation
        self.mean = [float(v) for v in mean] if mean is not None else None
        self.std = [float(v) for v in std] if std is not None else None
        self.augment = bool(augment)
        self.crop_scale = crop_scale
        self.hflip = float(hflip)
        self.color_jitter = float(color_jitter)
        self.randaugment = randaugment
        self.max_pixels = int(max_pixels)
        self.min_size = int(min_size)
        self._train_transform: Callable[[Image.Image], Image.Image] | None = None

    @property
    def decode_varies_in_training(self) -> bool:  # type: ignore[override]
        """Training views are random unless ``augment`` is off."""
        return self.augment

    @property
    def resize_size(self) -> int:
        """Shorter side before the evaluation centre crop (timm: ``floor(size / crop_pct)``)."""
        return int(math.floor(self.image_size / self.crop_pct))

    @property
    def crop_size(self) -> int:
        """Side of the training crops."""
        return self.train_size or self.image_size

    def cache_key(self) -> str:
        """Only decode settings count: changing the augmentation keeps the cache."""
        settings = {name: getattr(self, name) for name in self.decode_settings}
        text = json.dumps({"modality": self.name, **settings}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    # -- CPU side ---------------------------------------------------------------------

    def decode(self, source: Any) -> torch.Tensor:
        """Evaluation view: resize the shorter side, centre crop; ``uint8 (3, S, S)``."""
        image = read_image(source, self.max_pixels, self.min_size, draft=self.resize_size)
        mode = INTERPOLATIONS[self.interpolation]
        image = TF.resize(image, self.resize_size, interpolation=mode)
        image = TF.center_crop(image, [self.image_size, self.image_size])
        return TF.pil_to_tensor(image)

    def decode_train(self, source: Any) -> torch.Tensor:
        """Training view: random resized crop, flip, colour jitter, RandAugment."""
        if not self.augment:
            return self.decode(source)
        # Keep enough resolution for the smallest crop before JPEG draft scaling.
        draft = int(math.ceil(self.crop_size / math.sqrt(self.crop_scale[0])))
        image = read_image(source, self.max_pixels, self.min_size, draft=draft)
        if self._train_transform is None:
            self._train_transform = self.build_train_transform()
        return TF.pil_to_tensor(self._train_transform(image))

    def build_train_transform(self) -> Callable[[Image.Image], Image.Image]:
        """The PIL-to-PIL training pipeline (torchvision + timm RandAugment)."""
        mode = INTERPOLATIONS[self.interpolation]
        steps: list[Callable[[Image.Image], Image.Image]] = [
            T.RandomResizedCrop(self.crop_size, scale=tuple(self.crop_scale), interpolation=mode),
        ]
        if self.hflip > 0:
            steps.append(T.RandomHorizontalFlip(self.hflip))
        if self.color_jitter > 0:
            strength = self.color_jitter
            steps.append(T.ColorJitter(brightness=strength, contrast=strength, saturation=strength))
        if self.randaugment:
            from timm.data.auto_augment import rand_augment_transform

            mean = self.mean or [0.485, 0.456, 0.406]
            hparams = {
                "translate_const": int(self.crop_size * 0.45),
                "img_mean": tuple(int(round(255 * v)) for v in mean),
            }
            steps.append(rand_augment_transform(self.randaugment, hparams))
        return T.Compose(steps)

    def preview(self, source: Any, path: str | Path, data_config: dict[str, Any] | None = None) -> Path:
        """Write the evaluation view (the exact pixels before normalisation) as a PNG."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(self.decode(source).permute(1, 2, 0).numpy()).save(path)
        return path

    # -- device side ------------------------------------------------------------------

    def device_transform(self, data_config: dict[str, Any]) -> nn.Module:
        mean = self.mean or list(data_config.get("mean", (0.485, 0.456, 0.406)))
        std = self.std or list(data_config.get("std", (0.229, 0.224, 0.225)))
        return NormalizeImage(mean, std)


class NormalizeImage(nn.Module):
    """Batched ``uint8 (B, 3, H, W)`` -> float, scaled to [0, 1], then ``(x - mean) / std``."""

    def __init__(self, mean: list[float], std: list[float]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1),
                             persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        images = images.float() / 255.0
        return (images - self.mean) / self.std


# ---------------------------------------------------------------------------
# Reading one file
# ---------------------------------------------------------------------------


def read_image(
    source: Any,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    min_size: int = 1,
    draft: int | None = None,
) -> Image.Image:
    """Open an image file as upright 8-bit RGB, with errors that name the file.

    Args:
        source: a path (``str`` or ``Path``).
        max_pixels: refuse larger images before decoding their pixels.
        min_size: refuse images whose shorter side is smaller.
        draft: let the JPEG decoder scale down by DCT (1/2, 1/4, 1/8) while both sides
            stay at least this large: much faster for big photos, same result every time.
    """
    path = Path(source)
    if not path.is_file():
        raise BadInputError(path, "file not found", "image")
    if path.stat().st_size == 0:
        raise BadInputError(path, "file is empty (0 bytes)", "image")
    pillow_limit = Image.MAX_IMAGE_PIXELS
    try:
        # Pillow's global guard is swapped for this function's ``max_pixels`` check
        # below, which knows the size and can say so; ``open`` reads the header only.
        Image.MAX_IMAGE_PIXELS = None
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise BadInputError(path, f"refused as a possible decompression bomb ({exc})", "image") from None
    except UnidentifiedImageError:
        raise BadInputError(path, _not_an_image_reason(path), "image") from None
    except OSError as exc:
        raise BadInputError(path, f"cannot open image: {_first_line(exc)}", "image") from None
    finally:
        Image.MAX_IMAGE_PIXELS = pillow_limit
    with image:
        width, height = image.size
        if width * height > max_pixels:
            raise BadInputError(
                path,
                f"image is {width}x{height} = {width * height:,} pixels, over the max_pixels "
                f"limit of {max_pixels:,} (decompression-bomb guard; raise "
                f"--data.adapter.max_pixels if the file is trusted)",
                "image",
            )
        if min(width, height) < min_size:
            raise BadInputError(
                path,
                f"image is only {width}x{height} px, below min_size={min_size} (a placeholder "
                f"or tracking pixel?); lower --data.adapter.min_size to accept it",
                "image",
            )
        if draft and image.format == "JPEG":
            image.draft(None, (draft, draft))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                image.load()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise BadInputError(path, f"refused as a possible decompression bomb ({exc})",
                                "image") from None
        except (OSError, SyntaxError, ValueError) as exc:
            reason = _first_line(exc)
            if "truncated" in reason.lower():
                reason = f"image data is truncated (incomplete download?): {reason}"
            else:
                reason = f"corrupt image data: {reason}"
            raise BadInputError(path, reason, "image") from None
        try:
            upright = ImageOps.exif_transpose(image)
        except Exception:  # a damaged EXIF block: keep the pixels as stored
            upright = image
        return to_rgb(upright)


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode -> 8-bit RGB; transparent pixels are composited on white.

    16-bit and float images are scaled to 8 bits instead of clipped, so a 16-bit
    grayscale PNG does not turn white.
    """
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        if image.mode == "F":
            low, high = float(np.nanmin(array)), float(np.nanmax(array))
            array = (array - low) / (high - low + 1e-12) * 255.0
        else:
            array = array / 257.0 if array.max(initial=0) > 255 else array
        return Image.fromarray(np.clip(np.nan_to_num(array), 0, 255).astype(np.uint8), "L").convert("RGB")
    has_alpha = image.mode in ("RGBA", "LA", "La", "RGBa", "PA") or (
        image.mode == "P" and "transparency" in image.info
    )
    if has_alpha:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _not_an_image_reason(path: Path) -> str:
    head = path.read_bytes()[:256]
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and text.strip() and all(ch.isprintable() or ch.isspace() for ch in text):
        preview = " ".join(text.split())[:40]
        return f"not an image: the file holds text ({preview!r}...)"
    return "not an image Pillow can read (unknown format or corrupt header)"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
