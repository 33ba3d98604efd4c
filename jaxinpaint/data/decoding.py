"""Image files to arrays: which files are images, decoding them upright,
center crops and resizes, uint8 -> float.

Every image is center-cropped to a square, resized to the model resolution
and scaled to float32 in [-1, 1] (the library's convention, docs/design.md);
16-bit and float files are scaled by their type's range first, as masks
are (`unit_values`).
Training data, completion inputs and the demo's uploads all go through
`decode_file` (or `crop_resize_array` for arrays), so they are preprocessed
alike; every image, mask and reference is read `upright`.

Decoding runs in the data threads (sources.py, pipeline.py): libjpeg/zlib and
PIL's resize release the GIL, and what holds it is the Python code around
each image, so JPEGs are decoded at reduced scale (`Image.draft`) where the
output is smaller.
"""
import contextlib
import os
import pathlib
import re
import threading
import warnings

import numpy as np
from PIL import Image, ImageOps

from jaxinpaint import errors

PathLike = str | os.PathLike[str]

# What Pillow reads: photos, and the formats images are often kept in.
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.gif', '.webp', '.tif', '.tiff',
                    '.bmp')
_JPEG_EXTENSIONS = ('.jpg', '.jpeg')
# Images per decoding task (of the data threads): large enough that the
# executor's per-task cost is negligible, small enough that a batch spreads
# over several threads.
IMAGES_PER_TASK = 16


# ----------------------------------------------------------------------------
# Opening and value ranges (the same rules for images, masks and references).


def _too_large(what: str, pixels: str, size=None):
  return errors.ImageTooLargeError(
      what, f'{pixels}, over Pillow\'s limit of {Image.MAX_IMAGE_PIXELS:,} '
      'pixels against decompression bombs (PIL.Image.MAX_IMAGE_PIXELS): '
      'resize it first', size)


@contextlib.contextmanager
def _no_bomb_warning():
  """Within it, Pillow's DecompressionBombWarning is not printed
  (`open_image` refuses those images itself, in one line). In the main
  thread only: `warnings.catch_warnings` swaps the process's filters, and
  two threads inside it at once can put back each other's (the inputs a
  thread reads were checked by the main thread already)."""
  if threading.current_thread() is not threading.main_thread():
    yield
    return
  with warnings.catch_warnings():
    warnings.simplefilter('ignore', Image.DecompressionBombWarning)
    yield


def open_image(path: PathLike, what: str = 'image',
               formats=None) -> Image.Image:
  """`Image.open` (lazy: the header only) for an image, mask or reference
  file, refusing one over Pillow's decompression-bomb limit before any
  pixel is decoded, with one line instead of Pillow's warning (over the
  limit) or traceback (over twice the limit).

  Args:
    path: the file.
    what: how messages name it, e.g. 'mask file x.png'.
    formats: as `Image.open`'s.

  Raises:
    errors.ImageTooLargeError: more pixels than PIL.Image.MAX_IMAGE_PIXELS.
    OSError, ValueError, SyntaxError: as `Image.open` (not an image).
  """
  with _no_bomb_warning():
    try:
      img = Image.open(path, formats=formats)
    except Image.DecompressionBombError as e:
      # Pillow refused from the header, not saying the size: its count.
      count = re.search(r'\((\d+) pixels\)', str(e))
      raise _too_large(what, f'has {int(count[1]):,} pixels' if count
                       else 'is too large') from None
  limit = Image.MAX_IMAGE_PIXELS
  w, h = img.size
  if limit is not None and max(w, 1) * max(h, 1) > limit:
    img.close()
    raise _too_large(what, f'is {w}x{h} ({w * h:,} pixels)', (w, h))
  return img


