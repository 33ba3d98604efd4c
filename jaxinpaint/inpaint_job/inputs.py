"""Inputs of a completion run, checked before any computation, then read on
demand a batch at a time (`Rows` readers: memory bounded by the batch).

Images (files, folders, tfds splits), masks, the example images in the
package, and the bounds of the numeric flags. Every check raises
`InputError` with one line naming the file or flag and what was expected.
Nothing here starts JAX (`--help` and input errors stay fast). Models are
found and loaded by `loading`.
"""
import os
import re
import sys
from pathlib import Path

import numpy as np
from ml_collections import ConfigDict

from jaxinpaint import data, errors
from jaxinpaint.data import decoding, masks
from jaxinpaint.errors import InputError
from jaxinpaint.models.loading import ASSETS

EXAMPLES = ASSETS / 'examples'  # example faces, digits, masks, a reference
# Bounds of --steps (the paper uses 1000: a larger count is a typo that would
# run for days) and --seed (jax.random.key takes 32-bit seeds).
MAX_STEPS = 1_000_000
SEED_LIMIT = 2**32
# Notes that concern many images list this many names, then a count.
MAX_NAMES = 5
# A mask with this fraction of hole or more is more likely inverted than
# meant: it leaves the model almost no context.
MOSTLY_HOLE = 0.9


def note(message: str):
  """A note or warning for the user: stderr, where progress bars go too."""
  print(message, file=sys.stderr)


def names_list(names) -> str:
  """'a, b, c, d, e and 3 more'."""
  shown = ', '.join(names[:MAX_NAMES])
  more = len(names) - MAX_NAMES
  return shown + (f' and {more} more' if more > 0 else '')


def check_counts(limit=None, seed=0, **positive):
  """--steps, --limit, --seed, ... in range, else a InputError naming it.

  `positive` maps flag names (underscores for dashes) to values >= 1.
  """
  for flag, value in positive.items():
    if value < 1:
      raise InputError(f'--{flag.replace("_", "-")} must be >= 1, got {value}')
  if positive.get('steps', 1) > MAX_STEPS:
    raise InputError(f'--steps must be <= {MAX_STEPS}, got {positive["steps"]}')
  if limit is not None and limit < 1:
    raise InputError(f'--limit must be >= 1, got {limit}')
  if not 0 <= seed < SEED_LIMIT:
    raise InputError(f'--seed must be >= 0 and < 2**32, got {seed}')


# ----------------------------------------------------------------------------
# Images.


def inspect_image(path, what: str = 'image'):
  """(width, height), mode of an image file, from its header; an image over
  Pillow's decompression-bomb limit is refused before it is decoded
  (errors.ImageTooLargeError, naming `what` and the file)."""
  try:
    with decoding.open_image(path, f'{what} {path}') as img:
      return data.upright_size(img), img.mode
  except errors.ImageTooLargeError:
    raise
  except (OSError, SyntaxError, ValueError) as e:
    raise errors.CorruptImageError(
        f'cannot read image {path}: {type(e).__name__}: {e}') from e


def _conversion_note(mode: str):
  if mode == 'RGB':
    return None
  if mode in ('RGBA', 'LA', 'PA', 'RGBa', 'La'):
    return f'converted {mode} to RGB (alpha channel dropped)'
  if mode in ('1', 'L', 'I', 'F') or mode.startswith('I;16'):
    return f'converted greyscale ({mode}) to RGB'
  return f'converted {mode} to RGB'


def load_image_files(paths, resolution: int, what: str = 'image'):
  """Decodes a few image files (a reference) that must be resolution x
  resolution already: (float32 (N, R, R, 3) in [-1, 1], stems)."""
  files = check_image_files(paths, resolution, what)
  return files.read_all(), files.names


class Rows:
  """Rows of an image set read on demand: `len()` and `read(rows)` (the
  rows reader of `batched.inpaint_batches`)."""

  def read_all(self) -> np.ndarray:
    """Every row at once: for small sets (memory grows with the count)."""
    return self.read(np.arange(len(self)))


class ImageFiles(Rows):
  """Image files read on demand: `read(rows)` decodes those rows only, so a
  run holds a batch or two of images whatever their number (the rows
  reader of `batched.inpaint_batches`)."""

  def __init__(self, paths, resolution: int):
    self.paths, self.resolution = [str(p) for p in paths], resolution
    self.names = [Path(p).stem for p in self.paths]

  def __len__(self):
    return len(self.paths)

  def read(self, rows) -> np.ndarray:
    """float32 (len(rows), R, R, 3) in [-1, 1]."""
    return data.load_images([self.paths[i] for i in rows],
                            self.resolution)[0]


