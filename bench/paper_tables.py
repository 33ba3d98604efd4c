"""The paper's Tables 1-2 and Fig. 8: every completion method on one test set.

Runs on a folder of complete test images, damages them with the tables'
masks and fills the holes with each method, on the same images and masks:

  paper_wgan          our loss (paper eq. 5-8) on our WGAN-GP (--wgan)
  yeh_wgan            Yeh et al.'s loss on our WGAN
  yeh_gradient_wgan   Yeh et al.'s loss plus our gradient term, on our WGAN
  yeh_dcgan           Yeh et al.'s loss on the DCGAN baseline (--dcgan): [39]
  harmonic            harmonic fill (Laplace equation, zero guide)
  telea               OpenCV's Telea inpainting     (pip install -e .[baselines])
  biharmonic          scikit-image's biharmonic     (pip install -e .[baselines])

  python bench/paper_tables.py --limit 64 --steps 1000
  python bench/paper_tables.py --wgan runs/celeba64 --dcgan runs/celeba64_dcgan
  python bench/paper_tables.py --methods harmonic,telea,biharmonic --limit 8
"""
import argparse
import dataclasses
import os
import time
from pathlib import Path

import numpy as np

# No JAX behind these: `--help` and input errors stay fast.
from jaxinpaint import data, inpaint_cli, masks as masks_lib
from jaxinpaint.inpaint_cli import UserError

REPO = Path(__file__).resolve().parents[1]
DEFAULT_INPUT = '../shared/data/celeba64/test'  # relative to the repo root
DEFAULT_OUT = 'docs/results'  # relative to the repo root
# The models in the package: the defaults of --wgan and --dcgan.
SHIPPED = {'wgan': inpaint_cli.DEFAULT_CHECKPOINT,
           'dcgan': inpaint_cli.ASSETS / 'celeba64_dcgan'}

METHODS = ('paper_wgan', 'yeh_wgan', 'yeh_gradient_wgan', 'yeh_dcgan',
           'harmonic', 'telea', 'biharmonic')
# GAN methods: (model, completion.LOSSES key).
GAN_METHODS = {
    'paper_wgan': ('wgan', 'paper'),
    'yeh_wgan': ('wgan', 'yeh'),
    'yeh_gradient_wgan': ('wgan', 'yeh_gradient'),
    'yeh_dcgan': ('dcgan', 'yeh'),
}
TABLE_MASKS = ('center', 'three_squares')
PAPER_TABLE = {'center': 'Table 1', 'three_squares': 'Table 2'}
BASELINES_HINT = 'pip install -e .[baselines]'

# Columns of the table: (results key, header, higher is better).
COLUMNS = (('mse', 'MSE', False), ('psnr', 'PSNR', True),
           ('psnr_mean', 'mean PSNR', True), ('ssim', 'SSIM', True),
           ('hole_mse', 'hole MSE', False))

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

metrics (jaxinpaint.pipeline.evaluate, on the uint8 [0, 255] values, whole
image, after Poisson blending for the GAN methods): MSE = mean over images
of the per-image MSE; PSNR = 10*log10(255^2 / MSE), the paper's table PSNR;
mean PSNR = mean of per-image PSNRs; SSIM (Gaussian window 11, sigma 1.5);
hole MSE = MSE over the hole pixels only.

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
  p.add_argument('--masks', default=','.join(TABLE_MASKS), metavar='LIST',
                 help='comma list of mask kinds (default: center,'
                 'three_squares, the masks of Tables 1 and 2; random and '
                 'free_form also work, drawn from --seed).')
  p.add_argument('--methods', default=','.join(METHODS), metavar='LIST',
                 help=f'comma list of methods (default: all: '
                 f'{",".join(METHODS)}).')
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
  inpaint_cli.add_bench_flags(p)
  return p


# ----------------------------------------------------------------------------
# Checking the command line (no JAX computation).


@dataclasses.dataclass
class _Model:
  name: str  # 'wgan' | 'dcgan'
  path: Path
  label: str  # the path as shown in the table header
  config: object
  variables: object = None
  step: int | None = None


