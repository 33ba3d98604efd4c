"""`inpaint.py` / `jaxinpaint-inpaint`: fill the holes of images with a model.

A thin layer over `pipeline` and `completion`: parse flags, check every
input and output path before any computation (so a bad run writes nothing),
complete, write PNGs, a grid and metrics. Expected failures end with one
`error: ...` line on stderr and exit code 2 (bad flags or inputs) or 1 (the
computation went wrong); notes and warnings also go to stderr.
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
existing output file is never replaced without --overwrite.

examples:
  inpaint.py --input photos/ --mask masks/ --out filled
  inpaint.py --input ../shared/data/celeba64/test --limit 64 --evaluate \\
      --mask three_squares --checkpoint runs/celeba64
  inpaint.py --input face.png --reference other_face.png --mask center
"""


class UserError(Exception):
  """A bad flag, input or output path: one line on stderr, exit code 2."""


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
  if args.limit is not None and args.limit < 1:
    raise UserError(f'--limit must be >= 1, got {args.limit}')
  if args.seed < 0:
    raise UserError(f'--seed must be >= 0, got {args.seed}')


def _check_flags(args):
  check_counts(args, steps=1 if args.steps is None else args.steps,
               restarts=args.restarts, batch_size=args.batch_size,
               grid_max=args.grid_max)
  if args.reference and args.evaluate:
    raise UserError('--evaluate cannot be combined with --reference: a '
                    'conditional completion has no ground truth to compare to')


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
  if checkpoint.latest_step(model_dir) is None:
    raise UserError(f'{model_dir}: not a jaxinpaint model directory (no '
                    f'checkpoint under {checkpoint.CHECKPOINT_DIR}/)')
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
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    source = tfds.data_source(name, split=split)
    count = len(source)
  except Exception as e:  # pylint: disable=broad-except
    # tfds raises many types (DatasetNotFoundError, AssertionError, ...).
    first = (str(e).strip().splitlines() or [type(e).__name__])[0]
    raise UserError(f'--input {spec}: cannot open the tfds split: '
                    f'{first}') from e
  count = count if limit is None else min(limit, count)
  if not count:
    raise UserError(f'--input {spec}: the split has no examples')
  images = []
  for i in range(count):
    example = source[i]
    if 'image' not in example:
      raise UserError(f'--input {spec}: examples have no "image" feature '
                      f'(features: {sorted(example)})')
    images.append(data._crop_resize_array(  # pylint: disable=protected-access
        example['image'], resolution))
  images = data._to_float(np.stack(images))  # pylint: disable=protected-access
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


def _check_outputs(out: Path, names, evaluate: bool, overwrite: bool):
  if out.exists() and not out.is_dir():
    raise UserError(f'--out {out}: exists and is not a folder')
  if Path(GRID_FILE).stem in names:
    raise UserError(f'an input image is named {Path(GRID_FILE).stem!r}: its '
                    f'output would collide with {out / GRID_FILE}; rename it')
  targets = _output_paths(out, names, evaluate)
  if not overwrite:
    for t in targets:
      if t.exists():
        raise UserError(f'{t} already exists; pass --overwrite to replace '
                        'it, or choose another --out')
  return targets


# ----------------------------------------------------------------------------
# Writing.


def _write_csv(path: Path, names, per_image):
  tmp = path.with_name(f'.{path.name}.tmp')
  with open(tmp, 'w', newline='') as f:
    w = csv.writer(f)
    keys = ('mse', 'psnr', 'ssim', 'hole_mse')
    w.writerow(('name',) + keys)
    for i, n in enumerate(names):
      w.writerow([n] + [f'{per_image[k][i]:.6f}' for k in keys])
  os.replace(tmp, path)


def _write_json(path: Path, obj):
  tmp = path.with_name(f'.{path.name}.tmp')
  tmp.write_text(json.dumps(obj, indent=2) + '\n')
  os.replace(tmp, path)


@dataclasses.dataclass
class _Inputs:
  """Everything a run needs, checked: nothing computed or written yet."""
  model_dir: Path
  images: np.ndarray  # (N, R, R, 3) float32 in [-1, 1]
  names: list
  mask: np.ndarray  # (1 or N, R, R, 1) float32, 1 = known
  reference: np.ndarray | None  # (1, R, R, 3) or None
  out: Path


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
  _check_outputs(out, names, args.evaluate, args.overwrite)
  _mask_notes(mask, names, conditional=reference is not None)
  return _Inputs(model_dir, images, names, mask, reference, out)