def unit_values(img: Image.Image, what: str = 'image') -> np.ndarray | None:
  """The values of a 16-bit or float image, in [0, 1] (float32 (H, W)); None
  for the 8-bit modes. One rule for images and masks: integers (modes I;16*
  and I, as 16-bit PNGs and TIFFs open) are divided by 65535; float (F)
  carries no range and is taken to be in [0, 1] already (0 = black).

  Raises:
    errors.ImageRangeError: values outside [0, 65535] (integers) or [0, 1]
      (float), or not finite; the message names `what` and the range.
  """
  if img.mode == 'F':
    top, kind = 1, 'float (mode F)'
  elif img.mode == 'I' or img.mode.startswith('I;16'):
    top, kind = 65535, f'integer (mode {img.mode})'
  else:
    return None
  values = np.asarray(img, dtype=np.float32)
  lo, hi = (float(values.min()), float(values.max())) if values.size else (0, 0)
  if not (np.isfinite(lo) and np.isfinite(hi)):
    raise errors.ImageRangeError(
        what, f'has {kind} values that are not finite (NaN or infinity)')
  if lo < 0 or hi > top:
    raise errors.ImageRangeError(
        what, f'has {kind} values in [{lo:g}, {hi:g}], outside [0, {top}] '
        f'(read as 0 = black, {top} = white): rescale it to [0, {top}]')
  return values / np.float32(top)


# ----------------------------------------------------------------------------
# Preprocessing.


_EXIF_ORIENTATION = 0x0112
# EXIF orientations 5-8 turn the image by 90 degrees: width and height swap.
_TRANSPOSED = (5, 6, 7, 8)


def exif_orientation(img: Image.Image) -> int:
  """The EXIF orientation tag of an opened image (1 = as stored)."""
  try:
    return int(img.getexif().get(_EXIF_ORIENTATION, 1))
  except (TypeError, ValueError, OSError, SyntaxError):
    return 1  # a damaged EXIF block: the pixels as stored


def upright(img: Image.Image) -> Image.Image:
  """`img` as a viewer shows it: its EXIF orientation applied (a phone's
  JPEG stored sideways, tag 6, is turned upright). Every image, mask and
  reference is read through this."""
  if exif_orientation(img) in (1, 0):
    return img  # no copy for the usual case
  return ImageOps.exif_transpose(img)


def upright_size(img: Image.Image) -> tuple[int, int]:
  """(width, height) of `upright(img)`, from the header only."""
  w, h = img.size
  return (h, w) if exif_orientation(img) in _TRANSPOSED else (w, h)


def _crop_resize(img: Image.Image, resolution: int,
                 what: str = 'image') -> np.ndarray:
  """Center-crops `img` to a square, resizes it and converts it to RGB.

  Args:
    img: a PIL image of any mode and size (a JPEG may be opened lazily).
    resolution: side of the output.
    what: how an error names the image (`unit_values`).

  Returns:
    uint8 array (resolution, resolution, 3).
  """
  if img.format == 'JPEG' and img.mode in ('RGB', 'L', 'CMYK'):
    # Let libjpeg decode at 1/2, 1/4 or 1/8 scale (DCT scaling) while the
    # short side stays >= resolution: far less work than a full decode.
    img.draft(img.mode, (resolution, resolution))
  img = upright(img)
  unit = unit_values(img, what)
  if unit is not None:
    # 16-bit and float greyscale, scaled by their range as masks are
    # (convert('RGB') would clip them to 0..255: float [0, 1] turns black).
    img = Image.fromarray(np.round(unit * 255).astype(np.uint8))
  elif img.mode not in ('RGB', 'L', 'RGBA', 'LA'):
    # Palette, CMYK, ...: resize needs a continuous mode ('P' would only
    # allow nearest-neighbour resampling).
    img = img.convert('RGB')
  w, h = img.size
  side = min(w, h)
  if w != h:
    left, top = (w - side) // 2, (h - side) // 2
    # crop() before resize(): resize(box=...) would let the filter read
    # pixels outside the box, which a center crop must not see. After a JPEG
    # draft the crop can be off by half a drafted pixel (less than one output
    # pixel), the price of the much faster decode.
    img = img.crop((left, top, left + side, top + side))
  if side != resolution:
    # PIL's bicubic widens its kernel when downsampling, so it also
    # antialiases (area-like) for large reductions.
    img = img.resize((resolution, resolution), Image.Resampling.BICUBIC)
  if img.mode != 'RGB':
    # Greyscale is replicated; alpha is dropped (not composited: transparent
    # pixels keep their stored colour).
    img = img.convert('RGB')
  return np.asarray(img)