def _split(arg: str, flag: str, valid) -> list:
  items = [s.strip() for s in arg.split(',') if s.strip()]
  if not items:
    raise UserError(f'{flag}: empty list')
  for s in items:
    if s not in valid:
      raise UserError(f'{flag}: unknown {s!r}; valid: {", ".join(valid)}')
  if len(set(items)) != len(items):
    raise UserError(f'{flag}: {arg!r} lists a name twice')
  return items


def _check_flags(args):
  inpaint_cli.check_counts(
      args, steps=args.steps, restarts=args.restarts,
      batch_size=args.batch_size, telea_radius=args.telea_radius,
      figure_rows=args.figure_rows)


def _find_model(name: str, arg, skipped: dict, wanted) -> _Model | None:
  """The model of `name` or None (its methods then go to `skipped`)."""
  users = [m for m in wanted if GAN_METHODS.get(m, (None,))[0] == name]
  if not users:
    return None
  flag = f'--{name}'
  reason = None
  if arg is None:
    shipped = SHIPPED[name]
    if shipped.is_dir():
      path = shipped
      label = f'{shipped.relative_to(shipped.parents[2])} (shipped)'
    else:
      reason = f'no {flag} given and no shipped model at {shipped}'
  elif not Path(arg).is_dir():
    raise UserError(f'{flag} {arg}: no such directory')
  else:
    path, label = Path(arg), arg
  if reason:
    for m in users:
      skipped[m] = reason
    return None
  try:
    model_dir, config = inpaint_cli._model_dir(str(path))  # pylint: disable=protected-access
  except UserError as e:
    raise UserError(f'{flag}: {e}') from e
  if config.model.arch != name:
    raise UserError(f'{flag} {label}: the model is a {config.model.arch!r} '
                    f'model, expected {name!r}')
  return _Model(name, model_dir, label, config)


def _optional_imports(wanted, skipped):
  """cv2 / skimage for telea / biharmonic; missing ones are skipped."""
  mods = {}
  for method, module in (('telea', 'cv2'), ('biharmonic', 'skimage')):
    if method not in wanted:
      continue
    try:
      if module == 'cv2':
        import cv2  # pylint: disable=g-import-not-at-top
        mods['cv2'] = cv2
      else:
        # pylint: disable-next=g-import-not-at-top
        from skimage.restoration import inpaint_biharmonic
        mods['inpaint_biharmonic'] = inpaint_biharmonic
    except ImportError as e:
      skipped[method] = (f'{module} is not installed ({e}); '
                         f'{BASELINES_HINT}')
  return mods


def _resolution(models, input_path) -> int:
  res = {m.name: int(m.config.model.resolution) for m in models}
  if len(set(res.values())) > 1:
    raise UserError(f'the models work at different resolutions: {res}')
  if res:
    return next(iter(res.values()))
  # No model: the images' own size (they are never resized).
  if str(input_path).startswith('tfds:'):
    return 64
  path = Path(input_path)
  files = ([str(path)] if path.is_file() else
           data.list_image_files(path) if path.is_dir() else [])
  if not files:
    raise UserError(f'--input {input_path}: no such file or folder')
  (w, h), _ = inpaint_cli._inspect_image(files[0])  # pylint: disable=protected-access
  return w


def _repo_path(arg, default):
  return Path(arg) if arg is not None else REPO / default


def _output_files(out: Path, mask_kinds):
  files = [out / 'results.json']
  for k in mask_kinds:
    files += [out / f'table_{k}.md', out / f'timing_{k}.md',
              out / f'fig_{k}.png']
  return files


@dataclasses.dataclass
class _Plan:
  methods: list  # to run, in table order
  skipped: dict  # method -> reason
  models: dict  # 'wgan' / 'dcgan' -> _Model
  mods: dict
  images: np.ndarray  # (N, R, R, 3) in [-1, 1], the originals
  names: list
  mask_kinds: list
  masks: dict  # kind -> (1 or N, R, R, 1)
  out: Path
  input_label: str