def check_image_files(paths, resolution: int, what: str = 'image',
                      progress: bool = False) -> ImageFiles:
  """Checks that every file exists, is resolution x resolution and decodes
  whole (each is decoded once and dropped: a truncated file is refused
  before anything is written, in bounded memory), then returns them as an
  `ImageFiles`. Prints one note per kind of colour conversion."""
  import tqdm  # pylint: disable=g-import-not-at-top
  converted = {}
  for path in tqdm.tqdm(paths, desc=f'checking {what}s', unit=what,
                        leave=False, disable=not progress):
    if os.path.isdir(path):
      raise InputError(f'{what} {path} is a folder, not an image file; '
                       'give one image file')
    if not os.path.isfile(path):
      raise InputError(f'{what} file {path} does not exist')
    (w, h), mode = inspect_image(path, what)
    if (w, h) != (resolution, resolution):
      raise InputError(
          f'{what} {path} is {w}x{h} but the model works at '
          f'{resolution}x{resolution}; crop or resize it to '
          f'{resolution}x{resolution} first (inpaint.py never resizes, so '
          'outputs stay aligned with inputs and masks)')
    mode_note = _conversion_note(mode)
    if mode_note:
      converted.setdefault(mode_note, []).append(os.path.basename(path))
    data.load_images([path], resolution)  # decodes whole, or names the file
  for mode_note, files in converted.items():
    note(f'note: {mode_note}: {names_list(files)}')
  return ImageFiles(paths, resolution)


class TfdsImages(Rows):
  """The first `count` images of a tfds split, read on demand: center-cropped
  and resized to R by the training reader (`data.open_source`)."""

  def __init__(self, source, count: int, resolution: int):
    self.source, self.count, self.resolution = source, count, resolution

  def __len__(self):
    return self.count

  def read(self, rows) -> np.ndarray:
    uint8 = np.stack([self.source.read(int(i), self.resolution)
                      for i in rows])
    return uint8.astype(np.float32) / np.float32(127.5) - np.float32(1)


_SAFE_NAME = re.compile(r'[^A-Za-z0-9_.-]+')


def load_tfds(spec: str, resolution: int, limit=None):
  """`tfds:NAME:SPLIT` -> (`TfdsImages`, names), never downloaded."""
  parts = spec.split(':', 2)
  if len(parts) != 3 or not parts[1] or not parts[2]:
    raise InputError(f'--input {spec}: expected tfds:NAME:SPLIT, e.g. '
                     'tfds:celeb_a:test')
  _, name, split = parts
  try:
    source = data.open_source(ConfigDict(dict(tfds_name=name, split=split)))
    count = len(source) if limit is None else min(limit, len(source))
    images = TfdsImages(source, count, resolution)
    images.read([0])  # a split without an "image" feature fails here
  except (ImportError, ValueError) as e:  # not prepared; no "image" feature
    raise InputError(f'--input {spec}: {e}') from e
  prefix = _SAFE_NAME.sub('_', f'{name}_{split}')
  return images, [f'{prefix}_{i:05d}' for i in range(count)]


def load_inputs(spec: str, resolution: int, limit=None, out=None):
  """--input (a file, a folder or tfds:NAME:SPLIT) -> (rows reader of
  float32 (N, R, R, 3) in [-1, 1] (`ImageFiles` or `TfdsImages`), names);
  names must be unique, they name the outputs. Every file is checked here;
  images are decoded again batch by batch when read.

  A folder's files that are not images are counted in a note, and the
  output folder `out`, if it is inside it, is skipped (so that --resume
  does not take the outputs for inputs).
  """
  if spec.startswith('tfds:'):
    return load_tfds(spec, resolution, limit)
  path = Path(spec)
  if path.is_dir():
    others = []
    paths = data.list_image_files(path, skip=out, others=others)
    if out is not None and Path(out).is_dir() and (
        path.resolve() in Path(out).resolve().parents):
      note(f'note: --input {spec}: skipping {out}/ inside it (the outputs)')
    if others:
      note(f'note: --input {spec}: skipped {len(others)} '
           f'file{"s" * (len(others) != 1)} that '
           f'{"are" if len(others) != 1 else "is"} not an image '
           f'({names_list(sorted(os.path.basename(f) for f in others))}; '
           f'images are {", ".join(data.IMAGE_EXTENSIONS)})')
  elif path.is_file():
    paths = [str(path)]
  else:
    raise InputError(f'--input {spec}: no such file or folder')
  if limit is not None:
    paths = paths[:limit]
  seen = {}
  for p in paths:
    n = Path(p).stem
    if n in seen:
      raise InputError(f'two inputs are named {n!r} ({seen[n]} and {p}): '
                       'their outputs would collide; rename one')
    seen[n] = p
  images = check_image_files(paths, resolution, progress=len(paths) > 1000)
  return images, images.names


