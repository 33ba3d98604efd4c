"""Latent recovery: how well the search completes G's own samples.

Targets x* = G(z*), with z* drawn from the model's latent distribution and
projected into the search's constraint set, lose a hole (default: the
central square); each loss then searches ẑ under each constraint. The
answer is in G's range, so the errors measure the search alone, apart from
how well G covers real faces (`jaxinpaint.latent_recovery`). Prints one
table: hole MSE (uint8) of G(ẑ) and of the blend against x*, the harmonic
fill's as a no-model baseline, |ẑ − z*| and its per-coordinate RMS.

  python experiments/latent_recovery.py  # celeba64, 16 samples, 200 steps
  python experiments/latent_recovery.py --model celeba64_cpu --steps 50 \\
      --losses paper,yeh,yeh_gradient --constraints box,sphere --z-bound 2
"""
import argparse
import time

import jax

from jaxinpaint import cli, errors
from jaxinpaint.data import masks as masks_lib
from jaxinpaint.errors import InputError
from jaxinpaint.evaluation import latent_recovery
from jaxinpaint.models import loading
import common  # experiments/common.py, beside this script

LOSS_NAMES = ('paper', 'yeh', 'yeh_gradient')  # completion.LOSSES
CONSTRAINTS = ('box', 'sphere')  # completion.Z_CONSTRAINTS
# The table's columns: (key of a `latent_recovery.measure` row, header).
COLUMNS = (
    ('g_hole_mse', 'G(ẑ) hole MSE'), ('blend_hole_mse', 'blended hole MSE'),
    ('harmonic_hole_mse', 'harmonic hole MSE'),
    ('z_l2', 'mean ‖ẑ − z*‖'), ('z_rms', 'RMS(ẑ − z*) per coordinate'),
    ('final_loss', 'final loss'))


def build_parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(
      prog='latent_recovery.py', description=__doc__,
      formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--model', default=None, metavar='DIR',
                 help='a model directory or a shipped model\'s name '
                 f'(default: {loading.DEFAULT_MODEL.name}).')
  p.add_argument('--losses', default='paper,yeh',
                 help=f'comma list of {", ".join(LOSS_NAMES)} '
                 '(default: paper,yeh).')
  p.add_argument('--constraints', default='box,sphere',
                 help='comma list of box (clip to ±--z-bound, the paper) '
                 'and sphere (radius sqrt(z_dim)) (default: both).')
  p.add_argument('--z-bound', type=float, default=1.0,
                 help='the box half-width (default: 1, the paper).')
  p.add_argument('--mask', default='center', choices=masks_lib.MASK_KINDS,
                 help='hole layout (default: center).')
  p.add_argument('--images', type=int, default=16,
                 help='samples x* = G(z*) per constraint (default: 16).')
  p.add_argument('--steps', type=int, default=200,
                 help='Adam steps on z (default: 200).')
  p.add_argument('--restarts', type=int, default=1,
                 help='random initializations per image (default: 1).')
  p.add_argument('--batch-size', type=int, default=16,
                 help='images per compiled call (default: 16).')
  p.add_argument('--seed', type=int, default=0,
                 help='seed of the search\'s starting latents (default: 0).')
  p.add_argument('--target-seed', type=int, default=1,
                 help='seed of the targets z* (default: 1; equal to --seed '
                 'with one restart, z* is the search\'s own start).')
  p.add_argument('--no-progress', action='store_true',
                 help='no progress bars.')
  return p


def table_markdown(rows, z_bound: float = 1.0) -> str:
  """The rows of `latent_recovery.measure` as a markdown table."""
  name = lambda c: f'box ±{z_bound:g}' if c == 'box' else c
  lines = ['| constraint | loss | ' + ' | '.join(h for _, h in COLUMNS)
           + ' |',
           '|---|---|' + '---:|' * len(COLUMNS)]
  for r in rows:
    lines.append(f'| {name(r["constraint"])} | {r["loss"]} | ' + ' | '.join(
        f'{r[k]:.4g}' if k.startswith('z_') or k == 'final_loss'
        else f'{r[k]:.2f}' for k, _ in COLUMNS) + ' |')
  return '\n'.join(lines)


def prepare(args):
  losses = common.split_list(args.losses, '--losses', LOSS_NAMES)
  constraints = common.split_list(args.constraints, '--constraints',
                                  CONSTRAINTS)
  for flag, value in (('--images', args.images), ('--restarts', args.restarts),
                      ('--batch-size', args.batch_size)):
    if value < 1:
      raise InputError(f'{flag} {value}: expected a positive integer')
  if args.steps < 0:
    raise InputError(f'--steps {args.steps}: expected 0 or more')
  if not args.z_bound > 0:
    raise InputError(f'--z-bound {args.z_bound}: expected a positive number')
  with errors.naming_flags(model='--model'):
    model_dir, _ = loading.find_model(args.model)
  return model_dir, losses, constraints


def run(args, checked) -> list:
  model_dir, losses, constraints = checked
  model = loading.load_model(model_dir)
  print(f'{model_dir} ({model.arch}, {model.resolution}x{model.resolution}, '
        f'z {model.z_dim} ~ {model.latent_distribution}, step {model.step}) '
        f'on {jax.devices()[0].device_kind}: {args.images} samples, '
        f'{args.mask} mask, {args.steps} Adam steps x {args.restarts} '
        f'restart(s), seeds {args.seed} (search) / {args.target_seed} (z*)')
  start = time.perf_counter()
  rows = latent_recovery.measure(
      model, losses=losses, constraints=constraints, z_bound=args.z_bound,
      n=args.images, mask=args.mask, steps=args.steps,
      restarts=args.restarts, seed=args.seed, target_seed=args.target_seed,
      batch_size=args.batch_size, progress=not args.no_progress)
  print(table_markdown(rows, args.z_bound))
  print(f'({time.perf_counter() - start:.0f} s; hole MSEs on uint8 values, '
        'against x* = G(z*))')
  return rows


def main(argv=None) -> list:
  """Entry point; returns the table's rows. Exit codes as every jaxinpaint
  CLI: 2 for bad flags (one `error:` line), 1 for a failed run, 130 on
  Ctrl-C."""
  return cli.run_checked(prepare, run, build_parser().parse_args(argv))


if __name__ == '__main__':
  main()
