"""Untrusted encoded images (JPEG, PNG, ...) to BGR arrays, with size limits checked first.

The pixel limit is checked on the header, before any pixel is decoded, so a
decompression bomb (a tiny PNG that inflates to gigapixels) costs nothing.
EXIF orientation is applied, so coordinates match the image as CVAT shows it.
"""
from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from cals.errors import CalsError



class BadImage(CalsError):
    """The bytes are not an image this service accepts; the message says why."""


def max_pixels() -> int:
    from cals.settings import ServingEnv

    return ServingEnv.load().MAX_PIXELS


def decode_image(data: bytes, *, limit: int | None = None) -> np.ndarray:
    """BGR uint8 (H, W, 3) from encoded bytes; grey, RGBA, palette, 16-bit and EXIF-rotated work."""
    limit = limit or max_pixels()
    if not data:
        raise BadImage("image is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            w, h = img.size
            if w * h > limit:
                raise BadImage(f"image is {w}x{h} = {w * h} pixels, over the limit of {limit}")
            img.load()
            img = ImageOps.exif_transpose(img)
    except BadImage:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise BadImage(f"image is over the pixel limit: {e}") from None
    except UnidentifiedImageError:
        raise BadImage("data is not an image (unknown or unsupported format)") from None
    except (OSError, SyntaxError, ValueError) as e:  # truncated or corrupt files
        raise BadImage(f"image cannot be decoded: {e}") from None
    return _to_bgr(img)


def _to_bgr(img: Image.Image) -> np.ndarray:
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):  # 16-bit / float grey: scale to 8 bits
        arr = np.asarray(img, dtype=np.float32)
        top = float(arr.max()) or 1.0
        grey = np.clip(arr * (255.0 / (65535.0 if top > 255 else 255.0)), 0, 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    rgb = np.asarray(img.convert("RGB"))
    return np.ascontiguousarray(rgb[:, :, ::-1])
