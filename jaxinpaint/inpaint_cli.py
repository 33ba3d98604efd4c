"""`inpaint.py` / `jaxinpaint-inpaint`: fill the holes of images with a model.

A thin layer over `pipeline` and `completion`: parse flags, check every
input and output path before any computation (so a bad run writes nothing),
complete, and write each batch's PNGs and metrics as soon as it is done (so
an interrupted run keeps them), then a grid and a summary. Expected failures
end with one `error: ...` line on stderr and exit code 2 (bad flags or
inputs), 1 (the computation or a write went wrong) or 130 (Ctrl-C); notes
and warnings also go to stderr.
"""
import argparse
import csv
import dataclasses
import json
import os
import re
import sys
from pathlib import Path

import numpy as np
from PIL import Image

import jaxinpaint
# No JAX behind these two: `--help` and input errors stay fast.
from jaxinpaint import data, masks

ASSETS = Path(jaxinpaint.__file__).parent / 'assets'  # the shipped models
DEFAULT_CHECKPOINT = ASSETS / 'celeba64'
DEFAULT_INPUT = 'examples/faces'
PAPER_STEPS = 1000
CPU_DEFAULT_STEPS = 200
# Bounds of --steps (the paper uses 1000: a larger count is a typo that would
# run for days) and --seed (jax.random.key takes 32-bit seeds).
MAX_STEPS = 1_000_000
SEED_LIMIT = 2**32
GRID_FILE, RAW_DIR = 'grid.png', 'raw'
METRICS_FILE, SUMMARY_FILE = 'metrics.csv', 'summary.json'
# Notes that concern many images list this many names, then a count.
_MAX_NAMES = 5

_DESCRIPTION = """\
Fills the holes of images with a trained jaxinpaint model (semantic image
completion, Vitoria et al., paper section 3.2): for each image a latent z is
searched so that G(z) matches the known pixels and their gradients and looks
real to the critics; G(z) then fills the hole and is Poisson-blended in.

Masks: 1 = known pixel, 0 = hole. In mask image files WHITE = KNOWN and
BLACK = HOLE (grey values >= 50% count as known); a mask file must have the
images' size exactly.

Images must already have the model's resolution (64x64 for the shipped
CelebA model): they are never resized, so outputs align with inputs and
masks. Greyscale and RGBA images are converted to RGB (alpha dropped).
"""

_EPILOG = """\
outputs (under --out):
  <name>.png        the completed image (Poisson-blended, uint8 PNG)
  raw/<name>.png    M*y + (1-M)*G(z), without blending
  grid.png          one row per image: masked input (holes grey)
                    [| reference] | G(z) | blended [| original]
  metrics.csv       with --evaluate: name, mse, psnr, ssim, hole_mse
  summary.json      with --evaluate: mse, psnr (10*log10(255^2/mean MSE),
                    as in the paper's tables), psnr_mean, ssim, hole_mse,
                    n_images, and the run's settings
Metrics are computed on the uint8 [0, 255] values of the written PNGs. An
existing output file is never replaced without --overwrite, and an output
path that is one of the input files (images, masks, reference) is refused.
Images and metrics rows are written as each batch finishes: after Ctrl-C
(exit code 130) or a failed write, rerun with --resume to do the rest. In
metrics.csv and summary.json, bytes of a file name that are not UTF-8 are
written as \\xNN.

examples:
  inpaint.py --input photos/ --mask masks/ --out filled
  inpaint.py --input ../shared/data/celeba64/test --limit 64 --evaluate \\
      --mask three_squares --checkpoint runs/celeba64
  inpaint.py --input face.png --reference other_face.png --mask center
"""


class UserError(Exception):
  """A bad flag, input or output path: one line on stderr, exit code 2."""


class _RunError(Exception):
  """The computation or a write failed: one line on stderr, exit code 1.

  Raised out of the progress bar's loop, so that the bar is closed first.
  """


