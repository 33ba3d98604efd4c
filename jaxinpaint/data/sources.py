"""Training images: sources, decoding, center crops, deterministic batches.

Three sources, chosen by `config.data` (exactly one must be set):
  * `folder`: a folder of .jpg/.jpeg/.png files, searched recursively and
    sorted by relative path, so the order (and thus every batch) does not
    depend on the file system's listing order.
  * `npz`: an .npz of uint8 images (N, H, W, 3), key 'images' or the file's
    only array.
  * `tfds_name`: a tensorflow-datasets split read with `tfds.data_source`
    (random access to ArrayRecord files, no TensorFlow needed).

Every image is center-cropped to a square, resized to the model resolution
and scaled to float32 in [-1, 1] (the library's convention, docs/design.md).

Batches are a pure function of (seed, batch index): global batch k holds the
elements k*B, ..., k*B + B - 1 of an infinite stream in which epoch e is the
permutation `default_rng([seed, e]).permutation(N)` of the N images. So a run
resumed at batch k sees exactly the batches an uninterrupted run would have,
and P processes that each take their 1/P slice of every global batch see
together exactly what one process would. The only state to checkpoint is the
index of the next batch (`BatchIterator.next_batch`).

Decoding runs in a thread pool with a bounded number of batches in flight:
libjpeg/zlib and PIL's resize release the GIL, and threads need neither
pickling nor shared memory. What holds the GIL is Python code around each
image, so it is kept short: chunks of a batch per task, and JPEGs decoded at
reduced scale (`Image.draft`) where the output is smaller.
"""
import collections
import concurrent.futures
import hashlib
import json
import logging
import os
import pathlib
import threading
from typing import Any, Iterable

import numpy as np
from PIL import Image, ImageOps

from jaxinpaint import errors

PathLike = str | os.PathLike[str]

# What Pillow reads: photos, and the formats images are often kept in.
IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.gif', '.webp', '.tif', '.tiff',
                    '.bmp')
_JPEG_EXTENSIONS = ('.jpg', '.jpeg')
# Images per decoding task: large enough that the executor's per-task cost is
# negligible, small enough that a batch spreads over several threads.
_CHUNK = 16
# Seeds are mixed into numpy's SeedSequence, which takes non-negative ints.
_SEED_MODULUS = 1 << 64


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


def _crop_resize(img: Image.Image, resolution: int) -> np.ndarray:
  """Center-crops `img` to a square, resizes it and converts it to RGB.

  Args:
    img: a PIL image of any mode and size (a JPEG may be opened lazily).
    resolution: side of the output.

  Returns:
    uint8 array (resolution, resolution, 3).
  """
  if img.format == 'JPEG' and img.mode in ('RGB', 'L', 'CMYK'):
    # Let libjpeg decode at 1/2, 1/4 or 1/8 scale (DCT scaling) while the
    # short side stays >= resolution: far less work than a full decode.
    img.draft(img.mode, (resolution, resolution))
  img = upright(img)
  if img.mode.startswith('I;16'):
    # 16-bit PNGs: keep the 8 most significant bits (convert('RGB') clips).
    img = Image.fromarray((np.asarray(img) >> 8).astype(np.uint8))
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


def _crop_resize_array(image: np.ndarray, resolution: int) -> np.ndarray:
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