# ----------------------------------------------------------------------------
# Masks.


class MaskFiles(Rows):
  """Mask files read on demand (`read(rows)`): float32 (K, R, R, 1)."""

  def __init__(self, paths, resolution: int):
    self.paths, self.resolution = [str(p) for p in paths], resolution

  def __len__(self):
    return len(self.paths)

  def read(self, rows) -> np.ndarray:
    r = self.resolution
    return np.concatenate([masks.load_mask(self.paths[i], r, r)
                           for i in rows])


class GeneratedMasks(Rows):
  """Random masks of a kind, drawn per (seed, image index) on demand."""

  def __init__(self, kind: str, count: int, resolution: int, seed: int):
    self.kind, self.count, self.resolution, self.seed = (kind, count,
                                                         resolution, seed)

  def __len__(self):
    return self.count

  def read(self, rows) -> np.ndarray:
    r = self.resolution
    return masks.make_masks(self.kind, len(rows), r, r, self.seed,
                            indices=np.asarray(rows))


def load_masks(arg: str, names, resolution: int, seed: int):
  """--mask (a kind, a file or a folder by image stem) -> one mask
  (1, R, R, 1) for every image, or a rows reader of N masks (`MaskFiles`,
  `GeneratedMasks`); float32, 1 = known."""
  r = resolution
  if arg in ('center', 'three_squares'):
    return masks.make_masks(arg, 1, r, r)  # one layout, broadcast
  if arg in masks.MASK_KINDS:
    return GeneratedMasks(arg, len(names), r, seed)
  path = Path(arg)
  if path.is_file():
    return masks.load_mask(str(path), r, r)
  if not path.is_dir():
    raise InputError(f'--mask {arg}: not one of '
                     f'{", ".join(masks.MASK_KINDS)}, nor a mask image file '
                     'or folder')
  by_stem = {}
  for f in data.list_image_files(path):
    stem = Path(f).stem
    if stem in by_stem:
      raise InputError(f'--mask {arg}: two masks for {stem!r} '
                       f'({by_stem[stem]} and {f})')
    by_stem[stem] = f
  missing = [n for n in names if n not in by_stem]
  if missing:
    raise InputError(f'--mask {arg}: no mask for image {missing[0]!r} '
                     f'(expected {path / missing[0]}.png)'
                     + (f' and {len(missing) - 1} more' if len(missing) > 1
                        else ''))
  return MaskFiles([by_stem[n] for n in names], r)


def known_fractions(mask, chunk: int = 256) -> np.ndarray:
  """The fraction of known pixels of each mask (K,), read `chunk` masks at
  a time: one array (1 or N rows) or a rows reader. Reading checks that
  every mask file decodes (naming the file otherwise)."""
  read = mask.read if hasattr(mask, 'read') else (lambda rows: mask[rows])
  pieces = [(read(np.arange(start, min(start + chunk, len(mask)))) > 0.5)
            .mean(axis=(1, 2, 3)) for start in range(0, len(mask), chunk)]
  return np.concatenate(pieces)


def mask_notes(mask, names, conditional: bool):
  """Notes for masks with nothing to fill, warnings for masks without
  context (`mask` as `known_fractions` takes it)."""
  known = known_fractions(mask)
  all_known, no_known = known == 1, known == 0
  if len(known) == 1:
    label = lambda idx: 'the mask'
  else:
    label = lambda idx: f'{names_list([names[i] for i in idx])}: the mask'
  idx = np.flatnonzero(all_known)
  if len(idx):
    what = ('keeps everything from the input' if conditional
            else 'has no hole: nothing to fill')
    note(f'note: {label(idx)} {what}; the output equals the input')
  hole = 1 - known
  idx = np.flatnonzero((hole >= MOSTLY_HOLE) & ~no_known)
  if len(idx) and not conditional:
    note(f'warning: {label(idx)} is {100 * hole[idx].max():.0f}% hole: in '
         'mask files white = known and black = hole; is the mask inverted?')
  idx = np.flatnonzero(no_known)
  if len(idx):
    if conditional:
      note(f'warning: {label(idx)} keeps nothing from the input: the result '
           'follows the reference only')
    else:
      note(f'warning: {label(idx)} has no known pixel (all hole): there is '
           'no context, the result is pure generation from the model')