def crop_resize_array(image: np.ndarray, resolution: int) -> np.ndarray:
  """`_crop_resize` for a decoded uint8 array (H, W), (H, W, 1|3|4)."""
  image = np.asarray(image)
  if image.dtype != np.uint8:
    raise ValueError(f'expected uint8 images, got {image.dtype}')
  if image.ndim == 2:
    image = image[..., None]
  if image.ndim != 3 or image.shape[-1] not in (1, 3, 4):
    raise ValueError(
        f'expected images (H, W, 1|3|4), got shape {image.shape}')
  image = image[..., :3]  # Drop alpha.
  h, w = image.shape[:2]
  side = min(h, w)
  top, left = (h - side) // 2, (w - side) // 2
  image = image[top:top + side, left:left + side]
  if side != resolution:
    # 2-D uint8 -> mode 'L', (H, W, 3) -> 'RGB'.
    pil = Image.fromarray(np.ascontiguousarray(
        image[..., 0] if image.shape[-1] == 1 else image))
    image = np.asarray(pil.resize((resolution, resolution),
                                  Image.Resampling.BICUBIC))
    if image.ndim == 2:
      image = image[..., None]
  if image.shape[-1] == 1:
    image = np.repeat(image, 3, axis=-1)
  return image


def to_float(images: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
  """uint8 [0, 255] -> float32 [-1, 1]; 255 / 127.5 is exact, so the range
  is closed without clipping."""
  out = np.divide(images, np.float32(127.5), out=out, dtype=np.float32)
  out -= 1.0
  return out


def decode_file(path: str, resolution: int) -> np.ndarray:
  """Reads an image file -> uint8 (resolution, resolution, 3).

  Raises:
    errors.CorruptImageError: the file cannot be read or decoded (naming
      it); its kind errors.ImageRangeError: 16-bit or float values outside
      their range (`unit_values`).
  """
  try:
    # Restricting the formats skips PIL's probing of every plugin; the
    # extension only picks which one to try first.
    formats = (('JPEG', 'PNG') if path.lower().endswith(_JPEG_EXTENSIONS)
               else ('PNG', 'JPEG') if path.lower().endswith('.png')
               else None)  # GIF, WebP, TIFF, BMP: let Pillow probe
    with Image.open(path, formats=formats) as img:
      return _crop_resize(img, resolution, f'image {path}')
  except errors.ImageRangeError:
    raise  # names the file and its range already
  except (OSError, SyntaxError, ValueError, Image.DecompressionBombError,
          EOFError) as e:
    # PIL signals truncated/garbage files with OSError (UnidentifiedImageError
    # included) and sometimes SyntaxError/ValueError from header parsing.
    raise errors.CorruptImageError(
        f'cannot read image {path}: {type(e).__name__}: {e}') from e


# ----------------------------------------------------------------------------
# Image files.


def list_image_files(folder: PathLike, skip: PathLike | None = None,
                     others: list | None = None) -> list[str]:
  """All image files (IMAGE_EXTENSIONS) under `folder` (recursive), sorted.

  Sorting is by path relative to `folder` so the order is the same on every
  machine. Hidden files and folders (names starting with '.', e.g. macOS
  '._x.jpg' resource forks) are skipped, and so is the folder `skip` (an
  output folder inside the input one). The other files found are appended
  to `others`, if given.

  Raises:
    ValueError: `folder` is not a directory or holds no images.
  """
  folder = os.fspath(folder)
  if not os.path.isdir(folder):
    raise ValueError(f'image folder {folder!r} does not exist or is not a '
                     'directory')
  found = []
  skip = None if skip is None else os.path.realpath(skip)
  for root, dirs, files in os.walk(folder):
    dirs[:] = [d for d in dirs if not d.startswith('.') and (
        skip is None or os.path.realpath(os.path.join(root, d)) != skip)]
    for name in files:
      if name.startswith('.'):
        continue
      if name.lower().endswith(IMAGE_EXTENSIONS):
        found.append(os.path.relpath(os.path.join(root, name), folder))
      elif others is not None:
        others.append(os.path.join(root, name))
  if not found:
    raise ValueError(f'image folder {folder!r} contains no images (expected '
                     f'{", ".join("*" + e for e in IMAGE_EXTENSIONS)} files, '
                     'searched recursively)')
  found.sort(key=lambda p: pathlib.PurePath(p).parts)
  return [os.path.join(folder, p) for p in found]