def run(args, inputs: _Inputs) -> dict:
  """Completes the checked inputs and writes every output.

  Returns the summary: metrics (with --evaluate) and the run's settings.
  """
  import jax  # pylint: disable=g-import-not-at-top
  from absl import logging  # pylint: disable=g-import-not-at-top
  # pylint: disable-next=g-import-not-at-top
  from jaxinpaint import checkpoint, completion, grids, metrics, pipeline
  logging.set_verbosity(logging.WARNING)  # orbax logs every restore at INFO
  images, names, mask, reference, out = (inputs.images, inputs.names,
                                         inputs.mask, inputs.reference,
                                         inputs.out)
  n, conditional = len(images), reference is not None
  try:
    config, variables, step = checkpoint.load_inference_variables(
        inputs.model_dir)
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
  # --evaluate: the inputs are whole, so damage them (holes grey, 0 in
  # [-1, 1]). Otherwise y is the damaged image as given: completion never
  # reads its hole pixels.
  y = np.where(keep, images, np.float32(0)) if args.evaluate else images
  batches = -(-n // min(args.batch_size, n))
  _note(f'completing {n} image{"s" * (n != 1)} with the model at step {step}: '
        f'{args.steps} Adam steps x {args.restarts} restart(s) on '
        f'{jax.devices()[0].platform}, {batches} compiled batch'
        f'{"es" * (batches != 1)} (a CPU takes minutes; a GPU seconds)')
  results = pipeline.inpaint_batches(
      variables, config.model, y, mask, np.arange(n), spec=spec,
      options=options, batch_size=args.batch_size, seed=args.seed,
      reference=reference)
  finite = np.isfinite(results['blended']).all(axis=(1, 2, 3))
  if not finite.all():
    bad = [names[i] for i in np.flatnonzero(~finite)]
    _error(f'completion produced non-finite values for {_names_list(bad)}; '
           'is the checkpoint healthy?', code=1)

  summary, per_image = {}, None
  if args.evaluate:
    per_image, summary = pipeline.evaluate(images, results, mask)

  # Writing: every target was checked by `prepare`.
  out.mkdir(parents=True, exist_ok=True)
  blended_u8 = metrics.to_uint8(results['blended'])
  overlay_u8 = metrics.to_uint8(results['overlay'])
  for i, name in enumerate(names):
    grids.save_png(out / f'{name}.png', blended_u8[i])
    grids.save_png(out / RAW_DIR / f'{name}.png', overlay_u8[i])
  rows = min(n, args.grid_max)
  columns = [np.where(keep, images, 0.0)[:rows]]  # holes shown grey
  if conditional:
    columns.append(np.broadcast_to(reference, images.shape)[:rows])
  columns += [results['generated'][:rows], results['blended'][:rows]]
  if args.evaluate:
    columns.append(images[:rows])
  grids.save_rows(out / GRID_FILE, columns)

  summary.update(
      method='conditional' if conditional else 'inpainting',
      loss=loss_name or 'conditional',
      loss_weights=dataclasses.asdict(spec),
      steps=args.steps, restarts=args.restarts, batch_size=args.batch_size,
      seed=args.seed, mask=args.mask, blend=not args.no_blend,
      input=args.input, reference=args.reference,
      checkpoint=str(inputs.model_dir), checkpoint_step=step,
      model={k: config.model[k] for k in ('arch', 'resolution', 'width',
                                          'z_dim')},
      final_loss_mean=float(results['final_loss'].min(axis=1).mean()),
      device=jax.devices()[0].device_kind)
  if args.evaluate:
    _write_csv(out / METRICS_FILE, names, per_image)
    _write_json(out / SUMMARY_FILE, summary)

  print(f'wrote {n} completed image{"s" * (n != 1)} to {out}/ '
        f'(unblended overlays in {out / RAW_DIR}/, grid {out / GRID_FILE})')
  if args.evaluate:
    print(f'metrics: MSE {summary["mse"]:.2f}, PSNR {summary["psnr"]:.2f} dB '
          f'(mean per image {summary["psnr_mean"]:.2f}), SSIM '
          f'{summary["ssim"]:.4f}, hole MSE {summary["hole_mse"]:.2f} over '
          f'{n} images -> {out / METRICS_FILE}, {out / SUMMARY_FILE}')
  return summary


def main(argv=None):
  """Entry point; `argv` without the program name (default: sys.argv[1:]).

  Returns the run's summary dict; exits (SystemExit) with code 2 on bad
  flags or inputs, before anything is computed or written, and 1 when the
  computation fails.
  """
  args = build_parser().parse_args(argv)
  return run(args, checked(prepare, args))


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
