"""`inpaint.py` / `jaxinpaint-inpaint`: fill the holes of images with a model.

The flags and `run`: `prepare` checks every input and output path before
any computation with `inputs` and `outputs` (so a bad run writes nothing),
then `run` completes with `pipeline` and writes each batch's PNGs and
metrics as soon as it is done (`outputs.BatchWriter`: an interrupted run
keeps them), then a grid and a summary. Expected failures end with one
`error: ...` line on stderr and the exit codes of `cli.run_checked`: 2 (bad
flags or inputs), 1 (the computation or a write went wrong), 130 (Ctrl-C)
or 143 (SIGTERM); notes and warnings also go to stderr.
"""
import argparse
import dataclasses
from pathlib import Path

import numpy as np

# No JAX behind these: `--help` and input errors stay fast.
from jaxinpaint import cli, errors, inputs as inputs_lib, loading, masks
from jaxinpaint import outputs, processes
from jaxinpaint.errors import InputError

DEFAULT_INPUT = inputs_lib.EXAMPLES / 'faces'  # in the package: any cwd works
PAPER_STEPS = 1000
CPU_DEFAULT_STEPS = 200

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
  summary.json      with --evaluate: mse, psnr (10*log10(255^2/mean MSE),
                    as in the paper's tables), psnr_mean, ssim, hole_mse,
                    n_images, and the run's settings
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

several GPUs, several hosts:
  One process completes each batch on all its local devices (--devices N:
  the first N), one shard of the batch per device. With the flags of
  train.py (--coordinator-address, --num-processes, --process-id, or
  --multiprocess where jax.distributed detects the cluster) each of several
  processes completes a contiguous block of the inputs (by process index) on
  its own devices and writes only its images; process 0 then writes
  grid.png, metrics.csv and summary.json for all of them, equal to a
  one-process run's. --out must be storage all processes share. Each
  process keeps a status file in OUT/.processes/ (updated after each of its
  batches); process 0 waits for all of them, reports a failed or silent
  process by its index, and shows the progress bar: the images finished by
  all processes, the others' counted at their last finished batch. After a
  failure, the same command with --resume on every process does the rest.

examples:
  inpaint.py --input photos/ --mask masks/ --out filled
  inpaint.py --input ../shared/data/celeba64/test --limit 64 --evaluate \\
      --mask three_squares --checkpoint runs/celeba64
  inpaint.py --input face.png --reference other_face.png --mask center
"""


def build_parser() -> argparse.ArgumentParser:
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
      '--input', default=str(DEFAULT_INPUT), metavar='SRC',
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
                 f'GPU/TPU; {CPU_DEFAULT_STEPS} on a CPU, where 1000 steps '
                 'take tens of minutes).')
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
                 'grid.png), complete the others, and extend metrics.csv '
                 '(the skipped images\' rows are recomputed from their PNGs) '
                 'and rewrite summary.json.')
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
  inputs_lib.check_counts(
      args.limit, args.seed, steps=1 if args.steps is None else args.steps,
      restarts=args.restarts, batch_size=args.batch_size,
      grid_max=args.grid_max)
  if args.reference and args.evaluate:
    raise InputError('--evaluate cannot be combined with --reference: a '
                    'conditional completion has no ground truth to compare to')
  if args.resume and args.overwrite:
    raise InputError('--resume keeps the finished outputs and --overwrite '
                    'replaces them: pass one of them')
  if args.tune_steps < 0:
    raise InputError(f'--tune-steps must be >= 0, got {args.tune_steps}')
  if args.devices is not None and args.devices < 1:
    raise InputError(f'--devices must be >= 1, got {args.devices}')
  if not args.process_timeout > 0:
    raise InputError(f'--process-timeout must be > 0, got '
                    f'{args.process_timeout}')


@dataclasses.dataclass
class Inputs:
  """Everything a run needs, checked: nothing computed or written yet."""
  model_dir: Path
  images: np.ndarray  # (N, R, R, 3) float32 in [-1, 1]
  names: list
  mask: np.ndarray  # (1 or N, R, R, 1) float32, 1 = known
  reference: np.ndarray | None  # (1, R, R, 3) or None
  out: Path
  done: np.ndarray  # (N,) bool: finished by an earlier run (--resume)
  finished: np.ndarray | None  # --resume --evaluate: their PNGs, uint8
  lock: outputs.OutLock | None = None  # held on `out` until `run` ends


def prepare(args) -> Inputs:
  """Reads and checks every input and output path of a parsed command line.

  Raises InputError, data.CorruptImageError or ValueError (from the loaders,
  naming the file) for bad inputs; computes nothing and writes nothing
  but the lock on --out (`outputs.OutLock`; released on an error, else by
  `run`).
  """
  _check_flags(args)
  try:
    model_dir, config = loading.find_model(args.checkpoint)
  except errors.ArgumentError as e:
    raise InputError(e.for_flag('--checkpoint')) from e
  resolution = int(config.model.resolution)
  images, names = inputs_lib.load_inputs(args.input, resolution, args.limit,
                                         out=Path(args.out))
  mask = inputs_lib.load_masks(args.mask, names, resolution, args.seed)
  reference = None
  if args.reference is not None:
    reference, _ = inputs_lib.load_image_files([args.reference], resolution,
                                               'reference')
    if args.loss is not None:
      inputs_lib.note(f'note: --loss {args.loss} does not apply to '
                      'conditional completion (--reference); it has its own '
                      'loss (paper eq. 10-12)')
  out = Path(args.out)
  outputs.check_out_folder(out)
  share = args.share
  # Before the outputs are checked: a run started meanwhile on OUT cannot
  # write what this one finds absent. Released by `run`.
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
    finished = None
    # Several processes: process 0 reads all the PNGs at the end instead.
    if args.evaluate and done.any() and share is None:
      finished = outputs.read_finished(out, names, done, resolution)
    inputs_lib.mask_notes(mask, names, conditional=reference is not None)
  except BaseException:
    lock.release()
    raise
  return Inputs(model_dir, images, names, mask, reference, out, done,
                finished, lock)


def _completion_devices(count):
  """--devices as a list of local devices, or a InputError naming it."""
  from jaxinpaint import pipeline  # pylint: disable=g-import-not-at-top
  try:
    return pipeline.completion_devices(count)
  except ValueError:
    import jax  # pylint: disable=g-import-not-at-top
    local = jax.local_devices()
    raise InputError(f'--devices {count}: this process has {len(local)} local '
                    f'{local[0].platform} device{"s" * (len(local) != 1)}; '
                    f'expected 1 to {len(local)}') from None


def run(args, inputs: Inputs) -> dict:
  """Completes the checked inputs and writes every output (`_complete`),
  then releases the lock on --out that `prepare` took."""
  try:
    return _complete(args, inputs)
  finally:
    if inputs.lock is not None:
      inputs.lock.release()


def _complete(args, inputs: Inputs) -> dict:
  """Completes the checked inputs and writes every output.

  Returns the summary: metrics (with --evaluate) and the run's settings.
  Raises InputError when the model cannot be loaded, errors.RunError when
  the completion is not finite or a write fails, errors.Interrupted (what
  was kept) on Ctrl-C. One of several processes (`args.share`) completes
  and writes its block of images only; process 0 then waits for the others
  and writes the run's files (`_finish_processes`).
  """
  # pylint: disable-next=g-import-not-at-top
  from jaxinpaint import checkpoint, completion, metrics, pipeline
  images, names, mask, reference, out = (inputs.images, inputs.names,
                                         inputs.mask, inputs.reference,
                                         inputs.out)
  n, conditional, share = len(images), reference is not None, args.share
  devices = _completion_devices(args.devices)
  try:
    model = loading.load_model(inputs.model_dir)
  except (checkpoint.ChecksumError, checkpoint.DamagedCheckpointError) as e:
    raise InputError(str(e)) from e
  except Exception as e:  # pylint: disable=broad-except
    # A damaged checkpoint: orbax and tensorstore raise many types.
    first = (str(e).strip().splitlines() or [''])[0]
    raise InputError(f'{inputs.model_dir}: cannot load the model: '
                    f'{type(e).__name__}: {first}') from e

  loss_name = None if conditional else (args.loss or 'paper')
  spec = (completion.ConditionalSpec() if conditional
          else completion.get_loss(loss_name))
  platform = devices[0].platform
  steps = args.steps or (CPU_DEFAULT_STEPS if platform == 'cpu'
                         else PAPER_STEPS)
  options = completion.Options(steps=steps, restarts=args.restarts,
                               blend=not args.no_blend, dtype=args.dtype,
                               tune_steps=args.tune_steps)
  settings = _settings(args, inputs.model_dir, model.step, loss_name, steps,
                       args.dtype or str(model.config.model.dtype))
  outputs.check_run_settings(out, settings, args.resume)
  if share is None or share.index == 0:
    try:
      outputs.write_json(out / outputs.RUN_FILE, settings)
    except OSError as e:
      raise errors.RunError(f'cannot write {outputs.text(out)}/'
                             f'{outputs.RUN_FILE}: {e.strerror or e}') from e
  keep = np.broadcast_to(mask > 0.5, images.shape[:-1] + (1,))
  mask_rows = lambda rows: mask if len(mask) == 1 else mask[rows]
  # --evaluate: the inputs are whole, so damage them (holes grey, 0 in
  # [-1, 1]). Otherwise y is the damaged image as given: completion never
  # reads its hole pixels.
  masked = np.where(keep, images, np.float32(0))
  y = masked if args.evaluate else images
  grid_columns = (masked, reference, images if args.evaluate else None)

  finished_metrics = None
  if inputs.finished is not None:
    done = np.flatnonzero(inputs.done)
    finished_metrics, _ = pipeline.evaluate(
        images[done], inputs.finished.astype(np.float32) / 127.5 - 1,
        mask_rows(done))
  block = np.arange(n) if share is None else share.rows(n)
  todo = block[~inputs.done[block]]
  # Several processes: this one writes its images only (no grid rows, no
  # metrics); it leaves its grid rows' G(z) for process 0.
  writer = outputs.BatchWriter(
      out, names, grid_columns, inputs.done,
      args.grid_max if share is None else 0, finished_metrics)
  status = None if share is None else processes.Status(out, share)
  progress = _Progress(n, share, out) if share is not None else None
  results = None
  try:
    if status is not None:
      status.write(processes.RUNNING, completed=0, todo=len(todo),
                   resumed=len(block) - len(todo), written=[])
    if (len(todo) and not args.evaluate
        and (share is None or share.index == 0)):
      stale = outputs.remove_stale_metrics(out)
      if stale:
        inputs_lib.note(f'note: removed {" and ".join(stale)} of an earlier '
                        'run with --evaluate: they would not describe the '
                        'images completed now (rerun with --evaluate for '
                        'metrics)')
    if len(todo) < len(block):
      inputs_lib.note(f'--resume: {len(block) - len(todo)} of {len(block)} '
                      f'images are finished in {outputs.text(out)}/; '
                      'skipping them')
    if len(todo):
      batch = pipeline.round_batch_size(args.batch_size, len(todo),
                                        len(devices))
      try:  # before compiling a search that cannot fit
        pipeline.check_search_memory(model, batch, args.restarts, devices)
      except ValueError as e:
        raise InputError(str(e).replace('restarts', '--restarts').replace(
            'batch_size', '--batch-size')) from e
      batches = -(-len(todo) // batch)
      who = '' if share is None else f'process {share.index}: '
      tuning = (f', then {args.tune_steps} steps tuning G'
                if args.tune_steps else '')
      inputs_lib.note(
          f'{who}completing {len(todo)} image{"s" * (len(todo) != 1)} with '
          f'the model at step {model.step}: {steps} Adam steps x {args.restarts} '
          f'restart(s){tuning} on {len(devices)} {platform} '
          f'device{"s" * (len(devices) != 1)}, {batches} compiled '
          f'batch{"es" * (batches != 1)} (a CPU takes minutes; a GPU seconds)')

      def on_batch(start, stop, batch):
        rows = todo[start:stop]
        per_image = None
        if args.evaluate and share is None:
          per_image, _ = pipeline.evaluate(images[rows], batch,
                                           mask_rows(rows))
        writer.batch(rows, batch, per_image)
        if status is not None:
          status.write(processes.RUNNING, completed=stop, written=(
              status.fields['written'] + _image_files(names, rows)))
          progress.update()

      results = pipeline.inpaint_batches(
          model, y[todo], mask_rows(todo), todo, spec=spec,
          options=options, batch_size=args.batch_size, seed=args.seed,
          reference=reference, on_batch=on_batch, devices=devices,
          progress=share is None)

    final_losses = (np.zeros(0, np.float32) if results is None
                    else results['final_loss'].min(axis=1))
    if share is not None:
      in_grid = todo < args.grid_max
      if in_grid.any():
        processes.save_arrays(
            processes.grid_rows_path(out, share.index), rows=todo[in_grid],
            generated=results['generated'][in_grid],
            blended=results['blended'][in_grid])
      status.write(processes.DONE, final_losses=final_losses.tolist())
      if share.index != 0:
        progress.close()
        print(f'process {share.index}: wrote {len(todo)} completed '
              f'image{"s" * (len(todo) != 1)} to {outputs.text(out)}/')
        return {}
      writer.close()
      writer, resumed, final_losses = _finish_processes(
          args, inputs, grid_columns, mask_rows, progress)
    else:
      resumed = n - len(todo)
    summary = {}
    if args.evaluate:
      summary = metrics.summarize(*(writer.per_image[k]
                                    for k in outputs.METRIC_KEYS))
    summary.update(
        method='conditional' if conditional else 'inpainting',
        loss=loss_name or 'conditional',
        loss_weights=dataclasses.asdict(spec),
        steps=steps, restarts=args.restarts, tune_steps=args.tune_steps,
        batch_size=args.batch_size,
        seed=args.seed, mask=outputs.text(args.mask), blend=not args.no_blend,
        input=outputs.text(args.input),
        reference=args.reference and outputs.text(args.reference),
        checkpoint=outputs.text(inputs.model_dir), checkpoint_step=model.step,
        model={k: model.config.model[k] for k in ('arch', 'resolution', 'width',
                                            'z_dim')},
        dtype=args.dtype or str(model.config.model.dtype), resumed=resumed,
        # Of the images completed in this run (None: all were resumed).
        final_loss_mean=(float(final_losses.mean()) if len(final_losses)
                         else None),
        device=devices[0].device_kind)
    writer.finish(summary if args.evaluate else None)
  except KeyboardInterrupt as e:
    what = ('terminated by SIGTERM' if isinstance(e, cli.Terminated)
            else 'interrupted')
    raise errors.Interrupted(
        f'{what}: {writer.complete} of {n} images are complete in '
        f'{outputs.text(out)}/; rerun with --resume to do the rest') from e
  finally:
    writer.close()
    if progress is not None:
      progress.close()

  completed = n - resumed
  print(f'wrote {completed} completed image{"s" * (completed != 1)} to '
        f'{outputs.text(out)}/ (unblended overlays in '
        f'{outputs.text(out / outputs.RAW_DIR)}/, grid '
        f'{outputs.text(out / outputs.GRID_FILE)})'
        + (f'; {resumed} finished before' if resumed else '')
        + ('' if share is None else f'; {share.count} processes'))
  if args.evaluate:
    print(f'metrics: MSE {summary["mse"]:.2f}, PSNR {summary["psnr"]:.2f} dB '
          f'(mean per image {summary["psnr_mean"]:.2f}), SSIM '
          f'{summary["ssim"]:.4f}, hole MSE {summary["hole_mse"]:.2f} over '
          f'{n} images -> {outputs.text(out / outputs.METRICS_FILE)}, '
          f'{outputs.text(out / outputs.SUMMARY_FILE)}')
  return summary


def _settings(args, model_dir, model_step, loss_name, steps, dtype) -> dict:
  """{flag: value} of what changes the completed images (not --batch-size
  or --devices: float rounding only), recorded in OUT/run.json so that
  --resume refuses to mix images of other settings."""
  path = lambda p: p and outputs.text(Path(p).absolute())
  return {
      '--checkpoint': path(model_dir), 'model step': int(model_step),
      '--input': (args.input if args.input.startswith('tfds:')
                  else path(args.input)),
      '--mask': (args.mask if args.mask in masks.MASK_KINDS
                 else path(args.mask)),
      '--reference': path(args.reference),
      '--loss': loss_name or 'conditional', '--steps': steps,
      '--restarts': args.restarts, '--seed': args.seed, '--dtype': dtype,
      '--no-blend': args.no_blend, '--tune-steps': args.tune_steps}


def _image_files(names, rows) -> list:
  """The files written for the images `rows`, relative to --out."""
  return [f'{outputs.RAW_DIR}/{outputs.text(names[i])}.png' for i in rows] + [
      f'{outputs.text(names[i])}.png' for i in rows]


class _Progress:
  """Process 0's bar over the images of all processes: each one's count is
  that of its status file, i.e. at its last finished batch. Other
  processes show none."""

  def __init__(self, n, share, out):
    import tqdm  # pylint: disable=g-import-not-at-top
    self.share, self.out = share, out
    self.bar = tqdm.tqdm(total=n, desc='completing (all processes)',
                         unit='image', leave=False,
                         disable=share.index != 0)

  def update(self, statuses=None):
    if self.bar.disable:
      return
    if statuses is None:
      statuses = processes.read_statuses(self.out, self.share)
    self.bar.n = sum(s.get('resumed', 0) + s.get('completed', 0)
                     for s in statuses.values())
    self.bar.refresh()

  def close(self):
    self.bar.close()


def _finish_processes(args, inputs, grid_columns, mask_rows, progress):
  """Process 0, after its own block: waits for every process, then writes
  grid.png (from the G(z) each process left) and, with --evaluate,
  metrics.csv and summary.json from the PNGs of all processes, read back as
  --resume does. Returns (writer, resumed count, final losses)."""
  from jaxinpaint import pipeline  # pylint: disable=g-import-not-at-top
  share, out, names = args.share, inputs.out, inputs.names
  n = len(names)
  statuses = processes.wait_for_all(out, share, args.process_timeout,
                                    on_update=progress.update)
  grid_rows = min(n, args.grid_max)
  # The grid's images were all done before (and grid.png kept) or are all
  # completed in this run (outputs.finished): each process left its rows.
  grid_done = inputs.done[:grid_rows].all()
  writer = outputs.BatchWriter(out, names, grid_columns,
                               np.full(n, grid_done), args.grid_max)
  if not grid_done:
    for i in range(share.count):
      block = dataclasses.replace(share, index=i).rows(n)
      if len(block) and block[0] < grid_rows:  # it had rows of the grid
        path = processes.grid_rows_path(out, i)
        try:
          with np.load(path) as rows:
            writer.add_grid_rows(rows['rows'], rows['generated'],
                                 rows['blended'])
        except (OSError, ValueError, KeyError) as e:
          raise errors.RunError(f'cannot read {outputs.text(path)}, the '
                                 f'grid rows of process {i}: {e}') from e
    if writer.grid is not None:
      raise errors.RunError(
          f'the processes left {len(writer.grid)} of the {grid_rows} rows of '
          f'{outputs.text(out / outputs.GRID_FILE)}; rerun without --resume')
  if args.evaluate:
    everything = np.ones(n, bool)
    completed = outputs.read_finished(out, names, everything,
                                      inputs.images.shape[1])
    per_image, _ = pipeline.evaluate(
        inputs.images, completed.astype(np.float32) / 127.5 - 1,
        mask_rows(np.arange(n)))
    writer.add_metrics(np.arange(n), per_image)
  resumed = sum(s['resumed'] for s in statuses)
  final_losses = np.concatenate([np.asarray(s['final_losses'], np.float32)
                                 for s in statuses])
  return writer, resumed, final_losses


def _start_processes(args):
  """With the multi-process flags: joins the processes (args.share)."""
  problem = processes.check_flags(args.coordinator_address,
                                  args.num_processes, args.process_id,
                                  args.multiprocess)
  if problem:
    cli.fail(problem)
  if args.coordinator_address is None and not args.multiprocess:
    return
  try:
    args.share = processes.start(args.coordinator_address,
                                 args.num_processes, args.process_id)
  except Exception as e:  # pylint: disable=broad-except
    first = (str(e).strip().splitlines() or [type(e).__name__])[0]
    cli.fail(f'cannot join the other processes with jax.distributed: {first}',
             cli.FAILURE)


def _recording_failure(fn):
  """`fn(args, ...)` that records a failure in the status file of one of
  several processes, for process 0 to report."""
  def wrapped(args, *rest):
    if args.share is None:
      return fn(args, *rest)
    with processes.Status(Path(args.out), args.share).failure_recorded():
      return fn(args, *rest)
  return wrapped


def main(argv=None):
  """Entry point; `argv` without the program name (default: sys.argv[1:]).

  Returns the run's summary dict; exits (SystemExit) with code 2 on bad
  flags or inputs, before anything is computed or written, 1 when the
  computation or a write fails (on process 0 of several: when another
  process failed), 130 on Ctrl-C and 143 on SIGTERM.
  """
  args = build_parser().parse_args(argv)
  _start_processes(args)
  return cli.run_checked(_recording_failure(prepare),
                         _recording_failure(run), args)


if __name__ == '__main__':
  main()
