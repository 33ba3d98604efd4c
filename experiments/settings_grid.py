"""Completion settings grid: one factor at a time around completion's defaults.

Completes the first --limit test images under each mask with the defaults
(`completion.LOSSES['paper']`, `completion.Options()`), then with one
setting changed at a time:

  loss            paper (ours, eq. 5-8) | yeh (Yeh et al., its own weights)
  eta             0 | 0.1 | 0.5 | 1     the weight η of the paper loss's prior
  z_constraint    box (clip to ±1, the paper) | sphere (radius sqrt(z_dim))
  learning_rate   0.01 | 0.03 | 0.1     Adam's step size on z
  restarts        1 | 4                 random starts per image, the best kept

(each factor's default value is not repeated), and last the best pair: the
best values of the two factors that lowered the MSE most, averaged over the
masks as MSE / the defaults' MSE, run together (loss and eta are not paired:
η weighs the paper loss's prior, Yeh et al.'s loss has its own). Every cell
starts image i from the latents of (--seed, i), as paper_tables.py does,
so the defaults cell is its paper_wgan row and loss=yeh its yeh_wgan
row. Each cell records, per mask, MSE, PSNR, mean PSNR, SSIM and hole MSE
(`batched.evaluate`, after Poisson blending) and the seconds of the
search (wall time less JAX's compile time, and the compile time apart).

  python experiments/settings_grid.py --model celeba64 --limit 256 --steps 1000
  python experiments/settings_grid.py --model runs/x --input DIR --limit 2 \\
      --steps 2 --factors loss,learning_rate --out /tmp/grid

Writes grid.json (every number) and grid.md (one table per mask) under --out
after each cell, so a run stopped by --time-limit or killed keeps what it
finished. --time-limit S starts no cell that would not end within S seconds
of the start, judged from the cells already run.
"""
import argparse
import dataclasses
import time
from pathlib import Path

import jax
import numpy as np

from jaxinpaint import atomic, cli, completion, errors
from jaxinpaint.completion import batched
from jaxinpaint.data import masks as masks_lib
from jaxinpaint.errors import InputError
from jaxinpaint.inpaint_job import inputs, outputs
from jaxinpaint.models import loading
import common  # experiments/common.py, beside this script

REPO = Path(__file__).resolve().parents[1]
DEFAULT_INPUT = '../shared/data/celeba64/test'  # relative to the repo root
# (factor, values); the defaults' own value is skipped. Restarts come last:
# K = 4 costs four searches, so a time limit cuts it first.
FACTORS = (
    ('loss', ('paper', 'yeh')),
    ('eta', (0.0, 0.1, 0.5, 1.0)),
    ('z_constraint', ('box', 'sphere')),
    ('learning_rate', (0.01, 0.03, 0.1)),
    ('restarts', (1, 4)),
)
FACTOR_NAMES = tuple(f for f, _ in FACTORS)
# Factors never combined in the best pair (η is a weight of the paper loss).
UNPAIRED = frozenset({'loss', 'eta'})
# MSE columns of the tables: (key, header, higher is better).
COLUMNS = (('mse', 'MSE', False), ('psnr', 'PSNR', True),
           ('ssim', 'SSIM', True), ('hole_mse', 'hole MSE', False))


def default_settings() -> dict:
  """The defaults every cell varies: completion's own."""
  options = completion.Options()
  return dict(loss='paper', eta=completion.LOSSES['paper'].eta,
              z_constraint=options.z_constraint,
              learning_rate=options.learning_rate, restarts=options.restarts)


def one_factor_cells(defaults: dict, factors=FACTORS) -> list[dict]:
  """The defaults ({}) and, for each factor, each other value alone, as
  {factor: value} changes to `defaults`."""
  cells = [{}]
  for factor, values in factors:
    cells += [{factor: v} for v in values if v != defaults[factor]]
  return cells


def cell_name(change: dict) -> str:
  return ', '.join(f'{k}={v:g}' if isinstance(v, float) else f'{k}={v}'
                   for k, v in change.items()) or 'defaults'


def resolve(defaults: dict, change: dict):
  """(LossSpec, the settings of every factor) of one cell. The loss is
  completion.LOSSES[loss] with its own η unless the cell sets eta."""
  settings = dict(defaults, **change)
  spec = completion.get_loss(settings['loss'])
  if 'eta' in change:
    spec = dataclasses.replace(spec, eta=float(change['eta']))
  settings['eta'] = spec.eta
  return spec, settings