def _to_float(images: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
  """uint8 [0, 255] -> float32 [-1, 1]; 255 / 127.5 is exact, so the range
  is closed without clipping."""
  out = np.divide(images, np.float32(127.5), out=out, dtype=np.float32)
  out -= 1.0
  return out


def _decode_file(path: str, resolution: int) -> np.ndarray:
  """Reads an image file -> uint8 (resolution, resolution, 3).

  Raises:
    errors.CorruptImageError: the file cannot be read or decoded (naming it).
  """
  try:
    # Restricting the formats skips PIL's probing of every plugin; the
    # extension only picks which one to try first.
    formats = (('JPEG', 'PNG') if path.lower().endswith(_JPEG_EXTENSIONS)
               else ('PNG', 'JPEG') if path.lower().endswith('.png')
               else None)  # GIF, WebP, TIFF, BMP: let Pillow probe
    with Image.open(path, formats=formats) as img:
      return _crop_resize(img, resolution)
  except (OSError, SyntaxError, ValueError, Image.DecompressionBombError,
          EOFError) as e:
    # PIL signals truncated/garbage files with OSError (UnidentifiedImageError
    # included) and sometimes SyntaxError/ValueError from header parsing.
    raise errors.CorruptImageError(
        f'cannot read image {path}: {type(e).__name__}: {e}') from e


# ----------------------------------------------------------------------------
# Sources: random access to preprocessed uint8 images.


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


class _FolderSource:
  """Image files, decoded on access."""

  def __init__(self, folder: str):
    self.folder = folder
    self.paths = list_image_files(folder)

  def __len__(self) -> int:
    return len(self.paths)

  def read(self, index: int, resolution: int) -> np.ndarray:
    return _decode_file(self.paths[index], resolution)

  def describe(self) -> str:
    return f'folder {self.folder} ({len(self)} images)'


class _ArraySource:
  """In-memory uint8 images (N, H, W, C), from an .npz file."""

  def __init__(self, path: str):
    if not os.path.isfile(path):
      raise ValueError(f'npz file {path!r} does not exist')
    with np.load(path, allow_pickle=False) as npz:
      keys = list(npz.keys())
      if 'images' in keys:
        key = 'images'
      elif len(keys) == 1:
        key = keys[0]
      else:
        raise ValueError(f'npz file {path!r} has arrays {keys}: expected one '
                         "named 'images' or a single array")
      images = npz[key]
    if images.dtype != np.uint8 or images.ndim not in (3, 4) or (
        images.ndim == 4 and images.shape[-1] not in (1, 3, 4)):
      raise ValueError(f'npz file {path!r}: {key!r} must be uint8 images '
                       f'(N, H, W, 3), got {images.dtype} {images.shape}')
    if not len(images):
      raise ValueError(f'npz file {path!r} contains no images')
    self.path, self.images = path, images

  def __len__(self) -> int:
    return len(self.images)

  def read(self, index: int, resolution: int) -> np.ndarray:
    return _crop_resize_array(self.images[index], resolution)

  def describe(self) -> str:
    h, w = self.images.shape[1:3]
    return f'npz {self.path} ({len(self)} images, {h}x{w})'


class _TfdsSource:
  """A tensorflow-datasets split through `tfds.data_source` (no TensorFlow)."""

  def __init__(self, name: str, split: str, data_dir: str | None):
    # Imported here: tfds takes ~0.5 s to import and most runs use a folder.
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    self.label = f'{name}:{split}'
    try:
      # download=False: otherwise tfds downloads and prepares a set that is
      # not here (many GB, hours), unasked, inside a run.
      self.source = tfds.data_source(name, split=split,
                                     data_dir=data_dir or None, download=False)
    except Exception as e:  # pylint: disable=broad-except
      # tfds raises many types (NotImplementedError, AssertionError, ...),
      # and for a set that was never prepared none of them says so.
      raise ValueError(self._open_error(tfds, name, data_dir, e)) from e
    if not len(self.source):
      raise ValueError(f'tfds split {self.label} contains no examples')

  def _open_error(self, tfds, name: str, data_dir: str | None,
                  error: Exception) -> str:
    """One line on why the split cannot be opened."""
    try:
      builder = tfds.builder(name, data_dir=data_dir or None)
      prepared = builder.is_prepared()
    except Exception:  # pylint: disable=broad-except
      prepared = True  # e.g. an unknown name: `error` says so
    if not prepared:
      return (f'tfds {name} is not prepared here (nothing in '
              f'{builder.data_dir}); run `tfds build {name} '
              '--file_format=array_record` first, or point to the folder '
              'where it is prepared (TFDS_DATA_DIR, or '
              'config.data.tfds_data_dir in training)')
    first = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return f'tfds {self.label}: cannot open it: {first}'

  def __len__(self) -> int:
    return len(self.source)

  def read(self, index: int, resolution: int) -> np.ndarray:
    example = self.source[index]
    if 'image' not in example:
      raise ValueError(f'tfds {self.label} examples have no "image" feature '
                       f'(features: {sorted(example)})')
    return _crop_resize_array(example['image'], resolution)

  def describe(self) -> str:
    return f'tfds {self.label} ({len(self)} images)'


_SOURCE_KEYS = ('folder', 'npz', 'tfds_name')


def open_source(data_config: Any):
  """The one source that `data_config` (config.data) names.

  It has len() (its number of images), `describe()` and `read(index,
  resolution)`.
  """
  chosen = [k for k in _SOURCE_KEYS if getattr(data_config, k, '')]
  if len(chosen) != 1:
    keys = ', '.join(f'config.data.{k}' for k in _SOURCE_KEYS)
    got = ('none is set' if not chosen else 'got ' + ' and '.join(
        f'config.data.{k}={getattr(data_config, k)!r}' for k in chosen))
    raise ValueError(f'set exactly one data source of {keys}; {got}')
  if chosen[0] == 'folder':
    return _FolderSource(os.fspath(data_config.folder))
  if chosen[0] == 'npz':
    return _ArraySource(os.fspath(data_config.npz))
  return _TfdsSource(data_config.tfds_name,
                     getattr(data_config, 'split', 'train'),
                     getattr(data_config, 'tfds_data_dir', ''))


def describe_source(data_config: Any) -> str:
  """One line for logs, e.g. 'folder ../x (44715 images)'."""
  return open_source(data_config).describe()


# ----------------------------------------------------------------------------
# Deterministic batches.


def stream_indices(num_images: int, seed: int, positions: np.ndarray,
                   permutation=None) -> np.ndarray:
  """Source indices of elements `positions` of the infinite stream.

  Element g is image perm_e[g % N] with epoch e = g // N and
  perm_e = default_rng([seed, e]).permutation(N): every epoch shows each
  image exactly once, and a batch that straddles two epochs takes the end of
  one and the start of the next.

  Args:
    num_images: N.
    seed: the data seed.
    positions: int array of stream positions (global batch k, row r is
      position k * B + r).
    permutation: optional cached `(epoch) -> permutation` function.

  Returns:
    int64 array shaped like `positions`.
  """
  permutation = permutation or (
      lambda e: epoch_permutation(num_images, seed, e))
  positions = np.asarray(positions, np.int64)
  epochs = positions // num_images
  out = np.empty(positions.shape, np.int64)
  for epoch in np.unique(epochs):
    sel = epochs == epoch
    out[sel] = permutation(int(epoch))[positions[sel] % num_images]
  return out


def epoch_permutation(num_images: int, seed: int, epoch: int) -> np.ndarray:
  """The order of the N images in epoch `epoch` of the stream."""
  rng = np.random.default_rng([seed % _SEED_MODULUS, epoch])
  return rng.permutation(num_images)


class BatchIterator:
  """Infinite iterator over float32 batches (b, R, R, 3) in [-1, 1].

  Yields rows [process_index * b, (process_index + 1) * b) of global batches
  start_batch, start_batch + 1, ..., with b = global_batch_size //
  process_count. Decoding runs ahead in background threads; call `close()`
  (or use it as a context manager) to stop them early.

  Attributes:
    next_batch: index of the global batch the next `next()` returns (the value
      to save in a checkpoint and pass back as `start_batch`).
    num_skipped: number of distinct unreadable files skipped so far (only with
      skip_corrupt=True; otherwise such a file raises errors.CorruptImageError).
    description: `describe_source` of the source.
  """

  def __init__(self, source, resolution: int, global_batch_size: int,
               seed: int, start_batch: int, process_index: int,
               process_count: int, num_threads: int, prefetch_batches: int,
               skip_corrupt: bool):
    self._source = source
    self._num_images = len(source)
    self._resolution = resolution
    self._global_batch_size = global_batch_size
    self._local_batch_size = global_batch_size // process_count
    self._row0 = process_index * self._local_batch_size
    self._seed = seed
    self._skip_corrupt = skip_corrupt
    self._corrupt: set[int] = set()
    self._lock = threading.Lock()
    self._perm_cache: collections.OrderedDict[int, np.ndarray] = (
        collections.OrderedDict())
    self.description = source.describe()
    self.next_batch = start_batch
    self._to_submit = start_batch
    self._in_flight: collections.deque = collections.deque()
    self._pool = concurrent.futures.ThreadPoolExecutor(
        max_workers=max(1, num_threads), thread_name_prefix='jaxinpaint-data')
    self._prefetch = max(1, prefetch_batches)
    self._closed = False
    for _ in range(self._prefetch):
      self._submit()

  @property
  def num_skipped(self) -> int:
    with self._lock:
      return len(self._corrupt)

  def _local_indices(self, batch: int) -> np.ndarray:
    """Source indices of this process's rows of global batch `batch`."""
    positions = batch * self._global_batch_size + self._row0 + np.arange(
        self._local_batch_size, dtype=np.int64)
    return stream_indices(self._num_images, self._seed, positions,
                          self._epoch_permutation)

  def _epoch_permutation(self, epoch: int) -> np.ndarray:
    # Only the submitting (main) thread calls this. Two epochs cover a batch
    # that straddles the boundary.
    perm = self._perm_cache.get(epoch)
    if perm is None:
      perm = epoch_permutation(self._num_images, self._seed, epoch)
      self._perm_cache[epoch] = perm
      while len(self._perm_cache) > 2:
        self._perm_cache.popitem(last=False)
    return perm

  def _submit(self):
    indices = self._local_indices(self._to_submit)
    r = self._resolution
    out = np.empty((len(indices), r, r, 3), np.float32)
    futures = [
        self._pool.submit(self._fill, out, indices, lo,
                          min(lo + _CHUNK, len(indices)))
        for lo in range(0, len(indices), _CHUNK)
    ]
    self._in_flight.append((self._to_submit, out, futures))
    self._to_submit += 1

  def _fill(self, out: np.ndarray, indices: np.ndarray, lo: int, hi: int):
    """Decodes images indices[lo:hi] into out[lo:hi] (worker thread)."""
    r = self._resolution
    chunk = np.empty((hi - lo, r, r, 3), np.uint8)
    for i in range(lo, hi):
      chunk[i - lo] = self._read(int(indices[i]))
    _to_float(chunk, out=out[lo:hi])

  def _read(self, index: int) -> np.ndarray:
    if not self._skip_corrupt:
      return self._source.read(index, self._resolution)
    # The replacement of an unreadable image is the next readable one in
    # source order: it depends only on the files, never on thread timing.
    for offset in range(self._num_images):
      j = (index + offset) % self._num_images
      with self._lock:
        known_bad = j in self._corrupt
      if known_bad:
        continue
      try:
        return self._source.read(j, self._resolution)
      except errors.CorruptImageError as e:
        with self._lock:
          new = j not in self._corrupt
          self._corrupt.add(j)
        if new:
          logging.warning('skipping unreadable image: %s', e)
    raise ValueError(f'{self.description}: no image could be read')

  def __iter__(self) -> 'BatchIterator':
    return self

  def __next__(self) -> np.ndarray:
    if self._closed:
      raise StopIteration
    batch, out, futures = self._in_flight.popleft()
    # Top up first so the workers stay busy while we wait.
    self._submit()
    try:
      for f in futures:
        f.result()
    except BaseException:
      self.close()
      raise
    self.next_batch = batch + 1
    return out

  def close(self):
    """Cancels pending work and joins the threads; idempotent."""
    if self._closed:
      return
    self._closed = True
    self._in_flight.clear()
    self._pool.shutdown(wait=True, cancel_futures=True)

  def __enter__(self) -> 'BatchIterator':
    return self

  def __exit__(self, *exc):
    self.close()

  def __del__(self):
    # Without wait: __del__ may run in a worker thread's last reference.
    if not getattr(self, '_closed', True):
      self._closed = True
      self._pool.shutdown(wait=False, cancel_futures=True)


def make_batch_iterator(data_config: Any, resolution: int,
                        global_batch_size: int, seed: int,
                        start_batch: int = 0, process_index: int = 0,
                        process_count: int = 1,
                        source=None) -> BatchIterator:
  """Background-prefetched batches of the source named by `data_config`.

  Args:
    data_config: `config.data` (folder / npz / tfds_name, split,
      tfds_data_dir, skip_corrupt, num_threads, prefetch_batches).
    resolution: side R of the square output images.
    global_batch_size: B, summed over all processes.
    seed: fixes the permutation of every epoch.
    start_batch: index of the first global batch to yield (resume point).
    process_index: this process's index in [0, process_count).
    process_count: number of processes that share each global batch.
    source: `open_source(data_config)` if the caller has it already (an npz
      source holds every image: opening it again would load them again).

  Returns:
    A `BatchIterator` yielding float32 arrays (B // P, R, R, 3) in [-1, 1]:
    this process's rows of global batches start_batch, start_batch + 1, ...

  Raises:
    ValueError: bad arguments, no/several sources, missing or empty folder.
  """
  if resolution <= 0:
    raise ValueError(f'resolution must be positive, got {resolution}')
  if global_batch_size <= 0:
    raise ValueError(
        f'global_batch_size must be positive, got {global_batch_size}')
  if process_count <= 0 or not 0 <= process_index < process_count:
    raise ValueError(f'process_index {process_index} is not in '
                     f'[0, process_count={process_count})')
  if global_batch_size % process_count:
    raise ValueError(f'global batch size {global_batch_size} is not '
                     f'divisible by the process count {process_count}')
  if start_batch < 0:
    raise ValueError(f'start_batch must be >= 0, got {start_batch}')
  if source is None:
    source = open_source(data_config)
  return BatchIterator(
      source, resolution, global_batch_size, seed, start_batch, process_index,
      process_count,
      num_threads=getattr(data_config, 'num_threads', 8),
      prefetch_batches=getattr(data_config, 'prefetch_batches', 8),
      skip_corrupt=getattr(data_config, 'skip_corrupt', False))


# ----------------------------------------------------------------------------
# Plain image lists (inference inputs).


def load_images(paths: PathLike | Iterable[PathLike],
                resolution: int) -> tuple[np.ndarray, list[str]]:
  """Loads images for completion, with the training preprocessing.

  Args:
    paths: a folder (all its images, as for training), one image file, or a
      sequence of image files.
    resolution: side R of the output.

  Returns:
    (images, names): float32 (N, R, R, 3) in [-1, 1] and the file names
    without extension, in input order (sorted for a folder).

  Raises:
    ValueError: missing/empty folder; errors.CorruptImageError for an unreadable file.
  """
  if isinstance(paths, (str, os.PathLike)):
    paths = (list_image_files(paths) if os.path.isdir(paths)
             else [os.fspath(paths)])
  paths = [os.fspath(p) for p in paths]
  if not paths:
    raise ValueError('load_images: no image paths given')
  images = np.empty((len(paths), resolution, resolution, 3), np.uint8)
  for i, path in enumerate(paths):
    if not os.path.isfile(path):
      raise ValueError(f'image file {path!r} does not exist')
    images[i] = _decode_file(path, resolution)
  names = [os.path.splitext(os.path.basename(p))[0] for p in paths]
  return _to_float(images), names


# ----------------------------------------------------------------------------
# The whole set as one array (data on the accelerator).


def _files_digest(paths, root=None) -> str:
  """SHA-256 over the names (relative to `root`), sizes and modification
  times of `paths`: changes when a file is added, removed, renamed or
  rewritten, without reading any image."""
  digest = hashlib.sha256()
  for path in paths:
    st = os.stat(path)
    name = os.path.relpath(path, root) if root else os.path.abspath(path)
    digest.update(f'{name}\0{st.st_size}\0{st.st_mtime_ns}\n'.encode(
        'utf-8', 'surrogateescape'))
  return digest.hexdigest()


def cache_record(source, resolution: int) -> dict:
  """What a decoded cache is made from: the source, its image count, a
  digest of its files (folder, npz) and the resolution."""
  if isinstance(source, _FolderSource):
    origin = f'folder {os.path.abspath(source.folder)}'
    files = _files_digest(source.paths, source.folder)
  elif isinstance(source, _ArraySource):
    origin, files = f'npz {os.path.abspath(source.path)}', _files_digest(
        [source.path])
  else:  # tfds: prepared files that a name and split identify
    origin, files = f'tfds {source.label}', ''
  return {'source': origin, 'count': len(source), 'files_sha256': files,
          'resolution': resolution}


def _check_cache_record(cache: str, record: dict):
  """Refuses a cache whose record (beside it) is not `record`."""
  label = f'config.data.cache={cache}'
  try:
    with open(f'{cache}.json', encoding='utf-8') as f:
      saved = json.load(f)
  except FileNotFoundError:
    raise ValueError(f'{label}: no {cache}.json says what it was decoded '
                     'from; delete it (it is rebuilt) or point to another '
                     'file') from None
  except ValueError as e:  # bad JSON or UTF-8
    raise ValueError(f'{label}: {cache}.json is not a valid record ({e}); '
                     'delete both to rebuild') from e
  if not isinstance(saved, dict):
    saved = {}
  names = {'source': 'source', 'count': 'image count',
           'files_sha256': 'files (names, sizes or times)',
           'resolution': 'resolution'}
  for key, what in names.items():
    if saved.get(key) != record[key]:
      theirs, ours = saved.get(key), record[key]
      if key == 'files_sha256':
        theirs, ours = 'as they were', 'changed since'
      raise ValueError(f'{label} was decoded from another {what} ({theirs}; '
                       f'this run: {ours}): it holds other images; delete '
                       'it or point to another file')


def load_all(data_config: Any, resolution: int, source=None) -> np.ndarray:
  """Every image of the source as uint8 (N, R, R, 3), decoded once.

  With `data_config.cache` set to a .npy path, a decoded array there is
  memory-mapped instead of decoding again, and a missing one is written
  (atomically) for the next run, with `<cache>.json` beside it saying what
  it was decoded from (`cache_record`): a cache of another source, another
  version of its files or another resolution is refused, never used.
  `source`: as for `make_batch_iterator`.
  """
  cache = getattr(data_config, 'cache', '')
  if source is None:
    source = open_source(data_config)
  shape = (len(source), resolution, resolution, 3)
  record = cache_record(source, resolution) if cache else None
  if cache and os.path.isfile(cache):
    _check_cache_record(cache, record)
    try:
      images = np.load(cache, mmap_mode='r')
    except (OSError, ValueError, EOFError) as e:  # truncated, not an .npy
      raise ValueError(
          f'config.data.cache={cache}: cannot read it ({type(e).__name__}: '
          f'{str(e).strip().splitlines()[0] if str(e).strip() else "-"}); '
          'delete it to decode the images again') from e
    if images.shape != shape or images.dtype != np.uint8:
      raise ValueError(
          f'config.data.cache={cache}: holds uint8{images.shape}, the '
          f'source ({source.describe()}) gives uint8{shape}; delete it or '
          'point to another file')
    return images
  images = np.empty(shape, np.uint8)

  def fill(lo):
    for i in range(lo, min(lo + _CHUNK, len(source))):
      images[i] = source.read(i, resolution)

  workers = max(1, getattr(data_config, 'num_threads', 8))
  with concurrent.futures.ThreadPoolExecutor(workers) as pool:
    list(pool.map(fill, range(0, len(source), _CHUNK)))
  if cache:
    tmp = f'{cache}.tmp.npy'
    np.save(tmp, images)
    # The record first: a cache never exists without the record of what
    # it holds.
    with open(f'{cache}.json.tmp', 'w', encoding='utf-8') as f:
      json.dump(record, f, indent=2)
    os.replace(f'{cache}.json.tmp', f'{cache}.json')
    os.replace(tmp, cache)
  return images


def device_batches(images, seed: int, first_batch, num_batches: int,
                   batch_size: int):
  """Global batches first_batch, ..., first_batch + num_batches - 1, drawn
  inside a jitted function from uint8 `images` (N, R, R, 3) already on the
  device: float32 (num_batches, batch_size, R, R, 3) in [-1, 1].

  The same stream as `stream_indices` describes (each epoch a permutation of
  the N images; a batch that straddles two epochs takes the end of one and
  the start of the next), with the permutation drawn by JAX from
  fold_in(key(seed), epoch): a pure function of (seed, first_batch), so a
  resumed run draws the same batches. Needs num_batches * batch_size <= N
  (the call then spans at most two epochs).
  """
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  n = images.shape[0]
  if num_batches * batch_size > n:
    raise ValueError(f'{num_batches} batches of {batch_size} need at least '
                     f'{num_batches * batch_size} images, the set has {n}')
  positions = ((first_batch + jnp.arange(num_batches))[:, None] * batch_size
               + jnp.arange(batch_size)[None, :])
  epochs = positions // n
  key = jax.random.key(seed)
  first = jax.random.permutation(jax.random.fold_in(key, epochs.min()), n)
  second = jax.random.permutation(jax.random.fold_in(key, epochs.min() + 1),
                                  n)
  indices = jnp.where(epochs == epochs.min(), first[positions % n],
                      second[positions % n])
  return images[indices].astype(jnp.float32) / 127.5 - 1.0
