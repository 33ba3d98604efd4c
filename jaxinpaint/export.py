"""Exports a training work dir as a compact model for completion.

  python -m jaxinpaint.export --workdir runs/celeba64 \
      --out jaxinpaint/assets/celeba64 --dtype bfloat16

Keeps G, D and Dp (no optimizer state), recalibrates G's BatchNorm
statistics for the final weights (`models.recalibrated_stats`: a run stopped
by a signal saved only the running averages), and stores the arrays in
`--dtype` with their SHA-256 (checksums.json). The result is finalized by
definition and loads with `loading.load_model`, like the work dir itself.
"""
import argparse

import jax.numpy as jnp

from jaxinpaint import checkpoint, cli, models


def export(workdir, out, dtype='bfloat16', recalibration_batches=None):
  """Exports the newest checkpoint of `workdir` to the new (or empty)
  directory `out`; returns its step. Raises ValueError (one line, naming
  `out` or `recalibration_batches`) before any work for a bad argument."""
  # Before the recalibration, which compiles and runs G for a while.
  if recalibration_batches is not None and recalibration_batches < 1:
    raise ValueError(f'recalibration_batches must be >= 1, got '
                     f'{recalibration_batches}')
  checkpoint.check_new_model_dir(out, f'out {out}')
  config = checkpoint.load_config(workdir)
  if checkpoint.latest_step(workdir) == 0:
    raise ValueError(f'{workdir}: its checkpoint is from step 0, a model that '
                     'never trained (its completions would be noise); train '
                     'it first')
  raw, step = checkpoint.restore_raw(workdir)
  nets = models.build_models(config.model)
  g_stats = models.recalibrated_stats(
      nets['generator'], raw['g_params'], raw['g_stats'], config,
      recalibration_batches)
  variables = checkpoint.inference_variables(dict(raw, g_stats_eval=g_stats))
  checkpoint.export_inference(out, config, variables, step, jnp.dtype(dtype))
  return step


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--workdir', required=True, help='training work dir')
  parser.add_argument('--out', required=True,
                      help='new (or empty) directory for the model')
  parser.add_argument('--dtype', default='bfloat16',
                      choices=['bfloat16', 'float16', 'float32'],
                      help='storage precision (loaded back as float32)')
  parser.add_argument('--recalibration-batches', type=int, default=None,
                      help="batches of z for G's BatchNorm statistics "
                           '(default: the config\'s bn_recalibration_batches)')
  args = parser.parse_args(argv)
  if args.recalibration_batches is not None and args.recalibration_batches < 1:
    cli.fail(f'--recalibration-batches must be >= 1, got '
             f'{args.recalibration_batches}')
  try:
    with cli.sigterm_raises():
      # As export() checks it, but naming the flag.
      checkpoint.check_new_model_dir(args.out, f'--out {args.out}')
      step = export(args.workdir, args.out, args.dtype,
                    args.recalibration_batches)
  except (FileNotFoundError, ValueError) as e:  # checked before any work
    cli.fail(str(e).splitlines()[0], cli.USAGE)
  except KeyboardInterrupt as e:  # Ctrl-C or SIGTERM
    code = cli.interrupt_code(e)
    cli.fail(f'{"terminated" if code == cli.TERMINATED else "interrupted"}; '
             f'nothing was exported to {args.out} (an export is written '
             'whole or not at all)', code)
  print(f'exported step {step} of {args.workdir} to {args.out}')


if __name__ == '__main__':
  main()
