"""The paper's Tables 1-2 and Fig. 8: every completion method on one test set.

Runs on a folder of complete test images, damages them with the tables'
masks and fills the holes with each method of `common.METHODS`, on the
same images and masks:

  paper_wgan          our loss (paper eq. 5-8) on our WGAN-GP (--wgan)
  yeh_wgan            Yeh et al.'s loss on our WGAN
  yeh_gradient_wgan   Yeh et al.'s loss plus our gradient term, on our WGAN
  yeh_dcgan           Yeh et al.'s loss on the DCGAN baseline (--dcgan): [39]
  harmonic            harmonic fill (Laplace equation, zero guide)
  telea               OpenCV's Telea inpainting     (pip install -e .[baselines])
  biharmonic          scikit-image's biharmonic     (pip install -e .[baselines])

  python experiments/paper_tables.py --limit 64 --steps 1000
  python experiments/paper_tables.py --wgan runs/celeba64 \\
      --dcgan runs/celeba64_dcgan
  python experiments/paper_tables.py --methods harmonic,telea,biharmonic \\
      --limit 8
"""
import argparse
from pathlib import Path

import jax

from jaxinpaint import atomic, cli
from jaxinpaint.data import masks as masks_lib
from jaxinpaint.errors import InputError
from jaxinpaint.evaluation import baselines
from jaxinpaint.inpaint_job import inputs, outputs
import common  # experiments/common.py, beside this script

REPO = Path(__file__).resolve().parents[1]
DEFAULT_INPUT = '../shared/data/celeba64/test'  # relative to the repo root
DEFAULT_OUT = 'docs/results'  # relative to the repo root

_EPILOG = """\
outputs (under --out, per mask M):
  table_M.md    the paper's table: one row per method (MSE | PSNR | mean PSNR |
                SSIM | hole MSE, best of each column in bold), a header with
                the number of images, steps, restarts, models and their
                training steps, the device. It holds no timing, so the same
                command gives the same file byte for byte.
  timing_M.md   seconds per image of each method: NOT reproducible (depends
                on the machine and its load). s/image = (wall time of the
                method on all images - JAX compile time during it) / n; the
                compile time (tracing, lowering, XLA, as reported by
                jax.monitoring) is its own column. Model loading and the
                metrics are not timed.
  fig_M.png     like the paper's Fig. 8: one row per image (the first
                --figure-rows): masked input (hole grey) | each method | original
  results.json  every number: settings, set-level metrics and per-image
                metrics of each (mask, method), skipped methods and why; the
                non-reproducible numbers are under its "timing" key only.
Existing outputs are never replaced without --overwrite.

metrics (jaxinpaint.batched.evaluate, on the uint8 [0, 255] values,
whole image, after Poisson blending for the GAN methods): MSE = mean over images
of the per-image MSE; PSNR = 10*log10(255^2 / MSE), the paper's table PSNR;
mean PSNR = mean of per-image PSNRs; SSIM (Gaussian window 11, sigma 1.5);
hole MSE = MSE over the hole pixels only. With the eval extra (pip install
-e '.[eval]') and input names <identity>_<n> (CelebA's), where some person
has several images: identity dist. = mean over images of dlib's
face-recognition distance of the completion to the other images of the same
person (the originals; aligned with the completion's original), same person
= the rate below 0.6 (evaluation/identity.py).

Every GAN method starts image i from the latent drawn from (--seed, i), so
the three WGAN losses start from the same z and the numbers do not depend on
--batch-size or --limit (up to float rounding).
"""


def build_parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(
      prog='paper_tables.py', description=__doc__, epilog=_EPILOG,
      formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--input', default=None, metavar='DIR',
                 help='folder of complete test images at the models\' '
                 'resolution (sorted, searched recursively), an image file, '
                 'or tfds:NAME:SPLIT. Default: ../shared/data/celeba64/test '
                 'relative to the repo root.')
  p.add_argument('--masks', default=','.join(common.TABLE_MASKS),
                 metavar='LIST',
                 help='comma list of mask kinds (default: center,'
                 'three_squares, the masks of Tables 1 and 2; random and '
                 'free_form also work, drawn from --seed).')
  p.add_argument('--methods', default=','.join(common.METHODS),
                 metavar='LIST',
                 help=f'comma list of methods (default: all: '
                 f'{",".join(common.METHODS)}).')
  p.add_argument('--wgan', default=None, metavar='DIR',
                 help='our WGAN model (training workdir or export) for '
                 'paper_wgan, yeh_wgan, yeh_gradient_wgan. Default: the '
                 'shipped jaxinpaint/assets/celeba64.')
  p.add_argument('--dcgan', default=None, metavar='DIR',
                 help='the DCGAN baseline (configs/celeba64_dcgan.py) for '
                 'yeh_dcgan. Default: the shipped '
                 'jaxinpaint/assets/celeba64_dcgan.')
  p.add_argument('--limit', type=int, default=None, metavar='N',
                 help='use only the first N images (default: all).')
  p.add_argument('--telea-radius', type=int, default=3,
                 help="cv2.inpaint's inpaintRadius for telea (default: 3).")
  p.add_argument('--figure-rows', type=int, default=8, metavar='N',
                 help='images shown in fig_<mask>.png (default: 8).')
  common.add_search_flags(p)
  return p