def relative_mse(result: dict, defaults_result: dict, mask_kinds) -> float:
  """A cell's MSE over the defaults', averaged over the masks."""
  return sum(result[k]['mse'] / defaults_result[k]['mse']
             for k in mask_kinds) / len(mask_kinds)


def best_pair(cells: list[dict], mask_kinds):
  """(change, why) of the best pair from the one-factor cells run so far
  (`cells`: dicts with 'change' and 'results'; the first is the defaults),
  or (None, why) when fewer than two pairable factors beat the defaults."""
  base = cells[0]['results']
  best = {}  # factor -> (relative MSE, value)
  for cell in cells[1:]:
    if len(cell['change']) != 1:
      continue
    (factor, value), = cell['change'].items()
    score = relative_mse(cell['results'], base, mask_kinds)
    if score < 1 and score < best.get(factor, (1, None))[0]:
      best[factor] = (score, value)
  ranked = sorted(best, key=lambda f: best[f][0])
  for i, first in enumerate(ranked):
    for second in ranked[i + 1:]:
      if not {first, second} <= UNPAIRED:
        change = {f: best[f][1] for f in FACTOR_NAMES if f in (first, second)}
        return change, (f'{first} ({best[first][0]:.4f} of the defaults\' '
                        f'MSE) and {second} ({best[second][0]:.4f})')
  return None, (f'fewer than two pairable factors beat the defaults '
                f'(better alone: {", ".join(ranked) or "none"})')


def run_cell(model, images, masks: dict, spec, settings: dict, *, steps: int,
             batch_size: int, seed: int, progress: bool) -> dict:
  """{mask kind: metrics (`batched.evaluate`'s summary) + seconds} of
  one setting on every mask."""
  options = completion.Options(
      steps=steps, restarts=settings['restarts'],
      learning_rate=settings['learning_rate'],
      z_constraint=settings['z_constraint'])
  results = {}
  with common.CompileTimer() as timer:
    for kind, mask in masks.items():
      damaged = np.where(mask > 0.5, images, np.float32(0))
      compile_before, start = timer.seconds, time.perf_counter()
      out = batched.inpaint_batches(
          model, damaged, mask, np.arange(len(images)), spec=spec,
          options=options, batch_size=batch_size, seed=seed,
          progress=progress)
      wall = time.perf_counter() - start
      compile_s = min(timer.seconds - compile_before, wall)
      if not np.isfinite(out['blended']).all():
        raise errors.RunError(f'settings {settings}: non-finite '
                               f'completions on mask {kind}')
      _, summary = batched.evaluate(images, out, mask)
      results[kind] = dict(summary, seconds=wall - compile_s,
                           compile_seconds=compile_s)
  return results


def run_grid(model, images, masks: dict, *, steps: int, batch_size: int,
             seed: int = 0, factors=FACTORS, pair: bool = True,
             time_limit: float | None = None, clock=time.perf_counter,
             on_cell=None, progress: bool = False) -> dict:
  """Every cell of the one-factor grid, then the best pair.

  Cells run in order until the next one would end past `time_limit`
  seconds from the start (by `clock`), judged by the slowest cell so far
  per restart times the next cell's restarts. `on_cell(grid)` is called
  after each cell with the grid so far.

  Returns {'defaults', 'cells': [{'name', 'change', 'settings' (every
  factor, η the loss's own unless changed), 'results': {mask: metrics}}],
  'pair': its cell or None, 'pair_reason', 'not_run': [names]}.
  """
  start = clock()
  defaults = default_settings()
  changes = one_factor_cells(defaults, factors)
  grid = dict(defaults=defaults, cells=[], pair=None, pair_reason=None,
              not_run=[])
  per_restart = 0.0  # the slowest cell's clock seconds per restart

  def run_one(change):
    nonlocal per_restart
    spec, settings = resolve(defaults, change)
    needed = per_restart * settings['restarts']
    if time_limit is not None and clock() - start + needed > time_limit:
      grid['not_run'].append(cell_name(change))
      return None
    began = clock()
    results = run_cell(model, images, masks, spec, settings, steps=steps,
                       batch_size=batch_size, seed=seed, progress=progress)
    per_restart = max(per_restart, (clock() - began) / settings['restarts'])
    return dict(name=cell_name(change), change=change, settings=settings,
                alpha=spec.alpha, beta=spec.beta, prior=spec.prior,
                results=results)

  for change in changes:
    cell = run_one(change)
    if cell is not None:
      grid['cells'].append(cell)
      if on_cell is not None:
        on_cell(grid)
  if not pair:
    grid['pair_reason'] = 'not asked for'
  elif not grid['cells'] or grid['cells'][0]['change']:
    grid['pair_reason'] = 'the defaults cell did not run'
  else:
    change, grid['pair_reason'] = best_pair(grid['cells'], list(masks))
    if change is not None:
      grid['pair'] = run_one(change)
  if on_cell is not None:
    on_cell(grid)
  return grid


