"""Image sources (a folder, an npz, a tfds split), plain image lists, and
the decoded cache.

Three sources, chosen by `config.data` (exactly one must be set):
  * `folder`: a folder of .jpg/.jpeg/.png files, searched recursively and
    sorted by relative path, so the order (and thus every batch) does not
    depend on the file system's listing order.
  * `npz`: an .npz of uint8 images (N, H, W, 3), key 'images' or the file's
    only array.
  * `tfds_name`: a tensorflow-datasets split read with `tfds.data_source`
    (random access to ArrayRecord files, no TensorFlow needed).

A source reads image i, preprocessed (decoding.py), as uint8. The training
batches drawn from it are in pipeline.py; `load_all` decodes the whole set
once (for training with the data on the accelerator), into a cache file
that a record beside it ties to the files it was decoded from.
"""
import concurrent.futures
import hashlib
import json
import os
from typing import Any, Iterable

import numpy as np

from jaxinpaint.data import decoding


# ----------------------------------------------------------------------------
# Sources: random access to preprocessed uint8 images.


class _FolderSource:
  """Image files, decoded on access."""

  def __init__(self, folder: str):
    self.folder = folder
    self.paths = decoding.list_image_files(folder)

  def __len__(self) -> int:
    return len(self.paths)

  def read(self, index: int, resolution: int) -> np.ndarray:
    return decoding.decode_file(self.paths[index], resolution)

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
    return decoding.crop_resize_array(self.images[index], resolution)

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
    return decoding.crop_resize_array(example['image'], resolution)

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
# Plain image lists (inference inputs).


def load_images(paths: decoding.PathLike | Iterable[decoding.PathLike],
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
    ValueError: missing/empty folder; errors.CorruptImageError for an
      unreadable file.
  """
  if isinstance(paths, (str, os.PathLike)):
    paths = (decoding.list_image_files(paths) if os.path.isdir(paths)
             else [os.fspath(paths)])
  paths = [os.fspath(p) for p in paths]
  if not paths:
    raise ValueError('load_images: no image paths given')
  images = np.empty((len(paths), resolution, resolution, 3), np.uint8)
  for i, path in enumerate(paths):
    if not os.path.isfile(path):
      raise ValueError(f'image file {path!r} does not exist')
    images[i] = decoding.decode_file(path, resolution)
  names = [os.path.splitext(os.path.basename(p))[0] for p in paths]
  return decoding.to_float(images), names


# ----------------------------------------------------------------------------
# The whole set as one array (data on the accelerator).


def _files_digest(paths, root=None, times: bool = True) -> str:
  """SHA-256 over the names (relative to `root`), sizes and (`times`)
  modification times of `paths`: changes when a file is added, removed,
  renamed or rewritten, without reading any image."""
  digest = hashlib.sha256()
  for path in paths:
    st = os.stat(path)
    name = os.path.relpath(path, root) if root else os.path.abspath(path)
    line = f'{name}\0{st.st_size}' + (f'\0{st.st_mtime_ns}' if times else '')
    digest.update(f'{line}\n'.encode('utf-8', 'surrogateescape'))
  return digest.hexdigest()


def _source_files(source, times: bool = True) -> tuple[str, str]:
  """(origin, digest of its files) of a source: for a folder its image
  files, for an npz the file, for tfds nothing ('')."""
  if isinstance(source, _FolderSource):
    return (f'folder {os.path.abspath(source.folder)}',
            _files_digest(source.paths, source.folder, times))
  if isinstance(source, _ArraySource):
    return (f'npz {os.path.abspath(source.path)}',
            _files_digest([source.path], times=times))
  # tfds: prepared files that a name and split identify
  return f'tfds {source.label}', ''


def cache_record(source, resolution: int) -> dict:
  """What a decoded cache is made from: the source, its image count, a
  digest of its files (folder, npz) and the resolution."""
  origin, files = _source_files(source)
  return {'source': origin, 'count': len(source), 'files_sha256': files,
          'resolution': resolution}


def listing_record(source) -> dict:
  """What a training run reads: the source, its image count and a digest
  of its files' names and sizes (folder, npz), saved with the run so a
  resume can tell that the data changed. Without the modification times
  the cache's record has: a copy of the same files (another host, a
  restored backup) is the same data."""
  origin, files = _source_files(source, times=False)
  return {'source': origin, 'count': len(source), 'files_sha256': files}


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
  problem = _cache_mismatch(saved, record)
  if problem:
    raise ValueError(f'{label}: {problem}; delete it (it is rebuilt) or '
                     'point to another file')


def _cache_mismatch(saved: dict, record: dict) -> str | None:
  """What differs between a cache's saved record and this run's, as a
  clause (None: nothing). The most telling difference first: another
  source or resolution, then another image count, then other files."""
  theirs = saved.get
  if theirs('source') != record['source']:
    return (f'it was decoded from {theirs("source")}, this run reads '
            f'{record["source"]}')
  if theirs('resolution') != record['resolution']:
    return (f'it was decoded at resolution {theirs("resolution")}, this run '
            f'uses {record["resolution"]}')
  if theirs('count') != record['count']:
    return (f'it holds {theirs("count")} images, {record["source"]} has '
            f'{record["count"]} now')
  if theirs('files_sha256') != record['files_sha256']:
    # Only a digest is kept: which file changed cannot be told.
    return (f'{record["source"]} changed since it was decoded (a file added, '
            'removed, renamed or rewritten: other names, sizes or '
            'modification times)')
  return None


def load_all(data_config: Any, resolution: int, source=None) -> np.ndarray:
  """Every image of the source as uint8 (N, R, R, 3), decoded once.

  With `data_config.cache` set to a .npy path, a decoded array there is
  memory-mapped instead of decoding again, and a missing one is written
  (atomically) for the next run, with `<cache>.json` beside it saying what
  it was decoded from (`cache_record`): a cache of another source, another
  version of its files or another resolution is refused, never used.
  `source`: as for `pipeline.make_batch_iterator`.
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
    for i in range(lo, min(lo + decoding.IMAGES_PER_TASK, len(source))):
      images[i] = source.read(i, resolution)

  workers = max(1, getattr(data_config, 'num_threads', 8))
  with concurrent.futures.ThreadPoolExecutor(workers) as pool:
    list(pool.map(fill, range(0, len(source), decoding.IMAGES_PER_TASK)))
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