def prepare(args) -> _Plan:
  """Checks every flag, input and output; loads the images (no JAX)."""
  _check_flags(args)
  wanted = _split(args.methods, '--methods', METHODS)
  mask_kinds = _split(args.masks, '--masks', masks_lib.MASK_KINDS)
  skipped = {}
  models = {}
  for name, arg in (('wgan', args.wgan), ('dcgan', args.dcgan)):
    model = _find_model(name, arg, skipped, wanted)
    if model is not None:
      models[name] = model
  mods = _optional_imports(wanted, skipped)
  methods = [m for m in METHODS if m in wanted and m not in skipped]
  for m, reason in skipped.items():
    inpaint_cli._note(f'note: skipping {m}: {reason}')  # pylint: disable=protected-access
  if not methods:
    raise UserError('no method left to run (see the notes above)')

  input_path = _repo_path(args.input, DEFAULT_INPUT)
  input_label = args.input if args.input is not None else DEFAULT_INPUT
  resolution = _resolution(models.values(), input_path)
  if args.input is None and not input_path.is_dir():
    raise UserError(f'the default --input {input_path} does not exist (the '
                    'test images ship with the development checkout only); '
                    'pass --input DIR')
  images, names = inpaint_cli._load_inputs(  # pylint: disable=protected-access
      str(input_path), resolution, args.limit)
  masks = {}
  for kind in mask_kinds:
    fixed = kind in TABLE_MASKS
    masks[kind] = masks_lib.make_masks(kind, 1 if fixed else len(images),
                                       resolution, resolution, args.seed)
  out = _repo_path(args.out, DEFAULT_OUT)
  if out.exists() and not out.is_dir():
    raise UserError(f'--out {out}: exists and is not a folder')
  if not args.overwrite:
    for f in _output_files(out, mask_kinds):
      if f.exists():
        raise UserError(f'{f} already exists; pass --overwrite to replace '
                        'it, or choose another --out')
  return _Plan(methods, skipped, models, mods, images, names, mask_kinds,
               masks, out, input_label)


# ----------------------------------------------------------------------------
# Methods. Each maps (damaged images y with holes 0, mask) to completed
# images (N, R, R, 3) float32 in [-1, 1], plus a dict of extra numbers.


class _CompileTimer:
  """Seconds JAX spends tracing, lowering and compiling (jax.monitoring)."""
  _EVENTS = ('/jax/core/compile/jaxpr_trace_duration',
             '/jax/core/compile/jaxpr_to_mlir_module_duration',
             '/jax/core/compile/backend_compile_duration')

  def __init__(self):
    self.seconds = 0.0

  def __call__(self, event, duration, **kwargs):
    del kwargs
    if event in self._EVENTS:
      self.seconds += duration


_COMPILE_TIMER = None


def _compile_timer():
  global _COMPILE_TIMER
  if _COMPILE_TIMER is None:
    import jax  # pylint: disable=g-import-not-at-top
    _COMPILE_TIMER = _CompileTimer()
    jax.monitoring.register_event_duration_secs_listener(_COMPILE_TIMER)
  return _COMPILE_TIMER


def _run_gan(model, loss, y, mask, args):
  from jaxinpaint import completion, pipeline  # pylint: disable=g-import-not-at-top
  results = pipeline.inpaint_batches(
      model.variables, model.config.model, y, mask, np.arange(len(y)),
      spec=completion.get_loss(loss),
      options=completion.Options(steps=args.steps, restarts=args.restarts),
      batch_size=args.batch_size, seed=args.seed,
      progress=not args.no_progress)
  extra = {'final_loss_mean': float(results['final_loss'].min(axis=1).mean()),
           'cg_iterations_max': int(results['cg_iterations'].max())}
  return results['blended'], extra


def harmonic(y, mask):
  """The `harmonic` method: `poisson.harmonic_fill` of all images at once."""
  from jaxinpaint import poisson  # pylint: disable=g-import-not-at-top
  filled, info = poisson.harmonic_fill(y, mask)
  return np.asarray(filled, np.float32), {
      'cg_iterations_max': int(np.max(info['iterations']))}