def _fmt_value(v) -> str:
  return f'{v:g}' if isinstance(v, (int, float)) else str(v)


def grid_markdown(grid: dict, settings: dict) -> str:
  """One table per mask: a row per cell (the pair last), its settings, the
  metrics, the MSE over the defaults', the seconds; best of each metric
  column in bold."""
  cells = grid['cells'] + ([grid['pair']] if grid['pair'] else [])
  lines = [
      '# Completion settings grid', '',
      f'- model `{settings["model"]}`, step {settings["step"]} '
      f'({settings["resolution"]}x{settings["resolution"]}, width '
      f'{settings["width"]}); {settings["n_images"]} images from '
      f'`{settings["input"]}` (the first in sorted order)',
      f'- {settings["steps"]} Adam steps, seed {settings["seed"]}, batch '
      f'{settings["batch_size"]}, Poisson blending; device '
      f'{settings["device"]}',
      '- defaults: ' + ', '.join(f'{k} {_fmt_value(v)}' for k, v in
                                 grid['defaults'].items()),
      f'- best pair: {grid["pair_reason"]}',
      '- metrics on uint8 values, whole image (hole MSE: hole pixels only); '
      '"vs defaults" = MSE / the defaults\' MSE; s = seconds of the search '
      'on all images, compilation excluded (not reproducible)']
  if grid['not_run']:
    lines.append(f'- not run (time limit): {", ".join(grid["not_run"])}')
  for kind in settings['masks']:
    lines += ['', f'## mask `{kind}`', '',
              '| setting | loss | η | z | lr | K | ' + ' | '.join(
                  h for _, h, _ in COLUMNS) + ' | vs defaults | s |',
              '|---|---|---:|---|---:|---:|' + '---:|' * (len(COLUMNS) + 2)]
    if not cells:
      continue
    base = cells[0]['results'][kind]['mse'] if not cells[0]['change'] else None
    best = {}
    for key, _, higher in COLUMNS:
      values = [f'{c["results"][kind][key]:.4f}' for c in cells]
      pick = max if higher else min
      best[key] = pick(values, key=float)
    for c in cells:
      r, s = c['results'][kind], c['settings']
      metric_cells = []
      for key, _, _ in COLUMNS:
        v = f'{r[key]:.4f}'
        metric_cells.append(f'**{v}**' if v == best[key] and len(cells) > 1
                            else v)
      ratio = f'{r["mse"] / base:.4f}' if base else ''
      lines.append(
          f'| {c["name"]} | {s["loss"]} | {s["eta"]:g} | '
          f'{s["z_constraint"]} | {s["learning_rate"]:g} | {s["restarts"]} | '
          + ' | '.join(metric_cells) + f' | {ratio} | {r["seconds"]:.2f} |')
  lines.append('')
  return '\n'.join(lines)


# ----------------------------------------------------------------------------
# The command line.


