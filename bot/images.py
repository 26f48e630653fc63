"""Images as Resell Scan takes them.

iPhones save photos as HEIC/HEIF; sent to Telegram *as a photo* they arrive as JPEG, but sent
*as a file* they stay HEIC, which Resell Scan is not known to accept (its guides name no
formats; our sandbox takes JPEG, PNG, WebP and GIF, like most image APIs). So a HEIC file is
converted to JPEG before upload with pillow-heif (libheif) and Pillow. Where that library is
missing, HEIC files are refused up front with a clear message instead of failing later.
"""

from __future__ import annotations

import io
import logging

log = logging.getLogger(__name__)

HEIC_TYPES = frozenset(
    {"image/heic", "image/heif", "image/heic-sequence", "image/heif-sequence", "image/avif"}
)
HEIC_EXTENSIONS = (".heic", ".heif", ".hif", ".avif")
JPEG_QUALITY = 90

_opener_registered = False


def is_heic(mime_type: str | None, file_name: str | None) -> bool:
    return (mime_type or "").lower() in HEIC_TYPES or (file_name or "").lower().endswith(
        HEIC_EXTENSIONS
    )


def heic_supported() -> bool:
    """Whether HEIC can be converted here (pillow-heif importable)."""
    try:
        _register()
    except ImportError:
        return False
    return True


def _register() -> None:
    global _opener_registered
    if not _opener_registered:
        import pillow_heif

        pillow_heif.register_heif_opener()
        _opener_registered = True


def to_jpeg(data: bytes) -> bytes:
    """A HEIC/HEIF (or any Pillow-readable) image as JPEG. CPU-bound: run it in a thread."""
    _register()
    from PIL import Image, ImageOps

    with Image.open(io.BytesIO(data)) as image:
        upright = ImageOps.exif_transpose(image)  # phones store rotation in EXIF
        rgb = upright.convert("RGB")
        out = io.BytesIO()
        rgb.save(out, format="JPEG", quality=JPEG_QUALITY)
    return out.getvalue()
