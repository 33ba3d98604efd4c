"""Conditional face completion, like the paper's Fig. 12 (section 3.3, 4.3).

Each face y1 keeps its pixels where the keep-mask is white; where it is black
(eyes, mouth) the result takes its structure from the reference face y2
(eq. 10-15, `completion.complete_conditional` through
`batched.inpaint_batches(..., reference=y2)`), then G(z) is
Poisson-blended into y1. As in the paper, each result's SSIM is computed against
its y1.

  python experiments/conditional_figure.py   # the shipped examples and model
  python experiments/conditional_figure.py --model runs/celeba64 \\
      --faces my_faces/ --reference ref.png --keep-mask keep.png --limit 6 \\
      --out figs/
"""
import argparse
import dataclasses
from pathlib import Path

import jax
import numpy as np

from jaxinpaint import atomic, cli, completion, errors, models
from jaxinpaint.completion import batched
from jaxinpaint.data import grids, masks as masks_lib
from jaxinpaint.errors import InputError
from jaxinpaint.inpaint_job import inputs, outputs
from jaxinpaint.models import loading
import common  # experiments/common.py, beside this script

REPO = Path(__file__).resolve().parents[1]
# The defaults ship in the package (jaxinpaint/assets/examples); the labels
# are how the results name them.
EXAMPLES = inputs.EXAMPLES
DEFAULT_FACES = 'examples/faces'
DEFAULT_REFERENCE = 'examples/reference.png'
DEFAULT_KEEP_MASK = 'examples/conditional_mask.png'
DEFAULT_OUT = 'docs/results'  # relative to the repo root
BUILT_MASK = 'eyes_mouth'
FIGURE, SUMMARY = 'conditional.png', 'conditional.json'

_EPILOG = f"""\
outputs (under --out):
  {FIGURE}   one row per face: y1 | reference y2 | keep-mask (white = kept
                    from y1) | result (Poisson-blended)
  {SUMMARY}  the SSIM of each result against its y1, their mean, and
                    the run's settings
The SSIMs are also printed. Existing outputs are never replaced without
--overwrite. The same command gives the same files (seeded latents).
"""


def build_parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(
      prog='conditional_figure.py', description=__doc__, epilog=_EPILOG,
      formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--faces', default=None, metavar='SRC',
                 help='the faces y1 to change: a folder (sorted) or one '
                 'image, at the model\'s resolution. Default: '
                 f'{DEFAULT_FACES} in the package.')
  p.add_argument('--limit', type=int, default=4, metavar='N',
                 help='use the first N faces (default: 4).')
  p.add_argument('--reference', default=None, metavar='IMG',
                 help=f'the reference face y2. Default: {DEFAULT_REFERENCE} '
                 'in the package.')
  p.add_argument('--keep-mask', default=None, metavar='IMG',
                 help='mask image, WHITE = KEEP from y1, black = take from '
                 f'the reference. Default: {DEFAULT_KEEP_MASK} in the '
                 'package if it exists, else the eye and mouth squares of '
                 f'masks.three_squares_coordinates; "{BUILT_MASK}" picks the '
                 'latter.')
  p.add_argument('--model', default=None, metavar='DIR',
                 help='WGAN model directory (training workdir or export). '
                 f'Default: the shipped model {loading.DEFAULT_MODEL}.')
  common.add_search_flags(p, item='face')
  return p


@dataclasses.dataclass
class _Inputs:
  model_dir: Path
  faces: np.ndarray  # (N, R, R, 3) in [-1, 1]
  names: list
  reference: np.ndarray  # (1, R, R, 3)
  keep: np.ndarray  # (1, R, R, 1), 1 = keep from y1
  mask_label: str
  out: Path


def _given_or_default(arg, default, flag, what):
  """(path, label): the flag's path, or the packaged default with a clear
  error when the examples are not installed."""
  if arg is not None:
    path = Path(arg)
    if not path.exists():
      raise InputError(f'{flag} {arg}: no such file or folder')
    return path, arg
  path = EXAMPLES.parent / default
  if not path.exists():
    raise InputError(f'the default {what} {path} does not exist (are the '
                    f'examples installed with the package?); pass {flag}')
  return path, default