def _holes(mask, n):
  """(1 or N, R, R, 1) mask -> (N, R, R) bool, True = hole."""
  return np.broadcast_to(np.asarray(mask)[..., 0] < 0.5,
                         (n,) + mask.shape[1:3])


def _run_telea(cv2, y, mask, radius):
  from jaxinpaint import metrics  # pylint: disable=g-import-not-at-top
  src = metrics.to_uint8(y)
  holes = _holes(mask, len(y)).astype(np.uint8) * 255
  out = np.stack([cv2.inpaint(np.ascontiguousarray(s), np.ascontiguousarray(h),
                              radius, cv2.INPAINT_TELEA)
                  for s, h in zip(src, holes)])
  return out.astype(np.float32) / 127.5 - 1.0, {}


def _run_biharmonic(inpaint_biharmonic, y, mask):
  holes = _holes(mask, len(y))
  out = np.stack([inpaint_biharmonic(np.array(img, np.float64), np.array(h),
                                     channel_axis=-1)
                  for img, h in zip(y, holes)])
  return np.clip(out, -1, 1).astype(np.float32), {}


def _complete(method, plan, y, mask, args):
  if method in GAN_METHODS:
    model, loss = GAN_METHODS[method]
    return _run_gan(plan.models[model], loss, y, mask, args)
  if method == 'harmonic':
    return harmonic(y, mask)
  if method == 'telea':
    return _run_telea(plan.mods['cv2'], y, mask, args.telea_radius)
  return _run_biharmonic(plan.mods['inpaint_biharmonic'], y, mask)


def describe(method, args) -> str:
  """The table's 'Loss / method' cell."""
  if method in GAN_METHODS:
    from jaxinpaint import completion  # pylint: disable=g-import-not-at-top
    model, loss = GAN_METHODS[method]
    s = completion.get_loss(loss)
    prior = ('-D(G(z)) - Dp(G(z))' if s.prior == 'critics' else
             'log(1 - sigmoid(D(G(z))))' if model == 'dcgan' else '-D(G(z))')
    who = {'paper': 'ours', 'yeh': 'Yeh et al. [39]',
           'yeh_gradient': '[39] + gradient loss'}[loss]
    net = 'DCGAN' if model == 'dcgan' else 'our WGAN'
    return (f'{who}, {net}: α = {s.alpha:g}, β = {s.beta:g}, η = {s.eta:g}, '
            f'prior {prior}; Poisson blend')
  return {'harmonic': 'harmonic fill (Laplace equation, no guide)',
          'telea': f'OpenCV Telea, radius {args.telea_radius}',
          'biharmonic': 'scikit-image biharmonic'}[method]


# ----------------------------------------------------------------------------
# Writing.


def _write_text(path: Path, text: str):
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.with_name(f'.{path.name}.tmp')
  tmp.write_text(text)
  os.replace(tmp, path)


def _mask_line(kind, mask) -> str:
  h, w = mask.shape[1:3]
  hole = float((mask < 0.5).sum()) / len(mask)
  what = {
      'center': 'the middle half of each side',
      'three_squares': 'squares over the eyes and the mouth, '
                       f'(row0, row1, col0, col1) = '
                       f'{masks_lib.three_squares_coordinates(h, w)}',
  }.get(kind, 'drawn per image from --seed')
  return (f'mask `{kind}`: {what}; {hole:g} hole pixels per image on average '
          f'({100 * hole / (h * w):.2f}% of {h}x{w})')


def _fmt(v) -> str:
  return f'{v:.4f}'