def build_parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(
      description=_DESCRIPTION, epilog=_EPILOG,
      formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument(
      '--checkpoint', metavar='DIR', default=None,
      help='model directory: a training --workdir or an exported model, or '
      'the name of a model shipped in the package: celeba64 (the default; '
      'CelebA 64x64 WGAN), celeba64_dcgan (the Yeh et al. baseline), '
      'cifar32 (CIFAR-10 32x32 WGAN).')
  p.add_argument(
      '--input', default=DEFAULT_INPUT, metavar='SRC',
      help='an image file, a folder of images (.png/.jpg/.jpeg, searched '
      'recursively, sorted), or tfds:NAME:SPLIT (a tensorflow-datasets split; '
      'its images are center-cropped and resized to the model resolution). '
      f'Default: {DEFAULT_INPUT}.')
  p.add_argument(
      '--mask', default='center', metavar='MASK',
      help=f'{"|".join(masks.MASK_KINDS)} or PATH. center: the middle half '
      'of each side; three_squares: eyes and mouth of an aligned face; '
      'random: 1-3 rectangles; free_form: brush strokes (random kinds '
      'depend on --seed and the image index). PATH: one mask image for all '
      'images, or a folder with one mask per image, matched by file stem '
      '(face1.jpg <- face1.png). White = known, black = hole. Default: '
      'center.')
  p.add_argument(
      '--reference', metavar='IMG', default=None,
      help='conditional completion (paper 3.3): the inputs are the faces y1 '
      'to change, IMG is the reference y2, and the mask marks what is KEPT '
      'from y1 (white); the black region takes its structure from IMG. '
      '--loss does not apply.')
  p.add_argument('--steps', type=int, default=None,
                 help='Adam iterations on z (default: 1000, the paper, on a '
                 f'GPU/TPU; {CPU_DEFAULT_STEPS} on a CPU, where 1000 steps '
                 'take tens of minutes).')
  p.add_argument('--restarts', type=int, default=1,
                 help='random initializations of z per image; the one with '
                 'the lowest final loss is kept (default: 1).')
  p.add_argument('--batch-size', type=int, default=64,
                 help='images optimized together in one compiled call '
                 '(default: 64). Each image keeps its own random start, so '
                 'results do not depend on it (up to float rounding).')
  p.add_argument('--loss', default=None, choices=('paper', 'yeh',
                                                  'yeh_gradient'),
                 help='paper: alpha=0.1 values, beta=0.9 gradients, eta=0.5 '
                 'critics (D + Dp); yeh: Yeh et al. (values + 0.003 prior); '
                 'yeh_gradient: Yeh et al. plus the gradient term. '
                 'Default: paper.')
  p.add_argument('--seed', type=int, default=0,
                 help='seed of the initial latents and random masks '
                 '(default: 0); the same seed gives the same outputs.')
  p.add_argument('--out', default='inpainted', metavar='DIR',
                 help='output folder (default: inpainted).')
  p.add_argument('--evaluate', action='store_true',
                 help='the inputs are complete images: damage them with the '
                 'masks, complete them and report MSE, PSNR, SSIM and '
                 'hole-only MSE against the originals (metrics.csv, '
                 'summary.json). Without it the inputs are the damaged '
                 'images themselves (hole pixels are ignored).')
  p.add_argument('--overwrite', action='store_true',
                 help='replace existing output files.')
  p.add_argument('--resume', action='store_true',
                 help='complete an interrupted run (same flags): skip the '
                 'images whose outputs are already in --out (<name>.png and '
                 'raw/<name>.png, and for the first --grid-max images also '
                 'grid.png), complete the others, and extend metrics.csv '
                 '(the skipped images\' rows are recomputed from their PNGs) '
                 'and rewrite summary.json.')
  p.add_argument('--limit', type=int, default=None, metavar='N',
                 help='use only the first N images.')
  p.add_argument('--no-blend', action='store_true',
                 help='skip Poisson blending: <name>.png is then '
                 'M*y + (1-M)*G(z), like raw/<name>.png.')
  p.add_argument('--grid-max', type=int, default=64, metavar='N',
                 help='rows of grid.png: the first N images (default: 64).')
  return p


def _error(message: str, code: int = 2):
  print(f'error: {message}', file=sys.stderr)
  raise SystemExit(code)


def _note(message: str):
  print(message, file=sys.stderr)


def _names_list(names) -> str:
  shown = ', '.join(names[:_MAX_NAMES])
  more = len(names) - _MAX_NAMES
  return shown + (f' and {more} more' if more > 0 else '')


# ----------------------------------------------------------------------------
# Checking inputs (no JAX computation happens here).


def add_bench_flags(p: argparse.ArgumentParser, item: str = 'image') -> None:
  """The latent-search and output flags that the bench/ scripts share."""
  p.add_argument('--steps', type=int, default=1000,
                 help='Adam iterations on z (default: 1000, the paper).')
  p.add_argument('--restarts', type=int, default=1,
                 help=f'random initializations of z per {item} (default: 1).')
  p.add_argument('--batch-size', type=int, default=64,
                 help=f'{item}s completed together in one compiled call '
                 '(default: 64).')
  p.add_argument('--seed', type=int, default=0,
                 help='seed of the initial latents (default: 0).')
  p.add_argument('--out', default=None, metavar='DIR',
                 help='output folder (default: docs/results in the repo).')
  p.add_argument('--overwrite', action='store_true',
                 help='replace existing output files.')
  p.add_argument('--no-progress', action='store_true',
                 help='no progress bars.')


def check_counts(args, **positive):
  """--steps, --limit, --seed, ... in range, else a UserError naming it."""
  for flag, value in positive.items():
    if value < 1:
      raise UserError(f'--{flag.replace("_", "-")} must be >= 1, got {value}')
  if positive.get('steps', 1) > MAX_STEPS:
    raise UserError(f'--steps must be <= {MAX_STEPS}, got {positive["steps"]}')
  if args.limit is not None and args.limit < 1:
    raise UserError(f'--limit must be >= 1, got {args.limit}')
  if not 0 <= args.seed < SEED_LIMIT:
    raise UserError(f'--seed must be >= 0 and < 2**32, got {args.seed}')


def _check_flags(args):
  check_counts(args, steps=1 if args.steps is None else args.steps,
               restarts=args.restarts, batch_size=args.batch_size,
               grid_max=args.grid_max)
  if args.reference and args.evaluate:
    raise UserError('--evaluate cannot be combined with --reference: a '
                    'conditional completion has no ground truth to compare to')
  if args.resume and args.overwrite:
    raise UserError('--resume keeps the finished outputs and --overwrite '
                    'replaces them: pass one of them')


def _shipped_names():
  return sorted(p.name for p in ASSETS.iterdir() if p.is_dir()) if (
      ASSETS.is_dir()) else []


def _model_dir(arg):
  """The checkpoint directory and its config (cheap: no arrays loaded)."""
  from jaxinpaint import checkpoint
  if arg is None:
    model_dir = DEFAULT_CHECKPOINT
    if not model_dir.is_dir():
      raise UserError(f'no shipped model is installed (nothing at '
                      f'{model_dir}); pass --checkpoint DIR (a training '
                      'workdir or an exported model)')
  else:
    model_dir = Path(arg)
    if not model_dir.is_dir() and Path(arg).name == arg:
      model_dir = ASSETS / arg  # a shipped model's name
    if not model_dir.is_dir():
      raise UserError(f'--checkpoint {arg}: no such directory (nor a shipped '
                      f'model: {", ".join(_shipped_names())})')
  try:
    config = checkpoint.load_config(model_dir)
  except (FileNotFoundError, ValueError) as e:  # ValueError: bad JSON
    raise UserError(str(e)) from e
  step = checkpoint.latest_step(model_dir)
  if step is None:
    raise UserError(f'{model_dir}: not a jaxinpaint model directory (no '
                    f'checkpoint under {checkpoint.CHECKPOINT_DIR}/)')
  if step == 0:
    raise UserError(f'{model_dir}: its checkpoint is from step 0, a model '
                    'that never trained (its completions would be noise); '
                    'train it, or pass another --checkpoint')
  return model_dir, config


def _inspect_image(path: str):
  """(width, height), mode of an image file, from its header."""
  try:
    with Image.open(path) as img:
      return img.size, img.mode
  except (OSError, SyntaxError, ValueError) as e:
    raise data.CorruptImageError(
        f'cannot read image {path}: {type(e).__name__}: {e}') from e


def _conversion_note(mode: str):
  if mode == 'RGB':
    return None
  if mode in ('RGBA', 'LA', 'PA', 'RGBa', 'La'):
    return f'converted {mode} to RGB (alpha channel dropped)'
  if mode in ('1', 'L', 'I', 'F') or mode.startswith('I;16'):
    return f'converted greyscale ({mode}) to RGB'
  return f'converted {mode} to RGB'


def _load_files(paths, resolution: int, what: str = 'image'):
  """Decodes image files that must be resolution x resolution already.

  Returns (float32 (N, R, R, 3) in [-1, 1], stems). Prints one note per kind
  of colour conversion.
  """
  converted = {}
  for path in paths:
    if not os.path.isfile(path):
      raise UserError(f'{what} file {path} does not exist')
    (w, h), mode = _inspect_image(path)
    if (w, h) != (resolution, resolution):
      raise UserError(
          f'{what} {path} is {w}x{h} but the model works at '
          f'{resolution}x{resolution}; crop or resize it to '
          f'{resolution}x{resolution} first (inpaint.py never resizes, so '
          'outputs stay aligned with inputs and masks)')
    note = _conversion_note(mode)
    if note:
      converted.setdefault(note, []).append(os.path.basename(path))
  images, names = data.load_images(paths, resolution)
  for note, files in converted.items():
    _note(f'note: {note}: {_names_list(files)}')
  return images, names


_SAFE_NAME = re.compile(r'[^A-Za-z0-9_.-]+')


def _load_tfds(spec: str, resolution: int, limit):
  """`tfds:NAME:SPLIT` -> (images, names); center-crop + resize to R."""
  parts = spec.split(':', 2)
  if len(parts) != 3 or not parts[1] or not parts[2]:
    raise UserError(f'--input {spec}: expected tfds:NAME:SPLIT, e.g. '
                    'tfds:celeb_a:test')
  _, name, split = parts
  try:
    # As in training: never downloads (an unprepared set is an error that
    # says how to prepare it), and every failure is one line.
    # pylint: disable-next=protected-access
    source = data._TfdsSource(name, split, None)
  except (ImportError, ValueError) as e:
    raise UserError(f'--input {spec}: {e}') from e
  count = len(source) if limit is None else min(limit, len(source))
  try:
    images = np.stack([source.read(i, resolution) for i in range(count)])
  except ValueError as e:  # no "image" feature
    raise UserError(f'--input {spec}: {e}') from e
  images = data._to_float(images)  # pylint: disable=protected-access
  prefix = _SAFE_NAME.sub('_', f'{name}_{split}')
  return images, [f'{prefix}_{i:05d}' for i in range(count)]


def _load_inputs(spec: str, resolution: int, limit):
  """--input -> (float32 (N, R, R, 3) in [-1, 1], names)."""
  if spec.startswith('tfds:'):
    return _load_tfds(spec, resolution, limit)
  path = Path(spec)
  if path.is_dir():
    paths = data.list_image_files(path)
  elif path.is_file():
    paths = [str(path)]
  else:
    raise UserError(f'--input {spec}: no such file or folder')
  if limit is not None:
    paths = paths[:limit]
  images, names = _load_files(paths, resolution)
  seen = {}
  for p, n in zip(paths, names):
    if n in seen:
      raise UserError(f'two inputs are named {n!r} ({seen[n]} and {p}): '
                      'their outputs would collide; rename one')
    seen[n] = p
  return images, names


def _load_masks(arg: str, names, resolution: int, seed: int):
  """(1 or N, R, R, 1) float32 masks, 1 = known."""
  r = resolution
  if arg in ('center', 'three_squares'):
    return masks.make_masks(arg, 1, r, r)  # one layout, broadcast
  if arg in masks.MASK_KINDS:
    return masks.make_masks(arg, len(names), r, r, seed)
  path = Path(arg)
  if path.is_file():
    return masks.load_mask(str(path), r, r)
  if not path.is_dir():
    raise UserError(f'--mask {arg}: not one of '
                    f'{", ".join(masks.MASK_KINDS)}, nor a mask image file or '
                    'folder')
  by_stem = {}
  for f in data.list_image_files(path):
    stem = Path(f).stem
    if stem in by_stem:
      raise UserError(f'--mask {arg}: two masks for {stem!r} ({by_stem[stem]} '
                      f'and {f})')
    by_stem[stem] = f
  missing = [n for n in names if n not in by_stem]
  if missing:
    raise UserError(f'--mask {arg}: no mask for image {missing[0]!r} (expected '
                    f'{path / missing[0]}.png)'
                    + (f' and {len(missing) - 1} more' if len(missing) > 1
                       else ''))
  return np.concatenate([masks.load_mask(by_stem[n], r, r) for n in names])


def _mask_notes(mask, names, conditional: bool):
  """Notes for masks with nothing to fill, warnings for masks without context.
  """
  known = (mask > 0.5).reshape(len(mask), -1)
  all_known, no_known = known.all(axis=1), ~known.any(axis=1)
  if len(mask) == 1:
    label = lambda idx: 'the mask'
  else:
    label = lambda idx: f'{_names_list([names[i] for i in idx])}: the mask'
  idx = np.flatnonzero(all_known)
  if len(idx):
    what = ('keeps everything from the input' if conditional
            else 'has no hole: nothing to fill')
    _note(f'note: {label(idx)} {what}; the output equals the input')
  idx = np.flatnonzero(no_known)
  if len(idx):
    if conditional:
      _note(f'warning: {label(idx)} keeps nothing from the input: the result '
            'follows the reference only')
    else:
      _note(f'warning: {label(idx)} has no known pixel (all hole): there is '
            'no context, the result is pure generation from the model')


def _output_paths(out: Path, names, evaluate: bool):
  paths = [out / f'{n}.png' for n in names]
  paths += [out / RAW_DIR / f'{n}.png' for n in names]
  paths.append(out / GRID_FILE)
  if evaluate:
    paths += [out / METRICS_FILE, out / SUMMARY_FILE]
  return paths


def _file_id(path):
  """The file behind `path`, symlinks resolved: equal for two names of it."""
  st = os.stat(path)
  return st.st_dev, st.st_ino


def _input_files(args) -> dict:
  """{file id: 'image PATH'} of the files the run reads: the images (the
  whole --input folder), mask files and the reference."""
  files = []
  if not args.input.startswith('tfds:'):
    path = Path(args.input)
    files += [('image', p) for p in (data.list_image_files(path)
                                     if path.is_dir() else [path])]
  if args.mask not in masks.MASK_KINDS:
    path = Path(args.mask)
    files += [('mask', p) for p in (data.list_image_files(path)
                                    if path.is_dir() else [path])]
  if args.reference is not None:
    files.append(('reference', args.reference))
  return {_file_id(p): f'{what} {p}' for what, p in files}


def _check_writable(out: Path):
  """--out and --out/raw can be made and written to: checked before any
  work, so a run does not fail at its end."""
  raw = out / RAW_DIR
  for folder in (out, raw):
    if folder.exists() and not folder.is_dir():
      raise UserError(f'--out {out}: {folder} exists and is not a folder')
  absolute = out.absolute()
  existing = next(p for p in (absolute, *absolute.parents) if p.exists())
  if not existing.is_dir():
    raise UserError(f'--out {out}: {existing} is not a folder')
  for folder in (existing, raw) if raw.is_dir() else (existing,):
    if not os.access(folder, os.W_OK | os.X_OK):
      raise UserError(f'--out {out}: {folder} is not writable')


def _finished(out: Path, names, grid_max: int) -> np.ndarray:
  """--resume: which images an earlier run wrote completely, bool (N,).

  An image is finished when both its PNGs exist. The first --grid-max
  images also need grid.png, which is written once all of them are done:
  their G(z) is in no file, so without the grid they are all done again.
  """
  done = np.array([(out / f'{n}.png').is_file()
                   and (out / RAW_DIR / f'{n}.png').is_file() for n in names])
  rows = min(len(names), grid_max)
  if not (done[:rows].all() and (out / GRID_FILE).is_file()):
    done[:rows] = False
  return done


def _check_outputs(out: Path, names, args, inputs: dict) -> np.ndarray:
  """Refuses outputs that are input files, and (without --overwrite or
  --resume) existing ones; returns which images --resume skips."""
  if Path(GRID_FILE).stem in names:
    raise UserError(f'an input image is named {Path(GRID_FILE).stem!r}: its '
                    f'output would collide with {out / GRID_FILE}; rename it')
  targets = _output_paths(out, names, args.evaluate)
  # Whatever the flags: --overwrite would destroy the input, and --resume
  # would take it for a finished output.
  for t in targets:
    if t.exists() and _file_id(t) in inputs:
      raise UserError(f'{t} is an input ({inputs[_file_id(t)]}): writing '
                      'there would destroy it; choose another --out')
  if args.resume:
    return _finished(out, names, args.grid_max)
  if not args.overwrite:
    for t in targets:
      if t.exists():
        raise UserError(f'{t} already exists; pass --overwrite to replace '
                        'it, or choose another --out')
  return np.zeros(len(names), bool)


def _read_finished(out: Path, names, done, resolution: int) -> np.ndarray:
  """--resume --evaluate: the finished images' PNGs, uint8 (K, R, R, 3)."""
  arrays = []
  for i in np.flatnonzero(done):
    path = out / f'{names[i]}.png'
    (w, h), _ = _inspect_image(path)
    if (w, h) != (resolution, resolution):
      raise UserError(f'--resume: {path} is {w}x{h}, not {resolution}x'
                      f'{resolution}: not an output of this model')
    with Image.open(path) as img:
      arrays.append(np.asarray(img.convert('RGB')))
  return np.stack(arrays)


# ----------------------------------------------------------------------------
# Writing.


def _text(name) -> str:
  """A file name or path as text that any UTF-8 file or terminal takes:
  bytes that are not UTF-8 (surrogate escapes in Python) become \\xNN."""
  return os.fsencode(name).decode('utf-8', 'backslashreplace')


def _write_json(path: Path, obj):
  tmp = path.with_name(f'.{path.name}.tmp')
  try:
    tmp.write_text(json.dumps(obj, indent=2) + '\n')
    os.replace(tmp, path)
  except BaseException:
    tmp.unlink(missing_ok=True)
    raise


_METRIC_KEYS = ('mse', 'psnr', 'ssim', 'hole_mse')


class _Writer:
  """Writes each batch as soon as it is completed, so an interrupted or
  failed run keeps the finished ones: its PNGs, grid.png once the grid's
  rows are all done, and its rows of metrics.csv (with --evaluate)."""

  def __init__(self, args, inputs, keep, finished_metrics):
    self.args, self.inputs, self.keep = args, inputs, keep
    self.out, n = inputs.out, len(inputs.names)
    self.complete = int(inputs.done.sum())  # images with both PNGs
    self.per_image = {k: np.zeros(n) for k in _METRIC_KEYS}
    self._csv = None  # metrics.csv, opened at the first rows to write
    self._csv_rows = []
    if finished_metrics is not None:
      for j, i in enumerate(np.flatnonzero(inputs.done)):
        self._add_metrics(i, {k: v[j] for k, v in finished_metrics.items()})
    # The grid's rows, when it has to be made: G(z) and blended of each.
    rows = min(n, args.grid_max)
    self.grid = None if inputs.done[:rows].all() else {}
    self.grid_rows = rows

  def _fail(self, path, error: OSError):
    raise _RunError(
        f'cannot write {_text(path)}: {error.strerror or error}; '
        f'{self.complete} of {len(self.inputs.names)} images are complete in '
        f'{_text(self.out)}/ (rerun with --resume to do the rest)') from error

  def _add_metrics(self, i, values):
    for k in _METRIC_KEYS:
      self.per_image[k][i] = values[k]
    self._csv_rows.append([_text(self.inputs.names[i])]
                          + [f'{values[k]:.6f}' for k in _METRIC_KEYS])

  def _flush_metrics(self):
    """Appends the pending rows to metrics.csv (made at the first call)."""
    path = self.out / METRICS_FILE
    try:
      if self._csv is None:
        self._csv = open(path, 'w', newline='', encoding='utf-8')
        self._csv_rows.insert(0, ('name',) + _METRIC_KEYS)
      csv.writer(self._csv).writerows(self._csv_rows)
      self._csv.flush()
    except OSError as e:
      self._fail(path, e)
    self._csv_rows.clear()

  def batch(self, rows, results, per_image=None):
    """Writes the completed images `rows` (indices into the inputs)."""
    finite = np.isfinite(results['blended']).all(axis=(1, 2, 3))
    if not finite.all():
      bad = [self.inputs.names[rows[j]] for j in np.flatnonzero(~finite)]
      raise _RunError(f'completion produced non-finite values for '
                      f'{_names_list(bad)}; is the checkpoint healthy?')
    from jaxinpaint import grids, metrics  # pylint: disable=g-import-not-at-top
    blended = metrics.to_uint8(results['blended'])
    overlay = metrics.to_uint8(results['overlay'])
    for j, i in enumerate(rows):
      name = self.inputs.names[i]
      # The blended PNG last: with both, --resume counts the image as done.
      for path, image in ((self.out / RAW_DIR / f'{name}.png', overlay[j]),
                          (self.out / f'{name}.png', blended[j])):
        try:
          grids.save_png(path, image)
        except OSError as e:
          self._fail(path, e)
      self.complete += 1
    if self.grid is not None:
      for j, i in enumerate(rows):
        if i < self.grid_rows:
          self.grid[i] = (results['generated'][j], results['blended'][j])
      if len(self.grid) == self.grid_rows:
        self._write_grid()
    if per_image is not None:
      for j, i in enumerate(rows):
        self._add_metrics(i, {k: per_image[k][j] for k in _METRIC_KEYS})
      self._flush_metrics()

  def _write_grid(self):
    from jaxinpaint import grids  # pylint: disable=g-import-not-at-top
    inputs, rows = self.inputs, self.grid_rows
    images = inputs.images[:rows]
    columns = [np.where(self.keep[:rows], images, 0.0)]  # holes shown grey
    if inputs.reference is not None:
      columns.append(np.broadcast_to(inputs.reference, images.shape))
    columns += [np.stack([self.grid[i][0] for i in range(rows)]),
                np.stack([self.grid[i][1] for i in range(rows)])]
    if self.args.evaluate:
      columns.append(images)
    try:
      grids.save_rows(self.out / GRID_FILE, columns)
    except OSError as e:
      self._fail(self.out / GRID_FILE, e)
    self.grid = None

  def finish(self, summary):
    """metrics.csv (if nothing was completed in this run) and summary.json."""
    if self.args.evaluate:
      self._flush_metrics()
      try:
        _write_json(self.out / SUMMARY_FILE, summary)
      except OSError as e:
        self._fail(self.out / SUMMARY_FILE, e)

  def close(self):
    if self._csv is not None:
      self._csv.close()


@dataclasses.dataclass
class _Inputs:
  """Everything a run needs, checked: nothing computed or written yet."""
  model_dir: Path
  images: np.ndarray  # (N, R, R, 3) float32 in [-1, 1]
  names: list
  mask: np.ndarray  # (1 or N, R, R, 1) float32, 1 = known
  reference: np.ndarray | None  # (1, R, R, 3) or None
  out: Path
  done: np.ndarray  # (N,) bool: finished by an earlier run (--resume)
  finished: np.ndarray | None  # --resume --evaluate: their PNGs, uint8


def prepare(args) -> _Inputs:
  """Reads and checks every input and output path of a parsed command line.

  Raises UserError, data.CorruptImageError or ValueError (from the loaders,
  naming the file) for bad inputs; computes and writes nothing.
  """
  _check_flags(args)
  model_dir, config = _model_dir(args.checkpoint)
  resolution = int(config.model.resolution)
  images, names = _load_inputs(args.input, resolution, args.limit)
  mask = _load_masks(args.mask, names, resolution, args.seed)
  reference = None
  if args.reference is not None:
    reference, _ = _load_files([args.reference], resolution, 'reference')
    if args.loss is not None:
      _note(f'note: --loss {args.loss} does not apply to conditional '
            'completion (--reference); it has its own loss (paper eq. 10-12)')
  out = Path(args.out)
  _check_writable(out)
  done = _check_outputs(out, names, args, _input_files(args))
  finished = None
  if args.evaluate and done.any():
    finished = _read_finished(out, names, done, resolution)
  _mask_notes(mask, names, conditional=reference is not None)
  return _Inputs(model_dir, images, names, mask, reference, out, done,
                 finished)


def run(args, inputs: _Inputs) -> dict:
  """Completes the checked inputs and writes every output.

  Returns the summary: metrics (with --evaluate) and the run's settings.
  """
  import jax  # pylint: disable=g-import-not-at-top
  from absl import logging  # pylint: disable=g-import-not-at-top
  # pylint: disable-next=g-import-not-at-top
  from jaxinpaint import checkpoint, completion, metrics, pipeline
  logging.set_verbosity(logging.WARNING)  # orbax logs every restore at INFO
  images, names, mask, reference, out = (inputs.images, inputs.names,
                                         inputs.mask, inputs.reference,
                                         inputs.out)
  n, conditional = len(images), reference is not None
  try:
    config, variables, step = checkpoint.load_inference_variables(
        inputs.model_dir)
  except checkpoint.ChecksumError as e:
    _error(str(e))
  except Exception as e:  # pylint: disable=broad-except
    # A damaged checkpoint: orbax and tensorstore raise many types.
    first = (str(e).strip().splitlines() or [''])[0]
    _error(f'{inputs.model_dir}: cannot load the model: '
           f'{type(e).__name__}: {first}')

  loss_name = None if conditional else (args.loss or 'paper')
  spec = (completion.ConditionalSpec() if conditional
          else completion.get_loss(loss_name))
  if args.steps is None:
    args.steps = (CPU_DEFAULT_STEPS if jax.devices()[0].platform == 'cpu'
                  else PAPER_STEPS)
  options = completion.Options(steps=args.steps, restarts=args.restarts,
                               blend=not args.no_blend)
  keep = np.broadcast_to(mask > 0.5, images.shape[:-1] + (1,))
  mask_rows = lambda rows: mask if len(mask) == 1 else mask[rows]
  # --evaluate: the inputs are whole, so damage them (holes grey, 0 in
  # [-1, 1]). Otherwise y is the damaged image as given: completion never
  # reads its hole pixels.
  y = np.where(keep, images, np.float32(0)) if args.evaluate else images

  finished_metrics = None
  if inputs.finished is not None:
    done = np.flatnonzero(inputs.done)
    finished_metrics, _ = pipeline.evaluate(
        images[done], inputs.finished.astype(np.float32) / 127.5 - 1,
        mask_rows(done))
  todo = np.flatnonzero(~inputs.done)
  writer = _Writer(args, inputs, keep, finished_metrics)
  results = None
  try:
    if len(todo) < n:
      _note(f'--resume: {n - len(todo)} of {n} images are finished in '
            f'{_text(out)}/; skipping them')
    if len(todo):
      batches = -(-len(todo) // min(args.batch_size, len(todo)))
      _note(f'completing {len(todo)} image{"s" * (len(todo) != 1)} with the '
            f'model at step {step}: {args.steps} Adam steps x '
            f'{args.restarts} restart(s) on {jax.devices()[0].platform}, '
            f'{batches} compiled batch{"es" * (batches != 1)} (a CPU takes '
            'minutes; a GPU seconds)')

      def on_batch(start, stop, batch):
        rows = todo[start:stop]
        per_image = None
        if args.evaluate:
          per_image, _ = pipeline.evaluate(images[rows], batch,
                                           mask_rows(rows))
        writer.batch(rows, batch, per_image)

      results = pipeline.inpaint_batches(
          variables, config.model, y[todo], mask_rows(todo), todo, spec=spec,
          options=options, batch_size=args.batch_size, seed=args.seed,
          reference=reference, on_batch=on_batch)

    summary = {}
    if args.evaluate:
      summary = metrics.summarize(*(writer.per_image[k]
                                    for k in _METRIC_KEYS))
    summary.update(
        method='conditional' if conditional else 'inpainting',
        loss=loss_name or 'conditional',
        loss_weights=dataclasses.asdict(spec),
        steps=args.steps, restarts=args.restarts, batch_size=args.batch_size,
        seed=args.seed, mask=_text(args.mask), blend=not args.no_blend,
        input=_text(args.input),
        reference=args.reference and _text(args.reference),
        checkpoint=_text(inputs.model_dir), checkpoint_step=step,
        model={k: config.model[k] for k in ('arch', 'resolution', 'width',
                                            'z_dim')},
        resumed=n - len(todo),
        # Of the images completed in this run (None: all were resumed).
        final_loss_mean=(None if results is None else
                         float(results['final_loss'].min(axis=1).mean())),
        device=jax.devices()[0].device_kind)
    writer.finish(summary)
  except _RunError as e:
    _error(str(e), code=1)
  except KeyboardInterrupt:
    _error(f'interrupted: {writer.complete} of {n} images are complete in '
           f'{_text(out)}/; rerun with --resume to do the rest', code=130)
  finally:
    writer.close()

  print(f'wrote {len(todo)} completed image{"s" * (len(todo) != 1)} to '
        f'{_text(out)}/ (unblended overlays in {_text(out / RAW_DIR)}/, grid '
        f'{_text(out / GRID_FILE)})'
        + (f'; {n - len(todo)} finished before' if len(todo) < n else ''))
  if args.evaluate:
    print(f'metrics: MSE {summary["mse"]:.2f}, PSNR {summary["psnr"]:.2f} dB '
          f'(mean per image {summary["psnr_mean"]:.2f}), SSIM '
          f'{summary["ssim"]:.4f}, hole MSE {summary["hole_mse"]:.2f} over '
          f'{n} images -> {_text(out / METRICS_FILE)}, '
          f'{_text(out / SUMMARY_FILE)}')
  return summary


def main(argv=None):
  """Entry point; `argv` without the program name (default: sys.argv[1:]).

  Returns the run's summary dict; exits (SystemExit) with code 2 on bad
  flags or inputs, before anything is computed or written, 1 when the
  computation or a write fails, and 130 on Ctrl-C.
  """
  args = build_parser().parse_args(argv)
  try:
    return run(args, checked(prepare, args))
  except KeyboardInterrupt:  # `run` handles one once it has written
    _error('interrupted; nothing was written', code=130)


def checked(prepare_fn, args):
  """`prepare_fn(args)`, with bad input turned into one `error:` line.

  data.CorruptImageError (a ValueError) and the loaders' errors name the
  file (masks.load_mask, data.load_images, data.list_image_files).
  """
  try:
    return prepare_fn(args)
  except UserError as e:
    _error(str(e))
  except (ValueError, FileNotFoundError) as e:
    _error(str(e).splitlines()[0] if str(e) else type(e).__name__)


if __name__ == '__main__':
  main()