def build_parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(
      prog='settings_grid.py', description=__doc__,
      formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--model', default=None, metavar='DIR',
                 help='a model directory or a shipped model\'s name '
                 f'(default: {loading.DEFAULT_MODEL.name}).')
  p.add_argument('--input', default=None, metavar='DIR',
                 help='folder of complete test images at the model\'s '
                 f'resolution (default: {DEFAULT_INPUT} from the repo root).')
  p.add_argument('--limit', type=int, default=256, metavar='N',
                 help='the first N images (default: 256).')
  p.add_argument('--masks', default=','.join(common.TABLE_MASKS),
                 metavar='LIST', help='comma list of mask kinds (default: '
                 'center,three_squares, the paper\'s Tables 1-2).')
  p.add_argument('--factors', default=','.join(FACTOR_NAMES), metavar='LIST',
                 help=f'comma list of the factors to vary (default: all: '
                 f'{",".join(FACTOR_NAMES)}).')
  p.add_argument('--no-pair', action='store_true',
                 help='run no best-pair cell.')
  p.add_argument('--steps', type=int, default=1000,
                 help='Adam steps on z (default: 1000, the paper).')
  p.add_argument('--batch-size', type=int, default=256,
                 help='images per compiled call (default: 256).')
  p.add_argument('--seed', type=int, default=0,
                 help='seed of the starting latents (default: 0).')
  p.add_argument('--time-limit', type=float, default=None, metavar='S',
                 help='start no cell that would end more than S seconds '
                 'after the start (default: no limit).')
  p.add_argument('--out', default='grid', metavar='DIR',
                 help='output folder for grid.json and grid.md '
                 '(default: grid).')
  p.add_argument('--overwrite', action='store_true',
                 help='replace existing output files.')
  p.add_argument('--no-progress', action='store_true',
                 help='no progress bars.')
  return p


def prepare(args):
  """Checks every flag, the model, the images and the outputs."""
  inputs.check_counts(args.limit, args.seed, steps=args.steps,
                      batch_size=args.batch_size)
  if args.time_limit is not None and not args.time_limit > 0:
    raise InputError(f'--time-limit {args.time_limit}: expected a positive '
                    'number of seconds')
  mask_kinds = common.split_list(args.masks, '--masks', masks_lib.MASK_KINDS)
  names = common.split_list(args.factors, '--factors', FACTOR_NAMES)
  factors = tuple((f, v) for f, v in FACTORS if f in names)
  with errors.naming_flags(model='--model'):
    model_dir, config = loading.find_model(args.model)
  if config.model.arch != 'wgan':
    raise InputError(f'--model {model_dir}: a {config.model.arch!r} model; '
                    'the grid varies the WGAN completion (paper loss)')
  resolution = int(config.model.resolution)
  input_path = Path(args.input) if args.input else REPO / DEFAULT_INPUT
  if not input_path.is_dir():
    raise InputError(f'--input {input_path}: no such folder')
  images, names = inputs.load_inputs(str(input_path), resolution, args.limit)
  images = images.read_all()  # the grid's few hundred images
  masks = common.table_masks(mask_kinds, len(images), resolution, args.seed)
  out = Path(args.out)
  if out.exists() and not out.is_dir():
    raise InputError(f'--out {out}: exists and is not a folder')
  outputs.refuse_existing([out / 'grid.json', out / 'grid.md'],
                          args.overwrite)
  return model_dir, images, names, masks, factors, out, str(input_path)


def run(args, checked) -> dict:
  model_dir, images, names, masks, factors, out, input_label = checked
  model = loading.load_model(model_dir)
  settings = dict(
      model=str(model_dir), step=model.step, resolution=model.resolution,
      width=int(model.config.model.width), input=input_label,
      n_images=len(images), names=names, masks=list(masks), steps=args.steps,
      batch_size=args.batch_size, seed=args.seed, time_limit=args.time_limit,
      device=common.device_label(),
      jax_version=jax.__version__)

  def save(grid):
    atomic.write_json(out / 'grid.json', dict(settings=settings, **grid))
    atomic.write_text(out / 'grid.md', grid_markdown(grid, settings))

  start = time.perf_counter()
  grid = run_grid(model, images, masks, steps=args.steps,
                  batch_size=args.batch_size, seed=args.seed, factors=factors,
                  pair=not args.no_pair, time_limit=args.time_limit,
                  on_cell=save, progress=not args.no_progress)
  print(grid_markdown(grid, settings))
  print(f'({time.perf_counter() - start:.0f} s) wrote {out / "grid.json"}, '
        f'{out / "grid.md"}')
  return dict(settings=settings, **grid)


def main(argv=None) -> dict:
  """Entry point; returns grid.json's contents. Exit codes as every
  jaxinpaint CLI: 2 for bad flags or inputs (one `error:` line), 1 for a
  failed run, 130 on Ctrl-C."""
  return cli.run_checked(prepare, run, build_parser().parse_args(argv))


if __name__ == '__main__':
  main()
