"""Where FID's images come from: a folder of PNG/JPEG files, or an ``.npz`` of uint8 images, read
in batches of uint8 NHWC RGB arrays (one batch in memory at a time). Files are decoded by Pillow
(images carry no code); a folder is read in sorted name order."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from weights_bridge.errors import InputFileError

from .stats import open_npz, read_array

EXTENSIONS = (".png", ".jpg", ".jpeg")


class ImageSource:
    """``len(source)`` images, ``batches(size)`` of uint8 (n, H, W, 3) arrays. Images of one
    batch must share a size (a folder of mixed sizes is read one image per batch)."""

    def __init__(self, path):
        self.path = Path(path)
        if self.path.is_dir():
            self.files = sorted(p for p in self.path.iterdir() if p.suffix.lower() in EXTENSIONS and p.is_file())
            if not self.files:
                raise InputFileError(f"{self.path}: no images (expected {', '.join(EXTENSIONS)} files in the folder)")
            self.count, self.array = len(self.files), None
        elif self.path.suffix.lower() == ".npz":
            self.files, self.array = None, _images_array(self.path)
            self.count = self.array.shape[0]
        elif not self.path.exists():
            raise InputFileError(f"{self.path}: no such file or folder")
        else:
            raise InputFileError(f"{self.path}: expected a folder of images, an .npz of uint8 images or a "
                                 f"statistics .npz (mu, sigma)")

    def __len__(self):
        return self.count

    def batches(self, size: int):
        if self.array is not None:
            for i in range(0, self.count, size):
                yield np.ascontiguousarray(self.array[i:i + size])
            return
        pending = []
        for path in self.files:
            image = read_image(path)
            if pending and image.shape != pending[0].shape:
                yield np.stack(pending)
                pending = []
            pending.append(image)
            if len(pending) == size:
                yield np.stack(pending)
                pending = []
        if pending:
            yield np.stack(pending)


def read_image(path) -> np.ndarray:
    """One image file as uint8 (H, W, 3) RGB (grey and palette images converted, alpha dropped)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as e:
        raise InputFileError(f"{path}: unreadable image ({e})") from None


def _images_array(path) -> np.ndarray:
    """The one array of an images ``.npz`` (or its ``images`` / ``arr_0``): uint8 (N, H, W, 3)."""
    with open_npz(path) as f:
        if "mu" in f.files:
            raise InputFileError(f"{path}: is a statistics file (mu, sigma), not images")
        names = [k for k in ("images", "arr_0") if k in f.files] or f.files
        if len(names) != 1:
            raise InputFileError(f"{path}: {len(f.files)} arrays ({', '.join(f.files)}); expected one, or one "
                                 f"named 'images'")
        images = read_array(f, names[0], path)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3 or images.shape[0] == 0:
        raise InputFileError(f"{path}: array {names[0]!r} is {images.dtype} {images.shape}; expected uint8 "
                             f"(N, H, W, 3) images, N >= 1")
    return images


def is_statistics(path) -> bool:
    """Whether ``path`` is a statistics ``.npz`` (has ``mu``): read as such, not as images."""
    path = Path(path)
    if path.suffix.lower() != ".npz" or not path.is_file():
        return False
    with open_npz(path) as f:
        return "mu" in f.files
