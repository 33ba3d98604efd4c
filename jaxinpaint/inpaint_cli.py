"""`inpaint.py` / `jaxinpaint-inpaint`: fill the holes of images with a model.

The flags and `run`: `prepare` checks every input and output path before
any computation with `inputs` and `outputs` (so a bad run writes nothing),
then `run` completes with `pipeline` and writes each batch's PNGs and
metrics as soon as it is done (`outputs.BatchWriter`: an interrupted run
keeps them), then a grid and a summary. Expected failures end with one
`error: ...` line on stderr and the exit codes of `cli.run_checked`: 2 (bad
flags or inputs), 1 (the computation or a write went wrong) or 130
(Ctrl-C); notes and warnings also go to stderr.
"""
import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np

# No JAX behind these: `--help` and input errors stay fast.
from jaxinpaint import cli, inputs as inputs_lib, masks, outputs
from jaxinpaint.inputs import UserError

DEFAULT_INPUT = inputs_lib.EXAMPLES / 'faces'  # in the package: any cwd works
PAPER_STEPS = 1000
CPU_DEFAULT_STEPS = 200

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
      '--input', default=str(DEFAULT_INPUT), metavar='SRC',
      help='an image file, a folder of images (.png/.jpg/.jpeg, searched '
      'recursively, sorted), or tfds:NAME:SPLIT (a tensorflow-datasets split; '
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


def _check_flags(args):
  inputs_lib.check_counts(
      args.limit, args.seed, steps=1 if args.steps is None else args.steps,
      restarts=args.restarts, batch_size=args.batch_size,
      grid_max=args.grid_max)
  if args.reference and args.evaluate:
    raise UserError('--evaluate cannot be combined with --reference: a '
                    'conditional completion has no ground truth to compare to')
  if args.resume and args.overwrite:
    raise UserError('--resume keeps the finished outputs and --overwrite '
                    'replaces them: pass one of them')


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


def prepare(args) -> Inputs:
  """Reads and checks every input and output path of a parsed command line.

  Raises UserError, data.CorruptImageError or ValueError (from the loaders,
  naming the file) for bad inputs; computes and writes nothing.
  """
  _check_flags(args)
  model_dir, config = inputs_lib.find_model(args.checkpoint)
  resolution = int(config.model.resolution)
  images, names = inputs_lib.load_inputs(args.input, resolution, args.limit)
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
  done = outputs.check_outputs(
      out, names, outputs.input_files(args.input, args.mask, args.reference),
      evaluate=args.evaluate, overwrite=args.overwrite, resume=args.resume,
      grid_rows=args.grid_max)
  finished = None
  if args.evaluate and done.any():
    finished = outputs.read_finished(out, names, done, resolution)
  inputs_lib.mask_notes(mask, names, conditional=reference is not None)
  return Inputs(model_dir, images, names, mask, reference, out, done,
                finished)


