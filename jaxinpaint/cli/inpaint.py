"""`inpaint.py` / `jaxinpaint-inpaint`: fill the holes of images with a model.

Parses the flags, plans (`prepare`: every input and output path is checked
with `inputs` and `outputs` before any computation, so a bad run writes
nothing), executes (`runner.execute`: the images stream through the
completion batch by batch and each batch's PNGs and metrics are written as
soon as it is done, so an interrupted run keeps them) and reports. The
library's errors end here with one `error: ...` line on stderr and the exit
codes of `cli.run_checked`: 2 (bad flags or inputs), 1 (the computation or
a write went wrong), 130 (Ctrl-C) or 143 (SIGTERM); notes and warnings also
go to stderr.
"""
import argparse
from pathlib import Path

# No JAX behind these: `--help` and input errors stay fast.
from jaxinpaint import cli, errors
from jaxinpaint.data import masks
from jaxinpaint.errors import InputError
from jaxinpaint.inpaint_job import inputs, outputs, processes, runner
from jaxinpaint.models import loading

_DESCRIPTION = """\
Fills the holes of images with a trained jaxinpaint model (semantic image
completion, Vitoria et al., paper section 3.2): for each image a latent z is
searched so that G(z) matches the known pixels and their gradients and looks
real to the critics; G(z) then fills the hole and is Poisson-blended in.

Masks: 1 = known pixel, 0 = hole. In mask image files WHITE = KNOWN and
BLACK = HOLE (grey values >= 50% count as known; in a white image with
alpha, transparent = hole); a mask file must have the images' size exactly.

Images must already have the model's resolution (64x64 for the shipped
CelebA model): they are never resized, so outputs align with inputs and
masks. Greyscale and RGBA images are converted to RGB (alpha dropped).
"""

_EPILOG = """\
outputs (under --out):
  <name>.png        the completed image (Poisson-blended, uint8 PNG)
  raw/<name>.png    M*y + (1-M)*G(z), without blending
  grid.png          a block per image: masked input (holes grey)
                    [| reference] | G(z) | blended [| original]; blocks
                    laid out near-square, small images upscaled (nearest)
                    to >= 128 px, columns labelled; the first --grid-max
                    images only (64: about 2 MB at 64x64)
  metrics.csv       with --evaluate: name, mse, psnr, ssim, hole_mse
                    [, identity, identity_original, face_detected]
  summary.json      with --evaluate: mse, psnr (10*log10(255^2/mean MSE),
                    as in the paper's tables), psnr_mean, ssim, hole_mse,
                    n_images [, identity_mean, identity_rate,
                    identity_count, ...], and the run's settings
  run.json          the settings that change the images (model and its
                    step, input, mask, loss, steps, restarts, seed, dtype,
                    ...): --resume refuses to continue with others
Metrics are computed on the uint8 [0, 255] values of the written PNGs. An
existing output file is never replaced without --overwrite, and an output
path that is one of the input files (images, masks, reference) is refused.
Images and metrics rows are written as each batch finishes: after Ctrl-C
(exit code 130), SIGTERM (143) or a failed write, rerun with --resume to do
the rest (an --out is held by one run at a time: OUT/.lock). In metrics.csv
and summary.json, bytes of a file name that are not UTF-8 are written as
\\xNN.
Identity (with the eval extra, pip install -e '.[eval]', and input names
<identity>_<n> as CelebA's, where some person has several inputs): dlib's
face-recognition distance of each completion, and of its original, to the
other inputs of the same person (their originals; empty where there are
none), aligned with the original's landmarks; dlib calls < 0.6 the same
person (identity_rate).

several GPUs, several hosts:
  Each batch is split over the local devices (--devices N: the first N).
  With train.py's multi-process flags each process completes and writes a
  contiguous block of the inputs; process 0 then writes grid.png,
  metrics.csv and summary.json for all, as one process would. --out must be
  shared storage; OUT/.processes/ holds each process's status log. After a
  failure, rerun the same command with --resume on every process
  (docs/multi_device.md).

examples:
  inpaint.py --input photos/ --mask masks/ --out filled
  inpaint.py --input ../shared/data/celeba64/test --limit 64 --evaluate \\
      --mask three_squares --checkpoint runs/celeba64
  inpaint.py --input face.png --reference other_face.png --mask center
"""


