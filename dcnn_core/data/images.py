"""Turn a user's photo into the input a model expects — safely.

Every step is kept so the page can show how the photo became the model's input.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_UPLOAD_BYTES = 10 * 1024 * 1024
ALLOWED_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "WEBP")  # never let Pillow guess among every format it knows
INK_CONTRAST = 64  # grey levels: opaque parts closer than this to the background get the opposite background


class ImageRejected(ValueError):
    """An upload that is not a usable image; the message says why, for the user."""

    def __init__(self, message: str, reason: str = "not a usable image"):
        super().__init__(message)
        self.reason = reason  # a few words for a table of skipped files, e.g. "not an image"


@dataclass(frozen=True)
class PreparedImage:
    original: np.ndarray  # as uploaded, RGB uint8 (downscaled for display if large)
    steps: list[tuple[str, np.ndarray]]  # (what was done, image after it)
    model_input: np.ndarray  # uint8 (H, W, C), ready to batch
    inverted: bool


def open_image(data: bytes, name: str = "upload", max_megapixels: float = 40, draft_side: int | None = None) -> Image.Image:
    """Decode an uploaded file, refusing non-images, corrupt files and decompression bombs.

    Args:
        max_megapixels: the most pixels the decoded image may have (checked from the header, before decoding).
        draft_side: where given, a JPEG is decoded at 1/2, 1/4 or 1/8 scale while both sides stay at least
            this long; the decoder then never builds the full-size picture.
    """
    if len(data) == 0:
        raise ImageRejected(f"'{name}' is empty.", "empty file")
    if len(data) > MAX_UPLOAD_BYTES:
        raise ImageRejected(f"'{name}' is {len(data) / 1e6:.1f} MB; the limit is {MAX_UPLOAD_BYTES / 1e6:.0f} MB.", "file too large")
    limit = max_megapixels * 1_000_000
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
            if draft_side and image.format == "JPEG":
                image.draft(image.mode, (draft_side, draft_side))
            width, height = image.size
            if width * height > limit:
                raise ImageRejected(
                    f"'{name}' is {width}×{height} pixels ({width * height / 1e6:.0f} megapixels); "
                    f"the limit is {max_megapixels:g} megapixels.",
                    "too many pixels",
                )
            image.load()
    except ImageRejected:
        raise
    except UnidentifiedImageError as error:
        raise ImageRejected(f"'{name}' is not an image this app can read (PNG, JPEG, BMP, GIF or WebP).", "not an image") from error
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageRejected(f"'{name}' decodes to too many pixels and was refused.", "too many pixels") from error
    except (OSError, SyntaxError, ValueError) as error:
        raise ImageRejected(f"'{name}' looks damaged or truncated and could not be decoded.", "unreadable or truncated") from error
    return ImageOps.exif_transpose(image)


def fit_and_pad(image: Image.Image, width: int, height: int) -> Image.Image:
    """Resize to fit width×height keeping the aspect ratio, then pad: paper colour for grayscale, black for colour.

    The Predict page and imported data sets both go through here, so a model sees photos
    prepared exactly as its training images were.
    """
    scale = min(width / image.width, height / image.height)
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    fitted = image.resize(size, Image.Resampling.LANCZOS, reducing_gap=2.0)  # shrinks in steps: quick even for 40 megapixels
    fill = int(np.median(np.asarray(fitted)[[0, -1]])) if fitted.mode == "L" else (0, 0, 0)
    return ImageOps.pad(fitted, (width, height), Image.Resampling.LANCZOS, color=fill)


def _eight_bit(image: Image.Image) -> Image.Image:
    """16- and 32-bit grayscale (PNG's I;16, I) scaled to 0–255, not clipped at 255."""
    if image.mode != "I" and not image.mode.startswith("I;16"):
        return image  # Pillow already gives 16-bit colour PNGs as 8-bit RGB(A)
    values = np.asarray(image).astype(np.float64)
    return Image.fromarray(np.clip(np.rint(values * (255.0 / 65535.0)), 0, 255).astype(np.uint8), "L")


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info


def to_rgb(image: Image.Image, light_on_dark: bool = False) -> Image.Image:
    """Any decoded image as 8-bit RGB; transparent parts filled with the data set's background.

    The background is dark for light-on-dark (MNIST-like) sets and white otherwise, unless the
    opaque part is about that colour itself (black ink on a transparent canvas, for MNIST): then
    the opposite colour, so the shape stays visible (inversion later turns it the data set's way).
    """
    image = _eight_bit(image)
    if not _has_alpha(image):
        return image.convert("RGB")
    rgba = image.convert("RGBA")
    pixels = np.asarray(rgba)
    opaque = pixels[..., 3] > 127
    background = 0 if light_on_dark else 255
    if opaque.any():
        ink = float(np.asarray(rgba.convert("L"))[opaque].mean())
        if abs(ink - background) < INK_CONTRAST:
            background = 255 - background
    canvas = Image.new("RGBA", rgba.size, (background, background, background, 255))
    return Image.alpha_composite(canvas, rgba).convert("RGB")


def model_pixels(image: Image.Image, input_shape: tuple[int, int, int], light_on_dark: bool = False) -> np.ndarray:
    """An image as uint8 model input (H, W, C), by the same steps as ``prepare_image`` (without inversion)."""
    height, width, channels = input_shape
    rgb = to_rgb(image, light_on_dark)
    work = rgb.convert("L") if channels == 1 else rgb
    return np.asarray(fit_and_pad(work, width, height), dtype=np.uint8).reshape(height, width, channels)


def _border_mean(gray: np.ndarray) -> float:
    return float(np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]]).mean())


def prepare_image(image: Image.Image, input_shape: tuple[int, int, int], light_on_dark: bool) -> PreparedImage:
    """Colour mode, square crop-pad, resize and (where the data set needs it) inversion."""
    height, width, channels = input_shape
    rgb = to_rgb(image, light_on_dark)
    display = rgb.copy()
    display.thumbnail((512, 512))
    steps: list[tuple[str, np.ndarray]] = []
    work = rgb.convert("L") if channels == 1 else rgb
    if channels == 1:
        steps.append(("Grayscale", np.asarray(work)))
    resized = fit_and_pad(work, width, height)
    steps.append((f"Resized to {width}×{height}", np.asarray(resized)))
    pixels = np.asarray(resized, dtype=np.uint8)
    inverted = False
    if channels == 1 and light_on_dark and _border_mean(pixels) > 127:
        pixels = 255 - pixels  # dark ink on light paper → light on dark, like the training images
        inverted = True
        steps.append(("Inverted (the data set is light-on-dark)", pixels))
    model_input = pixels.reshape(height, width, channels)
    return PreparedImage(np.asarray(display), steps, model_input, inverted)
