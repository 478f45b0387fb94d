"""Opening a dataset's image the one way training, evaluation, the prepared cache and
`bench data check` all do: decoded whole, as RGB, never above PIL's pixel limit."""

from __future__ import annotations

from pathlib import Path

from PIL import Image


class ImageTooLarge(OSError):
    """An image with more pixels than PIL.Image.MAX_IMAGE_PIXELS: a possible decompression bomb.
    An OSError, so that callers treat it as they treat any unreadable image."""


def open_image(path: Path) -> Image.Image:
    """The image at `path` decoded whole as RGB (grayscale and CMYK are converted).

    Raises OSError for a file PIL cannot decode or that is truncated (PIL's
    LOAD_TRUNCATED_IMAGES stays False), ImageTooLarge above PIL's pixel limit.
    """
    try:
        with Image.open(path) as file:
            _check_pixels(file.size)
            return file.convert("RGB")
    except Image.DecompressionBombError:  # raised by PIL above twice the limit
        raise ImageTooLarge(
            f"it has more than twice PIL's limit of {Image.MAX_IMAGE_PIXELS:,} pixels{_BOMB}"
        ) from None


_BOMB = " (PIL.Image.MAX_IMAGE_PIXELS): a possible decompression bomb, refused"


def _check_pixels(size: tuple[int, int]) -> None:
    # Between the limit and twice it PIL only warns, and decodes. A warnings filter raising
    # instead would not be thread-safe (the prepared cache and the check decode in threads).
    limit, pixels = Image.MAX_IMAGE_PIXELS, size[0] * size[1]
    if limit is not None and pixels > limit:
        raise ImageTooLarge(f"it has {pixels:,} pixels, more than PIL's limit of {limit:,}{_BOMB}")
