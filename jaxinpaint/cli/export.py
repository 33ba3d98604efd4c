"""Exports a training work dir as a compact model for completion.

  jaxinpaint-export --workdir runs/celeba64 \
      --out jaxinpaint/assets/celeba64 --dtype bfloat16

(or `python -m jaxinpaint.cli.export ...`). Keeps G, D and Dp (no optimizer
state), recalibrates G's BatchNorm statistics for the final weights (a run
stopped by a signal saved only the running averages), and stores the arrays
in `--dtype` with their SHA-256 (checksums.json). The result is finalized by
definition and loads with `loading.load_model`, like the work dir itself
(`models/export.py` is the library function).
"""
import argparse

from jaxinpaint import cli, errors
from jaxinpaint.models import checkpoint, export


def main(argv=None):
  cli.prepare_host()
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
  cli.run_checked(_check, _export, parser.parse_args(argv))


def _check(args):
  """The flags, before any work (export() checks them too, naming its
  arguments)."""
  if args.recalibration_batches is not None and args.recalibration_batches < 1:
    raise errors.InputError(f'--recalibration-batches must be >= 1, got '
                            f'{args.recalibration_batches}')
  checkpoint.check_new_model_dir(args.out, f'--out {args.out}')
  checkpoint.load_config(args.workdir)  # FileNotFoundError names it


def _export(args, _):
  try:
    step = export.export(args.workdir, args.out, args.dtype,
                         args.recalibration_batches)
  except KeyboardInterrupt as e:  # Ctrl-C or SIGTERM
    how = ('terminated' if cli.interrupt_code(e) == cli.TERMINATED
           else 'interrupted')
    raise errors.Interrupted(
        f'{how}; nothing was exported to {args.out} (an export is written '
        'whole or not at all)') from e
  print(f'exported step {step} of {args.workdir} to {args.out}')

if __name__ == '__main__':
  main()
