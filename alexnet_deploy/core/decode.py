"""Image files decoded to 8-bit RGB, faithfully or not at all (Pillow and numpy only: no torch).

* :func:`load_rgb` opens only regular files (a FIFO named ``*.JPEG`` would block the open forever; a device could
  stream without end), refuses images over :data:`MAX_IMAGE_PIXELS` before decoding them (a few-kB PNG can
  declare 400 megapixels), and converts every mode Pillow opens with :func:`to_rgb`.
* :func:`image_problem` says why a file cannot be used without decoding its pixels (the folder walk's check).
* :func:`file_kind` names what a non-regular file is.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from alexnet_deploy.core.errors import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
MAX_IMAGE_PIXELS = 1024**3 // 4 // 3
"""The largest image decoded: 89,478,485 pixels (about 9459 x 9459), Pillow's own decompression-bomb threshold.
Decoded as RGB it takes 256 MiB; a larger file (a 20000 x 20000 PNG compresses to a few kB) is refused with a
sentence before its pixels are decoded, instead of exhausting memory."""

_FILE_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
               (stat.S_ISBLK, "a block device"), (stat.S_ISDIR, "a folder"))  # fmt: skip
_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")
_WITH_ALPHA = ("RGBA", "LA", "PA", "RGBa", "La")
TRANSPARENT_BACKGROUND = (255, 255, 255)
"""Transparent pixels are composited on white, as a viewer shows them on a white page."""


def file_kind(mode: int) -> str | None:
    """What a non-regular file is (``"a FIFO"``...), or ``None`` for a regular file."""
    if stat.S_ISREG(mode):
        return None
    return next((name for test, name in _FILE_KINDS if test(mode)), "not a regular file")


@contextlib.contextmanager
def _open_regular(path: str | Path) -> Iterator:
    """Open ``path`` for reading only if it is a regular file: a FIFO would block the open (and the command)
    forever, a device could stream without end. Checked before opening and again on the open descriptor, which
    is opened non-blocking so that even a FIFO swapped in between cannot hang.

    Raises:
        DataError: missing, a folder, or not a regular file.
    """
    try:
        kind = file_kind(os.stat(path).st_mode)
        if kind is None:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
            kind = file_kind(os.fstat(fd).st_mode)
            if kind is not None:
                os.close(fd)
    except FileNotFoundError:
        raise DataError(f"Image not found: {path} (or it is a link to nothing).") from None
    except PermissionError:
        raise DataError(f"Cannot read image {path}: permission denied.") from None
    except OSError as exc:
        raise DataError(f"Cannot read image {path}: {exc.strerror or exc}.") from None
    if kind == "a folder":
        raise DataError(f"{path} is a folder, not an image file.")
    if kind is not None:
        raise DataError(f"{path} is {kind}, not an image file; only regular files are read.")
    with os.fdopen(fd, "rb") as fh:
        yield fh


def _too_large(path: str | Path, pixels: int | None, size: tuple[int, int] | None = None) -> DataError:
    what = f"{size[0]}x{size[1]} ({pixels / 1e6:.1f} megapixels)" if size else "larger than Pillow can safely open"
    return DataError(
        f"Image {path} is too large: {what}; the limit is {MAX_IMAGE_PIXELS:,} pixels (about 9459x9459, 256 MiB "
        "decoded), so that one image cannot exhaust memory. Shrink it first."
    )


@contextlib.contextmanager
def _open_image(path: str | Path) -> Iterator[Image.Image]:
    """Open an image file lazily (header only), refusing non-regular files and images over the pixel limit."""
    with _open_regular(path) as fh, warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # refused below with a sentence
        try:
            img = Image.open(fh)
        except Image.DecompressionBombError as exc:
            found = re.search(r"\((\d+) pixels\)", str(exc))
            raise _too_large(path, int(found.group(1)) if found else None) from None
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
            raise DataError(f"Cannot read image {path}: {exc}.") from None
        with img:
            pixels = img.size[0] * img.size[1]
            if pixels > MAX_IMAGE_PIXELS:
                raise _too_large(path, pixels, img.size)
            yield img


def to_rgb(img: Image.Image, path: str | Path = "the image") -> Image.Image:
    """Convert a decoded image of any mode Pillow opens to 8-bit RGB, faithfully, or refuse it.

    * 16-bit grey (``I;16*``, and ``I`` holding 0..65535 as Pillow gives 16-bit PGM/PNG) is scaled by its true
      range (65535 -> 255), not clipped: Pillow's ``convert("RGB")`` turns every value above 255 into white.
    * Transparency (RGBA, LA, PA, P with a transparent colour) is composited on :data:`TRANSPARENT_BACKGROUND`.
    * CMYK, YCbCr, LAB, HSV, 1-bit and palette images use Pillow's conversion.

    Raises:
        DataError: 32-bit float pixels (mode ``F``: their range is not defined, so no scaling is faithful),
            ``I`` values outside 0..65535, or a mode Pillow cannot convert to RGB.
    """
    mode = img.mode
    if mode in _SIXTEEN_BIT or mode == "I":
        grey = np.asarray(img)
        if mode == "I" and grey.size and (int(grey.min()) < 0 or int(grey.max()) > 65535):
            raise DataError(
                f"Image {path} has 32-bit integer pixels from {int(grey.min())} to {int(grey.max())}, outside the "
                "16-bit range 0..65535 that can be scaled faithfully; convert it to 8 or 16 bits first."
            )
        grey8 = ((grey.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
        return Image.fromarray(grey8, "L").convert("RGB")
    if mode == "F":
        raise DataError(
            f"Image {path} has 32-bit floating-point pixels (mode F), whose range is not defined, so they cannot be "
            "turned into 8-bit colour faithfully; convert it to an 8-bit image first."
        )
    if mode == "P" and "transparency" in img.info:
        img, mode = img.convert("RGBA"), "RGBA"
    if mode in _WITH_ALPHA:
        rgba = img.convert("RGBA")
        if rgba.getchannel("A").getextrema()[0] == 255:  # fully opaque: nothing to composite
            return rgba.convert("RGB")
        background = Image.new("RGBA", rgba.size, (*TRANSPARENT_BACKGROUND, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    try:
        return img.convert("RGB")
    except ValueError as exc:
        raise DataError(f"Image {path} has mode {mode}, which cannot be converted to RGB: {exc}.") from None


def load_rgb(path: str | Path) -> Image.Image:
    """Open an image file as 8-bit RGB (:func:`to_rgb`).

    Raises:
        DataError: the file is missing, not a regular file (a FIFO never blocks the caller), larger than
            :data:`MAX_IMAGE_PIXELS`, truncated, not an image, or of a mode that cannot be converted faithfully.
    """
    with _open_image(path) as img:
        try:
            img.load()
        except (OSError, ValueError, SyntaxError) as exc:
            raise DataError(f"Cannot read image {path}: {exc}.") from None
        return to_rgb(img, path)


def image_problem(path: str | Path) -> str | None:
    """Why ``path`` cannot be used as an image, without decoding its pixels (``None``: it looks usable).

    Checks that it is a regular file, that Pillow recognises it, that it is within :data:`MAX_IMAGE_PIXELS` and
    of a mode :func:`to_rgb` takes, and that its structure is intact (``verify``). A truncated JPEG passes and
    fails only when decoded; :func:`load_rgb` says so then.
    """
    try:
        with _open_image(path) as img:
            if img.mode == "F":
                to_rgb(img, path)  # raises its sentence
            img.verify()
    except DataError as exc:
        return str(exc)
    except Exception as exc:  # noqa: BLE001 - any failure of verify() means the file is unusable
        return f"Cannot read image {path}: {exc}."
    return None