def build_parser() -> argparse.ArgumentParser:
  """inpaint.py's flags. Long because it is a list: one `add_argument` per
  flag with its help text, read top to bottom as `--help` shows them."""
  p = argparse.ArgumentParser(
      description=_DESCRIPTION, epilog=_EPILOG,
      formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument(
      '--checkpoint', metavar='DIR|NAME', default=None,
      help='model directory: a training --workdir or an exported model, or '
      'the name of a model shipped in the package: '
      f'{", ".join(loading.shipped_model_names())} (default: '
      f'{loading.DEFAULT_MODEL.name}; the README\'s model card says what '
      'each one is).')
  p.add_argument(
      # The example faces in the package: the default works from any cwd.
      '--input', default=str(inputs.EXAMPLES / 'faces'), metavar='SRC',
      help='an image file, a folder of images (.png/.jpg/.jpeg/.gif/.webp/'
      '.tif/.tiff/.bmp, searched recursively, sorted; --out inside it is '
      'skipped), or tfds:NAME:SPLIT (a tensorflow-datasets split; '
      'its images are center-cropped and resized to the model resolution). '
      'Default: the 16 example faces shipped in the package.')
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
  p.add_argument('--steps', type=int, default=None, metavar='N',
                 help='Adam iterations on z (default: 1000, the paper, on a '
                 f'GPU/TPU; {runner.CPU_DEFAULT_STEPS} on a CPU, where '
                 '1000 steps take tens of minutes).')
  p.add_argument('--tune-steps', type=int, default=0, metavar='N',
                 help='pivotal tuning after the search: N Adam steps on each '
                 'image\'s own copy of G\'s weights so that G(z) fits the '
                 'known pixels, with a term that keeps G unchanged away from '
                 'z; the hole is then filled by the tuned G (default: 0, off; '
                 'each step costs ~4 search steps, and on the shipped model '
                 'it barely changed the results: docs/results.md).')
  p.add_argument('--restarts', type=int, default=1, metavar='K',
                 help='random initializations of z per image; the one with '
                 'the lowest final loss is kept (default: 1).')
  p.add_argument('--batch-size', type=int, default=64, metavar='N',
                 help='images optimized together in one compiled call '
                 '(default: 64). Each image keeps its own random start, so '
                 'results do not depend on it (up to float rounding).')
  p.add_argument('--loss', default=None, metavar='{paper,yeh,yeh_gradient}',
                 choices=('paper', 'yeh', 'yeh_gradient'),
                 help='paper: alpha=0.1 values, beta=0.9 gradients, eta=0.5 '
                 'critics (D + Dp); yeh: Yeh et al. (values + 0.003 prior); '
                 'yeh_gradient: Yeh et al. plus the gradient term. '
                 'Default: paper.')
  p.add_argument('--seed', type=int, default=0, metavar='N',
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
                 'grid.png, drawn from their G(z): until it is written '
                 'they are done again), complete the others, and extend '
                 'metrics.csv (the skipped images\' rows are recomputed from '
                 'their PNGs) and rewrite summary.json. Outputs without '
                 'OUT/run.json, the record of their settings, are refused.')
  p.add_argument('--limit', type=int, default=None, metavar='N',
                 help='use only the first N images.')
  p.add_argument('--no-blend', action='store_true',
                 help='skip Poisson blending: <name>.png is then '
                 'M*y + (1-M)*G(z), like raw/<name>.png.')
  p.add_argument('--grid-max', type=int, default=64, metavar='N',
                 help='images in grid.png: the first N (default: 64; the '
                 'PNG grows with N, ~2 MB for 64 faces of 64x64).')
  p.add_argument('--devices', type=int, default=None, metavar='N',
                 help='complete each batch on the first N local devices, '
                 'one shard of the batch per device (default: all of them). '
                 'Results change by float rounding only.')
  p.add_argument('--dtype', default=None, choices=('float32', 'bfloat16'),
                 help='activations of G and the critics during the search '
                 '(z, Adam and the loss stay float32); bfloat16 is faster on '
                 'GPUs. Default: the dtype the model was trained with.')
  group = p.add_argument_group(
      'several processes (hosts), as train.py; see "several GPUs, several '
      'hosts" below')
  # The spellings of train.py; the underscore forms are kept as aliases.
  group.add_argument('--coordinator-address', '--coordinator_address',
                     dest='coordinator_address', default=None,
                     metavar='HOST:PORT',
                     help='host:port of process 0; with --num-processes and '
                     '--process-id.')
  group.add_argument('--num-processes', '--num_processes',
                     dest='num_processes', type=int, default=None,
                     metavar='N', help='the process count.')
  group.add_argument('--process-id', '--process_id', dest='process_id',
                     type=int, default=None, metavar='I',
                     help='this process, 0 .. --num-processes - 1.')
  group.add_argument('--multiprocess', action='store_true',
                     help='jax.distributed.initialize() detects the processes '
                     '(SLURM, TPU pods, ...) instead of the three flags above.')
  group.add_argument('--process-timeout', type=float, default=3600,
                     metavar='SECONDS',
                     help='process 0 gives up waiting for the others after '
                     'this long without news from any of them (default: '
                     '3600).')
  p.set_defaults(share=None)  # processes.Share of a multi-process run
  return p


def _check_flags(args):
  for flag in ('input', 'out', 'mask', 'reference', 'checkpoint'):
    if getattr(args, flag) == '':
      raise InputError(f'--{flag} is empty; expected a path'
                       + (f' or one of {", ".join(masks.MASK_KINDS)}'
                          if flag == 'mask' else ''))
  inputs.check_counts(
      args.limit, args.seed, steps=1 if args.steps is None else args.steps,
      restarts=args.restarts, batch_size=args.batch_size,
      grid_max=args.grid_max)
  if args.reference and args.evaluate:
    raise InputError('--evaluate cannot be combined with --reference: a '
                     'conditional completion has no ground truth to compare '
                     'to')
  if args.resume and args.overwrite:
    raise InputError('--resume keeps the finished outputs and --overwrite '
                     'replaces them: pass one of them')
  if args.tune_steps < 0:
    raise InputError(f'--tune-steps must be >= 0, got {args.tune_steps}')
  if args.tune_steps > inputs.MAX_STEPS:  # as --steps: a typo, days of work
    raise InputError(f'--tune-steps must be <= {inputs.MAX_STEPS}, got '
                     f'{args.tune_steps}')
  if args.devices is not None and args.devices < 1:
    raise InputError(f'--devices must be >= 1, got {args.devices}')
  if not args.process_timeout > 0:
    raise InputError(f'--process-timeout must be > 0, got '
                     f'{args.process_timeout}')


def prepare(args) -> runner.Plan:
  """The plan of a parsed command line: checks every input and output path
  (images are read again batch by batch when completed). Raises InputError,
  errors.CorruptImageError or ValueError (naming the file) for bad inputs;
  writes nothing but the lock on --out (`outputs.OutLock`; released on an
  error, else by `runner.execute`)."""
  _check_flags(args)
  with errors.naming_flags(model='--checkpoint'):
    model_dir, config = loading.find_model(args.checkpoint)
  resolution = int(config.model.resolution)
  out, share = Path(args.out), args.share
  # Before the inputs, which look for --out inside --input: a path that
  # cannot be one (a name too long, ...) is named as --out's.
  outputs.check_out_folder(out)
  images, names = inputs.load_inputs(args.input, resolution, args.limit,
                                     out=out)
  mask = inputs.load_masks(args.mask, names, resolution, args.seed)
  reference = None
  if args.reference is not None:
    reference, _ = inputs.load_image_files([args.reference], resolution,
                                           'reference')
    if args.loss is not None:
      inputs.note(f'note: --loss {args.loss} does not apply to conditional '
                  'completion (--reference); it has its own loss (paper eq. '
                  '10-12)')
  # Before the outputs are checked: a run started meanwhile on OUT cannot
  # write what this one finds absent. Released by `runner.execute`.
  lock = outputs.OutLock(out, None if share is None else share.index)
  lock.acquire()
  try:
    done = outputs.check_outputs(
        out, names, outputs.input_files(args.input, args.mask,
                                        args.reference, out),
        evaluate=args.evaluate, overwrite=args.overwrite, resume=args.resume,
        grid_rows=args.grid_max,
        rows=None if share is None else share.rows(len(names)),
        run_files=share is None or share.index == 0)
    inputs.mask_notes(mask, names, conditional=reference is not None)
  except BaseException:
    lock.release()
    raise
  settings = runner.Settings(
      steps=args.steps, restarts=args.restarts, tune_steps=args.tune_steps,
      loss=args.loss, seed=args.seed, batch_size=args.batch_size,
      blend=not args.no_blend, dtype=args.dtype, evaluate=args.evaluate,
      resume=args.resume, grid_max=args.grid_max, devices=args.devices,
      process_timeout=args.process_timeout)
  return runner.Plan(model_dir, images, names, resolution, mask,
                          reference, out, done, settings,
                          _record(args, model_dir), share, lock)


def _record(args, model_dir) -> dict:
  """{flag: value} of what changes the images (not --batch-size or
  --devices: float rounding only) for OUT/run.json, which --resume checks;
  the model's step, --steps and --dtype are added once it is loaded."""
  path = lambda p: p and outputs.text(Path(p).absolute())
  return {
      '--checkpoint': path(model_dir),
      '--input': (args.input if args.input.startswith('tfds:')
                  else path(args.input)),
      '--mask': (args.mask if args.mask in masks.MASK_KINDS
                 else path(args.mask)),
      '--reference': path(args.reference),
      '--loss': 'conditional' if args.reference else (args.loss or 'paper'),
      '--restarts': args.restarts, '--seed': args.seed,
      '--no-blend': args.no_blend, '--tune-steps': args.tune_steps}


def run(args, plan: runner.Plan) -> dict:
  """Executes the plan and reports it; returns the run's summary."""
  outcome = runner.execute(plan)
  out, share, summary = outputs.text(plan.out), plan.share, outcome.summary
  completed, resumed = outcome.completed, outcome.resumed
  if share is not None and share.index != 0:
    print(f'process {share.index}: wrote {completed} completed '
          f'image{"s" * (completed != 1)} to {out}/')
    return summary
  print(f'wrote {completed} completed image{"s" * (completed != 1)} to '
        f'{out}/ (unblended overlays in '
        f'{outputs.text(plan.out / outputs.RAW_DIR)}/, grid '
        f'{outputs.text(plan.out / outputs.GRID_FILE)})'
        + (f'; {resumed} finished before' if resumed else '')
        + ('' if share is None else f'; {share.count} processes'))
  if args.evaluate:
    print(f'metrics: MSE {summary["mse"]:.2f}, PSNR {summary["psnr"]:.2f} dB '
          f'(mean per image {summary["psnr_mean"]:.2f}), SSIM '
          f'{summary["ssim"]:.4f}, hole MSE {summary["hole_mse"]:.2f} over '
          f'{len(plan.names)} images -> '
          f'{outputs.text(plan.out / outputs.METRICS_FILE)}, '
          f'{outputs.text(plan.out / outputs.SUMMARY_FILE)}')
    if summary.get('identity_count'):
      print(f'identity: distance to the other photos of the same person '
            f'{summary["identity_mean"]:.3f} (originals '
            f'{summary["identity_original_mean"]:.3f}), the same person '
            f'(< 0.6) for {100 * summary["identity_rate"]:.1f}% (originals '
            f'{100 * summary["identity_original_rate"]:.1f}%) of '
            f'{summary["identity_count"]} images')
  return summary


def _recording_failure(fn):
  """`fn(args, ...)` that records a failure in the status log of one of
  several processes, for process 0 to report."""
  def wrapped(args, *rest):
    with processes.failure_recorded(Path(args.out), args.share):
      return fn(args, *rest)
  return wrapped


def main(argv=None):
  """Entry point; `argv` without the program name (default: sys.argv[1:]).

  Returns the run's summary dict; exits (SystemExit) with code 2 on bad
  flags or inputs, before anything is computed or written, 1 when the
  computation or a write fails (on process 0 of several: when another
  process failed), 130 on Ctrl-C and 143 on SIGTERM.
  """
  cli.prepare_host()
  args = build_parser().parse_args(argv)
  try:  # before any JAX computation
    args.share = processes.join(args.coordinator_address, args.num_processes,
                                args.process_id, args.multiprocess)
  except InputError as e:
    cli.fail(str(e))
  except errors.RunError as e:
    cli.fail(str(e), cli.FAILURE)
  return cli.run_checked(_recording_failure(prepare),
                         _recording_failure(run), args)


if __name__ == '__main__':
  main()