def run(args, inputs: Inputs) -> dict:
  """Completes the checked inputs and writes every output.

  Returns the summary: metrics (with --evaluate) and the run's settings.
  Raises UserError when the model cannot be loaded, outputs.RunError when
  the completion is not finite or a write fails, outputs.Interrupted (what
  was kept) on Ctrl-C.
  """
  import jax  # pylint: disable=g-import-not-at-top
  # pylint: disable-next=g-import-not-at-top
  from jaxinpaint import checkpoint, completion, metrics, pipeline
  images, names, mask, reference, out = (inputs.images, inputs.names,
                                         inputs.mask, inputs.reference,
                                         inputs.out)
  n, conditional = len(images), reference is not None
  try:
    model = inputs_lib.load_model(inputs.model_dir)
  except checkpoint.ChecksumError as e:
    raise UserError(str(e)) from e
  except Exception as e:  # pylint: disable=broad-except
    # A damaged checkpoint: orbax and tensorstore raise many types.
    first = (str(e).strip().splitlines() or [''])[0]
    raise UserError(f'{inputs.model_dir}: cannot load the model: '
                    f'{type(e).__name__}: {first}') from e

  loss_name = None if conditional else (args.loss or 'paper')
  spec = (completion.ConditionalSpec() if conditional
          else completion.get_loss(loss_name))
  steps = args.steps or (CPU_DEFAULT_STEPS if jax.devices()[0].platform ==
                         'cpu' else PAPER_STEPS)
  options = completion.Options(steps=steps, restarts=args.restarts,
                               blend=not args.no_blend)
  keep = np.broadcast_to(mask > 0.5, images.shape[:-1] + (1,))
  mask_rows = lambda rows: mask if len(mask) == 1 else mask[rows]
  # --evaluate: the inputs are whole, so damage them (holes grey, 0 in
  # [-1, 1]). Otherwise y is the damaged image as given: completion never
  # reads its hole pixels.
  masked = np.where(keep, images, np.float32(0))
  y = masked if args.evaluate else images

  finished_metrics = None
  if inputs.finished is not None:
    done = np.flatnonzero(inputs.done)
    finished_metrics, _ = pipeline.evaluate(
        images[done], inputs.finished.astype(np.float32) / 127.5 - 1,
        mask_rows(done))
  todo = np.flatnonzero(~inputs.done)
  writer = outputs.BatchWriter(
      out, names, (masked, reference, images if args.evaluate else None),
      inputs.done, args.grid_max, finished_metrics)
  results = None
  try:
    if len(todo) < n:
      inputs_lib.note(f'--resume: {n - len(todo)} of {n} images are finished '
                      f'in {outputs.text(out)}/; skipping them')
    if len(todo):
      batches = -(-len(todo) // min(args.batch_size, len(todo)))
      inputs_lib.note(
          f'completing {len(todo)} image{"s" * (len(todo) != 1)} with the '
          f'model at step {model.step}: {steps} Adam steps x {args.restarts} '
          f'restart(s) on {jax.devices()[0].platform}, {batches} compiled '
          f'batch{"es" * (batches != 1)} (a CPU takes minutes; a GPU seconds)')

      def on_batch(start, stop, batch):
        rows = todo[start:stop]
        per_image = None
        if args.evaluate:
          per_image, _ = pipeline.evaluate(images[rows], batch,
                                           mask_rows(rows))
        writer.batch(rows, batch, per_image)

      results = pipeline.inpaint_batches(
          model, y[todo], mask_rows(todo), todo, spec=spec,
          options=options, batch_size=args.batch_size, seed=args.seed,
          reference=reference, on_batch=on_batch)

    summary = {}
    if args.evaluate:
      summary = metrics.summarize(*(writer.per_image[k]
                                    for k in outputs.METRIC_KEYS))
    summary.update(
        method='conditional' if conditional else 'inpainting',
        loss=loss_name or 'conditional',
        loss_weights=dataclasses.asdict(spec),
        steps=steps, restarts=args.restarts, batch_size=args.batch_size,
        seed=args.seed, mask=outputs.text(args.mask), blend=not args.no_blend,
        input=outputs.text(args.input),
        reference=args.reference and outputs.text(args.reference),
        checkpoint=outputs.text(inputs.model_dir), checkpoint_step=model.step,
        model={k: model.config.model[k] for k in ('arch', 'resolution', 'width',
                                            'z_dim')},
        resumed=n - len(todo),
        # Of the images completed in this run (None: all were resumed).
        final_loss_mean=(None if results is None else
                         float(results['final_loss'].min(axis=1).mean())),
        device=jax.devices()[0].device_kind)
    writer.finish(summary if args.evaluate else None)
  except KeyboardInterrupt as e:
    raise outputs.Interrupted(
        f'interrupted: {writer.complete} of {n} images are complete in '
        f'{outputs.text(out)}/; rerun with --resume to do the rest') from e
  finally:
    writer.close()

  print(f'wrote {len(todo)} completed image{"s" * (len(todo) != 1)} to '
        f'{outputs.text(out)}/ (unblended overlays in '
        f'{outputs.text(out / outputs.RAW_DIR)}/, grid '
        f'{outputs.text(out / outputs.GRID_FILE)})'
        + (f'; {n - len(todo)} finished before' if len(todo) < n else ''))
  if args.evaluate:
    print(f'metrics: MSE {summary["mse"]:.2f}, PSNR {summary["psnr"]:.2f} dB '
          f'(mean per image {summary["psnr_mean"]:.2f}), SSIM '
          f'{summary["ssim"]:.4f}, hole MSE {summary["hole_mse"]:.2f} over '
          f'{n} images -> {outputs.text(out / outputs.METRICS_FILE)}, '
          f'{outputs.text(out / outputs.SUMMARY_FILE)}')
  return summary


def main(argv=None):
  """Entry point; `argv` without the program name (default: sys.argv[1:]).

  Returns the run's summary dict; exits (SystemExit) with code 2 on bad
  flags or inputs, before anything is computed or written, 1 when the
  computation or a write fails, and 130 on Ctrl-C.
  """
  return cli.run_checked(prepare, run, build_parser().parse_args(argv))


if __name__ == '__main__':
  main()