def table_markdown(kind, plan, settings, metrics_by_method) -> str:
  n = len(plan.images)
  h = plan.images.shape[1]
  where = PAPER_TABLE.get(kind, 'not in the paper')
  lines = [f'# Inpainting, mask `{kind}` (cf. the paper\'s {where})',
           '',
           f'- {n} image{"s" * (n != 1)} from `{plan.input_label}` '
           f'({h}x{h}), the first {n} in sorted order',
           f'- {_mask_line(kind, plan.masks[kind])}']
  if any(m in GAN_METHODS for m in plan.methods):
    lines.append(f'- GAN methods: {settings["steps"]} Adam steps, '
                 f'{settings["restarts"]} restart(s), seed {settings["seed"]}, '
                 'Poisson blending')
  for m in plan.models.values():
    mc = m.config.model
    lines.append(f'- {m.name.upper()}: `{m.label}`, step {m.step} '
                 f'(arch {mc.arch}, width {mc.width}, z_dim {mc.z_dim})')
  lines += [f'- device: {settings["device"]}',
            '- metrics on uint8 [0, 255] values, whole image: MSE (mean over '
            'images), PSNR = 10·log10(255²/MSE) (the paper\'s table PSNR), '
            'mean PSNR (of per-image PSNRs), SSIM, hole MSE (hole pixels '
            'only); best of each column in bold',
            '- timing (not reproducible): '
            f'[timing_{kind}.md](timing_{kind}.md); figure: '
            f'[fig_{kind}.png](fig_{kind}.png)', '']
  header = ['Method', 'Loss / method'] + [c[1] for c in COLUMNS]
  lines.append('| ' + ' | '.join(header) + ' |')
  lines.append('|' + '|'.join(['---', '---'] + ['---:'] * len(COLUMNS)) + '|')
  best = {}
  for key, _, higher in COLUMNS:
    values = [metrics_by_method[m][key] for m in plan.methods]
    best[key] = _fmt(max(values) if higher else min(values))
  for m in plan.methods:
    cells = [m, describe(m, settings['args'])]
    for key, _, _ in COLUMNS:
      s = _fmt(metrics_by_method[m][key])
      cells.append(f'**{s}**' if s == best[key] and len(plan.methods) > 1
                   else s)
    lines.append('| ' + ' | '.join(cells) + ' |')
  lines.append('')
  if plan.skipped:
    lines.append('Skipped:')
    lines += [f'- {m}: {r}' for m, r in plan.skipped.items()]
    lines.append('')
  cols = ' | '.join(['masked input'] + plan.methods + ['original'])
  rows = min(n, settings['figure_rows'])
  lines.append(f'fig_{kind}.png: the first {rows} images, columns: {cols}.')
  lines.append('')
  return '\n'.join(lines)


def timing_markdown(kind, plan, settings, timing) -> str:
  n = len(plan.images)
  lines = [f'# Timing, mask `{kind}` (NOT reproducible)', '',
           f'{n} images, {settings["steps"]} steps, {settings["restarts"]} '
           f'restart(s), batch size {settings["batch_size"]}, device '
           f'{settings["device"]}. s/image = (wall - compile) / n, where '
           'compile is the JAX tracing + lowering + XLA compile time spent '
           'during the method (jax.monitoring); a method whose program was '
           'compiled for an earlier mask shows ~0 compile. Model loading and '
           'metrics are not timed. Values depend on the machine and its '
           'load.', '',
           '| Method | s/image | wall s | compile s |',
           '|---|---:|---:|---:|']
  for m in plan.methods:
    t = timing[m]
    lines.append(f'| {m} | {t["seconds_per_image"]:.4g} | '
                 f'{t["wall_seconds"]:.2f} | {t["compile_seconds"]:.2f} |')
  lines.append('')
  return '\n'.join(lines)


# ----------------------------------------------------------------------------
# Running.