def _repo_path(arg, default):
  return Path(arg) if arg is not None else REPO / default


def _output_files(out: Path, mask_kinds):
  files = [out / 'results.json']
  for k in mask_kinds:
    files += [out / f'table_{k}.md', out / f'timing_{k}.md',
              out / f'fig_{k}.png']
  return files


def prepare(args) -> tuple[common.Plan, Path]:
  """Checks every flag, input and output; loads the images."""
  inputs.check_counts(
      args.limit, args.seed, steps=args.steps, restarts=args.restarts,
      batch_size=args.batch_size, telea_radius=args.telea_radius,
      figure_rows=args.figure_rows)
  wanted = common.split_list(args.methods, '--methods', common.METHODS)
  mask_kinds = common.split_list(args.masks, '--masks', masks_lib.MASK_KINDS)
  skipped = {}
  models = {}
  for name, arg in (('wgan', args.wgan), ('dcgan', args.dcgan)):
    model = common.find_table_model(name, arg, skipped, wanted)
    if model is not None:
      models[name] = model
  skipped.update(baselines.unavailable(wanted))
  methods = [m for m in common.METHODS if m in wanted and m not in skipped]
  for m, reason in skipped.items():
    inputs.note(f'note: skipping {m}: {reason}')
  if not methods:
    raise InputError('no method left to run (see the notes above)')

  input_path = _repo_path(args.input, DEFAULT_INPUT)
  input_label = args.input if args.input is not None else DEFAULT_INPUT
  resolution = common.common_resolution(models.values(), input_path)
  if args.input is None and not input_path.is_dir():
    raise InputError(f'the default --input {input_path} does not exist (the '
                    'test images ship with the development checkout only); '
                    'pass --input DIR')
  images, names = inputs.load_inputs(str(input_path), resolution, args.limit)
  images = images.read_all()  # a table's few hundred images
  masks = common.table_masks(mask_kinds, len(images), resolution, args.seed)
  out = _repo_path(args.out, DEFAULT_OUT)
  if out.exists() and not out.is_dir():
    raise InputError(f'--out {out}: exists and is not a folder')
  outputs.refuse_existing(_output_files(out, mask_kinds), args.overwrite)
  return common.Plan(methods, skipped, models, images, names, mask_kinds,
                     masks, input_label,
                     identity_photos=common.identity_references(names,
                                                                images)), out


def run(args, checked) -> dict:
  """Runs every method, writes the tables, timings, figures and results."""
  plan, out = checked
  common.load_models(plan.models.values())
  search = common.Search(
      steps=args.steps, restarts=args.restarts, batch_size=args.batch_size,
      seed=args.seed, telea_radius=args.telea_radius,
      progress=not args.no_progress)
  settings = dict(
      input=plan.input_label, n_images=len(plan.images), names=plan.names,
      resolution=int(plan.images.shape[1]), masks=plan.mask_kinds,
      methods=plan.methods, steps=args.steps, restarts=args.restarts,
      batch_size=args.batch_size, seed=args.seed,
      telea_radius=args.telea_radius, figure_rows=args.figure_rows,
      blend=True, device=common.device_label(), jax_version=jax.__version__,
      models={m.name: dict(path=m.label, step=m.step,
                           **{k: m.config.model[k] for k in
                              ('arch', 'resolution', 'width', 'z_dim')})
              for m in plan.models.values()})
  done = common.run_methods(plan, search, args.figure_rows)

  out.mkdir(parents=True, exist_ok=True)
  texts = {}
  for kind in plan.mask_kinds:
    table = common.table_markdown(kind, plan, settings, done['metrics'][kind])
    timing_md = common.timing_markdown(kind, plan, settings,
                                       done['timing'][kind])
    atomic.write_text(out / f'table_{kind}.md', table)
    atomic.write_text(out / f'timing_{kind}.md', timing_md)
    texts[kind] = (table, timing_md)
    common.save_figure(out / f'fig_{kind}.png', done['damaged'][kind],
                       done['figure'][kind], plan.images, plan.methods)
  results = dict(
      settings=settings, skipped=plan.skipped,
      descriptions={m: common.describe(m, args.telea_radius)
                    for m in plan.methods},
      results=done['metrics'], extra=done['extra'],
      per_image=done['per_image'],
      timing=dict(note='not reproducible: seconds_per_image = (wall_seconds '
                  '- compile_seconds) / n_images', **done['timing']))
  atomic.write_json(out / 'results.json', results)

  for kind in plan.mask_kinds:
    table, timing_md = texts[kind]
    print(table)
    print(timing_md)
  print(f'wrote {", ".join(str(f) for f in _output_files(out, plan.mask_kinds))}')
  return results


def main(argv=None) -> dict:
  """Entry point; `argv` without the program name (default sys.argv[1:]).

  Returns the contents of results.json. Exit codes as every jaxinpaint CLI:
  2 for bad flags or inputs (one `error:` line, before anything is
  computed or written), 1 for a failed run, 130 on Ctrl-C.
  """
  return cli.run_checked(prepare, run, build_parser().parse_args(argv))


if __name__ == '__main__':
  main()