def prepare(args) -> _Inputs:
  inputs.check_counts(args.limit, args.seed, steps=args.steps,
                          restarts=args.restarts, batch_size=args.batch_size)
  with errors.naming_flags(model='--model'):
    model_dir, config = loading.find_model(args.model)
  if config.model.arch != 'wgan':
    raise InputError(f'--model {model_dir}: conditional completion (paper '
                    f'3.3) needs our WGAN, not a {config.model.arch!r} model')
  r = int(config.model.resolution)
  faces_path, _ = _given_or_default(args.faces, DEFAULT_FACES, '--faces',
                                    'faces folder')
  ref_path, _ = _given_or_default(args.reference, DEFAULT_REFERENCE,
                                  '--reference', 'reference image')
  faces, names = inputs.load_inputs(str(faces_path), r, args.limit)
  faces = faces.read_all()
  reference, _ = inputs.load_image_files([str(ref_path)], r, 'reference')

  # three_squares keeps (1) all but the eyes and mouth, as a keep-mask must.
  if args.keep_mask == BUILT_MASK:
    keep, label = masks_lib.three_squares_mask(1, r, r), BUILT_MASK
  elif args.keep_mask is not None:
    if not Path(args.keep_mask).is_file():
      raise InputError(f'--keep-mask {args.keep_mask}: no such file')
    keep, label = masks_lib.load_mask(args.keep_mask, r, r), args.keep_mask
  elif (EXAMPLES.parent / DEFAULT_KEEP_MASK).is_file():
    keep = masks_lib.load_mask(str(EXAMPLES.parent / DEFAULT_KEEP_MASK), r, r)
    label = DEFAULT_KEEP_MASK
  else:
    inputs.note(f'note: no {DEFAULT_KEEP_MASK}: replacing the eye and '
                    'mouth squares of masks.three_squares_coordinates')
    keep, label = masks_lib.three_squares_mask(1, r, r), BUILT_MASK
  if keep.min() > 0.5 or keep.max() < 0.5:
    inputs.note(f'warning: the keep-mask {label} is all '
                    f'{"white" if keep.min() > 0.5 else "black"}')

  out = Path(args.out) if args.out is not None else REPO / DEFAULT_OUT
  if out.exists() and not out.is_dir():
    raise InputError(f'--out {out}: exists and is not a folder')
  outputs.refuse_existing((out / FIGURE, out / SUMMARY), args.overwrite)
  return _Inputs(model_dir, faces, names, reference, keep, label, out)


def conditional_completion(model: models.Model, y1, reference, keep,
                           search: common.Search):
  """The paper's Fig. 12 protocol: each face y1 keeps its pixels where
  `keep` is 1 and takes its structure from `reference` elsewhere (eq.
  10-15), then G(z) is Poisson-blended into y1; each result's SSIM is taken
  against its y1.

  Returns (blended (N, R, R, 3), per-image metrics, their summary).
  """
  results = batched.inpaint_batches(
      model, y1, keep, np.arange(len(y1)),
      spec=completion.ConditionalSpec(),
      options=completion.Options(steps=search.steps, restarts=search.restarts),
      batch_size=search.batch_size, seed=search.seed,
      progress=search.progress, reference=reference)
  if not np.isfinite(results['blended']).all():
    raise errors.RunError('completion produced non-finite values; is the '
                          'checkpoint healthy?')
  per_image, summary = batched.evaluate(y1, results, keep)
  return results['blended'], per_image, summary


def run(args, plan: _Inputs) -> dict:
  loaded = loading.load_model(plan.model_dir)
  y1, n = plan.faces, len(plan.faces)
  blended, per_image, summary = conditional_completion(
      loaded, y1, plan.reference, plan.keep, common.Search(
          steps=args.steps, restarts=args.restarts,
          batch_size=args.batch_size, seed=args.seed,
          progress=not args.no_progress))

  out = plan.out
  out.mkdir(parents=True, exist_ok=True)
  shape = y1.shape
  mask_image = np.broadcast_to(plan.keep * 2.0 - 1.0, shape)  # white = keep
  grids.save_rows(out / FIGURE, [y1, np.broadcast_to(plan.reference, shape),
                                 mask_image, blended],
                  ['face', 'reference', 'mask', 'result'])
  device = jax.devices()[0]
  report = dict(
      ssim={name: float(s) for name, s in zip(plan.names,
                                              per_image['ssim'])},
      ssim_mean=summary['ssim'],
      settings=dict(faces=args.faces or DEFAULT_FACES,
                    reference=args.reference or DEFAULT_REFERENCE,
                    keep_mask=plan.mask_label, names=plan.names,
                    model=args.model or 'jaxinpaint/assets/celeba64 (shipped)',
                    model_step=loaded.step, steps=args.steps,
                    restarts=args.restarts, seed=args.seed,
                    loss_weights=dataclasses.asdict(
                        completion.ConditionalSpec()), blend=True,
                    device=device.device_kind))
  atomic.write_json(out / SUMMARY, report)
  print('SSIM of each result against its y1 (as in the paper\'s Fig. 12):')
  for name, s in report['ssim'].items():
    print(f'  {name}: {s:.4f}')
  print(f'  mean: {summary["ssim"]:.4f} over {n} face{"s" * (n != 1)}')
  print(f'wrote {out / FIGURE} (rows: y1 | reference | keep-mask | result) '
        f'and {out / SUMMARY}')
  return report


def main(argv=None) -> dict:
  """Entry point; returns the contents of conditional.json. Exit codes as
  every jaxinpaint CLI: 2 for bad flags or inputs (one `error:` line,
  nothing written), 1 for a failed run, 130 on Ctrl-C."""
  return cli.run_checked(prepare, run, build_parser().parse_args(argv))


if __name__ == '__main__':
  main()