def run(args, plan: _Plan) -> dict:
  import jax  # pylint: disable=g-import-not-at-top
  import tqdm  # pylint: disable=g-import-not-at-top
  from absl import logging  # pylint: disable=g-import-not-at-top
  # pylint: disable-next=g-import-not-at-top
  from jaxinpaint import checkpoint, grids, pipeline
  logging.set_verbosity(logging.WARNING)  # orbax logs every restore at INFO
  timer = _compile_timer()
  for m in plan.models.values():
    _, m.variables, m.step = checkpoint.load_inference_variables(m.path)

  images, n = plan.images, len(plan.images)
  device = jax.devices()[0]
  settings = dict(
      input=plan.input_label, n_images=n, names=plan.names,
      resolution=int(images.shape[1]), masks=plan.mask_kinds,
      methods=plan.methods, steps=args.steps, restarts=args.restarts,
      batch_size=args.batch_size, seed=args.seed,
      telea_radius=args.telea_radius, figure_rows=args.figure_rows,
      blend=True, device=(device.platform if device.device_kind ==
                          device.platform else
                          f'{device.platform} ({device.device_kind})'),
      jax_version=jax.__version__,
      models={m.name: dict(path=m.label, step=m.step,
                           **{k: m.config.model[k] for k in
                              ('arch', 'resolution', 'width', 'z_dim')})
              for m in plan.models.values()})
  metric_table = {k: {} for k in plan.mask_kinds}  # mask -> method -> summary
  per_image = {k: {} for k in plan.mask_kinds}
  extras = {k: {} for k in plan.mask_kinds}
  timing = {k: {} for k in plan.mask_kinds}
  completed = {k: {} for k in plan.mask_kinds}  # figure rows only
  rows = min(n, args.figure_rows)
  damaged = {}
  for kind, mask in plan.masks.items():
    keep = np.broadcast_to(mask > 0.5, images.shape[:-1] + (1,))
    damaged[kind] = np.where(keep, images, np.float32(0))  # holes grey

  bar = tqdm.tqdm(plan.methods, desc='methods', unit='method',
                  disable=args.no_progress)
  for method in bar:
    for kind in plan.mask_kinds:
      bar.set_postfix(method=method, mask=kind)
      mask = plan.masks[kind]
      compile_before, start = timer.seconds, time.perf_counter()
      result, extra = _complete(method, plan, damaged[kind], mask, args)
      result = np.asarray(result, np.float32)  # on the host: finished
      wall = time.perf_counter() - start
      compile_s = min(timer.seconds - compile_before, wall)
      if not np.isfinite(result).all():
        inpaint_cli._error(f'{method} produced non-finite values on mask '  # pylint: disable=protected-access
                           f'{kind}; is the checkpoint healthy?', code=1)
      values, summary = pipeline.evaluate(images, result, mask)
      metric_table[kind][method] = summary
      per_image[kind][method] = {k: v.tolist() for k, v in values.items()}
      extras[kind][method] = extra
      timing[kind][method] = dict(
          wall_seconds=wall, compile_seconds=compile_s,
          seconds_per_image=(wall - compile_s) / n)
      completed[kind][method] = result[:rows]
  bar.close()

  out = plan.out
  out.mkdir(parents=True, exist_ok=True)
  table_settings = dict(settings, args=args)
  texts = {}
  for kind in plan.mask_kinds:
    table = table_markdown(kind, plan, table_settings, metric_table[kind])
    timing_md = timing_markdown(kind, plan, settings, timing[kind])
    _write_text(out / f'table_{kind}.md', table)
    _write_text(out / f'timing_{kind}.md', timing_md)
    texts[kind] = (table, timing_md)
    columns = ([damaged[kind][:rows]]
               + [completed[kind][m] for m in plan.methods]
               + [images[:rows]])
    grids.save_rows(out / f'fig_{kind}.png', columns)
  results = dict(
      settings=settings, skipped=plan.skipped,
      descriptions={m: describe(m, args) for m in plan.methods},
      results=metric_table, extra=extras, per_image=per_image,
      timing=dict(note='not reproducible: seconds_per_image = (wall_seconds '
                  '- compile_seconds) / n_images', **timing))
  inpaint_cli._write_json(out / 'results.json', results)  # pylint: disable=protected-access

  for kind in plan.mask_kinds:
    table, timing_md = texts[kind]
    print(table)
    print(timing_md)
  print(f'wrote {", ".join(str(f) for f in _output_files(out, plan.mask_kinds))}')
  return results


def main(argv=None) -> dict:
  """Entry point; `argv` without the program name (default sys.argv[1:]).

  Returns the contents of results.json. Bad flags or inputs: one `error:`
  line on stderr and SystemExit(2) before anything is computed or written.
  """
  args = build_parser().parse_args(argv)
  plan = inpaint_cli.checked(prepare, args)
  return run(args, plan)


if __name__ == '__main__':
  main()
