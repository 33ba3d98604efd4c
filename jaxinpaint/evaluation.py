"""Evaluation: every completion method on one test set, the paper's tables.

The methods of the paper's Tables 1-2, each mapping damaged images y (holes
0) and a mask to completed images (N, R, R, 3) float32 in [-1, 1]:

  paper_wgan          our loss (paper eq. 5-8) on our WGAN-GP
  yeh_wgan            Yeh et al.'s loss on our WGAN
  yeh_gradient_wgan   Yeh et al.'s loss plus our gradient term, on our WGAN
  yeh_dcgan           Yeh et al.'s loss on the DCGAN baseline [39]
  harmonic            harmonic fill (Laplace equation, zero guide)
  telea               OpenCV's Telea inpainting    (pip install -e .[baselines])
  biharmonic          scikit-image's biharmonic    (pip install -e .[baselines])

`run_methods` runs them on the same images and masks, timing each (compile
time apart, `CompileTimer`), and `table_markdown` / `timing_markdown` /
`save_figure` write what `bench/paper_tables.py` prints. `latent_recovery`
completes G's own samples, to tell what the search can do from what the
model covers (`bench/latent_recovery.py`). Nothing here starts JAX at
import.
"""
import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np

from jaxinpaint import data, errors, inputs, loading, masks as masks_lib
from jaxinpaint.errors import ArgumentError, InputError

METHODS = ('paper_wgan', 'yeh_wgan', 'yeh_gradient_wgan', 'yeh_dcgan',
           'harmonic', 'telea', 'biharmonic')
# GAN methods: (model, completion.LOSSES key).
GAN_METHODS = {
    'paper_wgan': ('wgan', 'paper'),
    'yeh_wgan': ('wgan', 'yeh'),
    'yeh_gradient_wgan': ('wgan', 'yeh_gradient'),
    'yeh_dcgan': ('dcgan', 'yeh'),
}
# The models in the package: the defaults of the GAN methods.
SHIPPED = {'wgan': loading.DEFAULT_MODEL,
           'dcgan': loading.ASSETS / 'celeba64_dcgan'}
TABLE_MASKS = ('center', 'three_squares')
PAPER_TABLE = {'center': 'Table 1', 'three_squares': 'Table 2'}
BASELINES_HINT = 'pip install -e .[baselines]'

# Columns of the table: (results key, header, higher is better).
COLUMNS = (('mse', 'MSE', False), ('psnr', 'PSNR', True),
           ('psnr_mean', 'mean PSNR', True), ('ssim', 'SSIM', True),
           ('hole_mse', 'hole MSE', False))


def add_search_flags(p: argparse.ArgumentParser, item: str = 'image') -> None:
  """The latent-search and output flags that the bench/ scripts share."""
  p.add_argument('--steps', type=int, default=1000,
                 help='Adam iterations on z (default: 1000, the paper).')
  p.add_argument('--restarts', type=int, default=1,
                 help=f'random initializations of z per {item} (default: 1).')
  p.add_argument('--batch-size', type=int, default=64,
                 help=f'{item}s completed together in one compiled call '
                 '(default: 64).')
  p.add_argument('--seed', type=int, default=0,
                 help='seed of the initial latents (default: 0).')
  p.add_argument('--out', default=None, metavar='DIR',
                 help='output folder (default: docs/results in the repo).')
  p.add_argument('--overwrite', action='store_true',
                 help='replace existing output files.')
  p.add_argument('--no-progress', action='store_true',
                 help='no progress bars.')


def split_list(arg: str, flag: str, valid) -> list:
  """A comma list of names from `valid`, each once, else a InputError."""
  items = [s.strip() for s in arg.split(',') if s.strip()]
  if not items:
    raise InputError(f'{flag}: empty list')
  for s in items:
    if s not in valid:
      raise InputError(f'{flag}: unknown {s!r}; valid: {", ".join(valid)}')
  if len(set(items)) != len(items):
    raise InputError(f'{flag}: {arg!r} lists a name twice')
  return items


# ----------------------------------------------------------------------------
# Models and methods (checked without JAX).


@dataclasses.dataclass
class Model:
  name: str  # 'wgan' | 'dcgan'
  path: Path
  label: str  # the path as shown in the table header
  config: object
  loaded: object = None  # the `models.Model` handle, set by `load_models`

  @property
  def step(self) -> int | None:
    return None if self.loaded is None else self.loaded.step


def find_model(name: str, arg, skipped: dict, wanted) -> Model | None:
  """The model `name` ('wgan' or 'dcgan') from its flag `arg` (None: the
  shipped one), or None when no wanted method needs it or none is there
  (its methods then go to `skipped`, with the reason)."""
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
    raise InputError(f'{flag} {arg}: no such directory')
  else:
    path, label = Path(arg), arg
  if reason:
    for m in users:
      skipped[m] = reason
    return None
  try:
    model_dir, config = loading.find_model(path)
  except ArgumentError as e:
    raise InputError(e.for_flag(flag)) from e
  if config.model.arch != name:
    raise InputError(f'{flag} {label}: the model is a {config.model.arch!r} '
                    f'model, expected {name!r}')
  return Model(name, model_dir, label, config)


def baseline_modules(wanted, skipped) -> dict:
  """cv2 / skimage for telea / biharmonic; missing ones go to `skipped`."""
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


def common_resolution(models, input_path) -> int:
  """The models' resolution, or without a model the input images' size
  (they are never resized)."""
  res = {m.name: int(m.config.model.resolution) for m in models}
  if len(set(res.values())) > 1:
    raise InputError(f'the models work at different resolutions: {res}')
  if res:
    return next(iter(res.values()))
  if str(input_path).startswith('tfds:'):
    return 64
  path = Path(input_path)
  files = ([str(path)] if path.is_file() else
           data.list_image_files(path) if path.is_dir() else [])
  if not files:
    raise InputError(f'--input {input_path}: no such file or folder')
  (w, _), _ = inputs.inspect_image(files[0])
  return w


def load_models(models) -> None:
  """Loads each Model's handle (`loading.load_model`)."""
  for m in models:
    m.loaded = loading.load_model(m.path)


@dataclasses.dataclass
class Plan:
  """One evaluation, checked: the methods, models, images and masks."""
  methods: list  # to run, in table order
  skipped: dict  # method -> reason
  models: dict  # 'wgan' / 'dcgan' -> Model
  mods: dict  # of `baseline_modules`
  images: np.ndarray  # (N, R, R, 3) in [-1, 1], the originals
  names: list
  mask_kinds: list
  masks: dict  # kind -> (1 or N, R, R, 1)
  input_label: str


@dataclasses.dataclass(frozen=True)
class Search:
  """Settings of the GAN methods' latent search, and of the baselines."""
  steps: int = 1000
  restarts: int = 1
  batch_size: int = 64
  seed: int = 0
  telea_radius: int = 3
  progress: bool = True


def table_masks(mask_kinds, n: int, resolution: int, seed: int) -> dict:
  """{kind: mask}: the tables' masks are one layout, the others per image."""
  return {kind: masks_lib.make_masks(kind, 1 if kind in TABLE_MASKS else n,
                                     resolution, resolution, seed)
          for kind in mask_kinds}


# ----------------------------------------------------------------------------
# The methods: (y, mask) -> (completed (N, R, R, 3) in [-1, 1], extra numbers).


def run_gan(model: Model, loss: str, y, mask, search: Search):
  """Latent search with `completion.LOSSES[loss]` and Poisson blending."""
  # pylint: disable-next=g-import-not-at-top
  from jaxinpaint import completion, pipeline
  results = pipeline.inpaint_batches(
      model.loaded, y, mask, np.arange(len(y)),
      spec=completion.get_loss(loss),
      options=completion.Options(steps=search.steps, restarts=search.restarts),
      batch_size=search.batch_size, seed=search.seed,
      progress=search.progress)
  extra = {'final_loss_mean': float(results['final_loss'].min(axis=1).mean()),
           'cg_iterations_max': int(results['cg_iterations'].max())}
  return results['blended'], extra


def harmonic(y, mask):
  """The `harmonic` method: `poisson.harmonic_fill` of all images at once."""
  from jaxinpaint import poisson  # pylint: disable=g-import-not-at-top
  filled, info = poisson.harmonic_fill(y, mask)
  return np.asarray(filled, np.float32), {
      'cg_iterations_max': int(np.max(info['iterations']))}


def holes(mask, n):
  """(1 or N, R, R, 1) mask -> (N, R, R) bool, True = hole."""
  return np.broadcast_to(np.asarray(mask)[..., 0] < 0.5,
                         (n,) + mask.shape[1:3])


def telea(cv2, y, mask, radius: int):
  """OpenCV's Telea inpainting of each image, on its uint8 values."""
  from jaxinpaint import metrics  # pylint: disable=g-import-not-at-top
  src = metrics.to_uint8(y)
  hole = holes(mask, len(y)).astype(np.uint8) * 255
  out = np.stack([cv2.inpaint(np.ascontiguousarray(s), np.ascontiguousarray(h),
                              radius, cv2.INPAINT_TELEA)
                  for s, h in zip(src, hole)])
  return out.astype(np.float32) / 127.5 - 1.0, {}


def biharmonic(inpaint_biharmonic, y, mask):
  """scikit-image's biharmonic inpainting of each image, in float64."""
  hole = holes(mask, len(y))
  out = np.stack([inpaint_biharmonic(np.array(img, np.float64), np.array(h),
                                     channel_axis=-1)
                  for img, h in zip(y, hole)])
  return np.clip(out, -1, 1).astype(np.float32), {}


def complete_with(method: str, plan: Plan, y, mask, search: Search):
  """Runs one method of the plan on damaged images y."""
  if method in GAN_METHODS:
    model, loss = GAN_METHODS[method]
    return run_gan(plan.models[model], loss, y, mask, search)
  if method == 'harmonic':
    return harmonic(y, mask)
  if method == 'telea':
    return telea(plan.mods['cv2'], y, mask, search.telea_radius)
  return biharmonic(plan.mods['inpaint_biharmonic'], y, mask)


def describe(method: str, telea_radius: int) -> str:
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
          'telea': f'OpenCV Telea, radius {telea_radius}',
          'biharmonic': 'scikit-image biharmonic'}[method]


# ----------------------------------------------------------------------------
# Running and timing.


class CompileTimer:
  """Seconds JAX spends tracing, lowering and compiling, from jax.monitoring.

  A context manager: the listener is registered on entry and removed on
  exit, so timing leaves no callback behind in the process.
  """
  EVENTS = ('/jax/core/compile/jaxpr_trace_duration',
            '/jax/core/compile/jaxpr_to_mlir_module_duration',
            '/jax/core/compile/backend_compile_duration')

  def __init__(self):
    self.seconds = 0.0

  def __call__(self, event, duration, **kwargs):
    del kwargs
    if event in self.EVENTS:
      self.seconds += duration

  def __enter__(self) -> 'CompileTimer':
    import jax  # pylint: disable=g-import-not-at-top
    jax.monitoring.register_event_duration_secs_listener(self)
    return self

  def __exit__(self, *exc):
    import jax  # pylint: disable=g-import-not-at-top
    jax.monitoring.unregister_event_duration_listener(self)


def run_methods(plan: Plan, search: Search, figure_rows: int) -> dict:
  """Every method of the plan on every mask, evaluated and timed.

  Returns {'metrics', 'per_image', 'extra', 'timing'} (each keyed by mask,
  then method), 'figure' ({mask: {method: its first `figure_rows`
  results}}) and 'damaged' ({mask: the damaged images, holes grey}).
  """
  import tqdm  # pylint: disable=g-import-not-at-top
  from jaxinpaint import pipeline  # pylint: disable=g-import-not-at-top
  images, n = plan.images, len(plan.images)
  out = {key: {k: {} for k in plan.mask_kinds}
         for key in ('metrics', 'per_image', 'extra', 'timing', 'figure')}
  out['damaged'] = {}
  for kind, mask in plan.masks.items():
    keep = np.broadcast_to(mask > 0.5, images.shape[:-1] + (1,))
    out['damaged'][kind] = np.where(keep, images, np.float32(0))
  rows = min(n, figure_rows)
  bar = tqdm.tqdm(plan.methods, desc='methods', unit='method',
                  disable=not search.progress)
  with CompileTimer() as timer:
    for method in bar:
      for kind in plan.mask_kinds:
        bar.set_postfix(method=method, mask=kind)
        mask = plan.masks[kind]
        compile_before, start = timer.seconds, time.perf_counter()
        result, extra = complete_with(method, plan, out['damaged'][kind],
                                      mask, search)
        result = np.asarray(result, np.float32)  # on the host: finished
        wall = time.perf_counter() - start
        compile_s = min(timer.seconds - compile_before, wall)
        if not np.isfinite(result).all():
          raise errors.RunError(f'{method} produced non-finite values on '
                                f'mask {kind}; is the checkpoint healthy?')
        values, summary = pipeline.evaluate(images, result, mask)
        out['metrics'][kind][method] = summary
        out['per_image'][kind][method] = {k: v.tolist()
                                          for k, v in values.items()}
        out['extra'][kind][method] = extra
        out['timing'][kind][method] = dict(
            wall_seconds=wall, compile_seconds=compile_s,
            seconds_per_image=(wall - compile_s) / n)
        out['figure'][kind][method] = result[:rows]
  bar.close()
  return out


# ----------------------------------------------------------------------------
# Tables and figures.


def mask_line(kind, mask) -> str:
  """One line on a mask: its layout and its hole size."""
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


def table_markdown(kind, plan: Plan, settings, metrics_by_method) -> str:
  """The paper's table for one mask: a header with the settings, one row
  per method, the best of each column in bold. No timing: reproducible."""
  n = len(plan.images)
  h = plan.images.shape[1]
  where = PAPER_TABLE.get(kind, 'not in the paper')
  lines = [f'# Inpainting, mask `{kind}` (cf. the paper\'s {where})',
           '',
           f'- {n} image{"s" * (n != 1)} from `{plan.input_label}` '
           f'({h}x{h}), the first {n} in sorted order',
           f'- {mask_line(kind, plan.masks[kind])}']
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
    cells = [m, describe(m, settings['telea_radius'])]
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


def timing_markdown(kind, plan: Plan, settings, timing) -> str:
  """Seconds per image of each method (not reproducible)."""
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


def save_figure(path, damaged, completed: dict, originals, methods) -> None:
  """Like the paper's Fig. 8: one row per image, columns masked input |
  each method | original."""
  from jaxinpaint import grids  # pylint: disable=g-import-not-at-top
  rows = len(next(iter(completed.values()))) if completed else len(damaged)
  grids.save_rows(path, [damaged[:rows]] + [completed[m] for m in methods]
                  + [originals[:rows]], ['input', *methods, 'original'])


def conditional_completion(model: Model, y1, reference, keep, search: Search):
  """The paper's Fig. 12 protocol: each face y1 keeps its pixels where
  `keep` is 1 and takes its structure from `reference` elsewhere (eq.
  10-15), then G(z) is Poisson-blended into y1; each result's SSIM is taken
  against its y1.

  Returns (blended (N, R, R, 3), per-image metrics, their summary).
  """
  # pylint: disable-next=g-import-not-at-top
  from jaxinpaint import completion, pipeline
  results = pipeline.inpaint_batches(
      model.loaded, y1, keep, np.arange(len(y1)),
      spec=completion.ConditionalSpec(),
      options=completion.Options(steps=search.steps, restarts=search.restarts),
      batch_size=search.batch_size, seed=search.seed,
      progress=search.progress, reference=reference)
  if not np.isfinite(results['blended']).all():
    raise errors.RunError('completion produced non-finite values; is the '
                           'checkpoint healthy?')
  per_image, summary = pipeline.evaluate(y1, results, keep)
  return results['blended'], per_image, summary


def eyes_mouth_keep_mask(h: int, w: int) -> np.ndarray:
  """(1, h, w, 1): 1 = keep from y1, 0 in the three squares (eyes, mouth),
  for conditional completion (the paper's Fig. 12)."""
  keep = np.ones((1, h, w, 1), np.float32)
  for r0, r1, c0, c1 in masks_lib.three_squares_coordinates(h, w):
    keep[:, r0:r1, c0:c1] = 0.0
  return keep


# ----------------------------------------------------------------------------
# An independent semantic check: does a face detector find a face?


def haar_face_hits(images, pad: int = 16, size: int = 192) -> np.ndarray:
  """(N,) bool: OpenCV's Haar frontal-face cascade finds a face in each
  image (N, R, R, 3) in [-1, 1].

  A detector trained apart from our networks, so a completion that only
  fools our critics does not pass it. CelebA's tight crops leave the
  cascade no margin, so each image is first padded by `pad` pixels
  (replicated) and scaled to `size`; this finds a face in 97% of the
  first 64 CelebA 64x64 test faces (31-39% unpadded). Needs OpenCV's bundled cascades (`cv2.data.haarcascades`:
  opencv-python(-headless) 4.x; 5.0 no longer ships them).
  """
  import cv2  # pylint: disable=g-import-not-at-top
  from jaxinpaint import metrics  # pylint: disable=g-import-not-at-top
  cascades = getattr(getattr(cv2, 'data', None), 'haarcascades', None)
  if not hasattr(cv2, 'CascadeClassifier') or not cascades:
    raise InputError(f'OpenCV {cv2.__version__} has no Haar cascades; the '
                    'face check needs opencv-python-headless 4.x')
  detector = cv2.CascadeClassifier(cascades +
                                   'haarcascade_frontalface_default.xml')
  hits = []
  for image in metrics.to_uint8(images):
    image = cv2.copyMakeBorder(image, pad, pad, pad, pad,
                               cv2.BORDER_REPLICATE)
    grey = cv2.cvtColor(cv2.resize(image, (size, size),
                                   interpolation=cv2.INTER_CUBIC),
                        cv2.COLOR_RGB2GRAY)
    faces = detector.detectMultiScale(grey, scaleFactor=1.05, minNeighbors=5,
                                      minSize=(size // 4, size // 4))
    hits.append(len(faces) > 0)
  return np.array(hits, bool)


# ----------------------------------------------------------------------------
# Latent recovery: completing G's own samples.


# Columns of `latent_recovery_markdown`: (row key, header).
RECOVERY_COLUMNS = (
    ('g_hole_mse', 'G(ẑ) hole MSE'), ('blend_hole_mse', 'blended hole MSE'),
    ('harmonic_hole_mse', 'harmonic hole MSE'),
    ('z_l2', 'mean ‖ẑ − z*‖'), ('z_rms', 'RMS(ẑ − z*) per coordinate'),
    ('final_loss', 'final loss'))


def latent_targets(model, n: int, seed: int, options):
  """(z* (n, z_dim), x* = G(z*) (n, R, R, 3)): G's own samples, z* drawn
  from the model's latent distribution as the search draws its starts
  (`completion.initial_latents`, one per key of `image_keys(seed, i)`) and
  then projected into `options`' constraint set, so the search could reach
  it exactly. With the search's own seed and one restart, z* is the
  search's projected starting point."""
  # pylint: disable-next=g-import-not-at-top
  import jax
  # pylint: disable-next=g-import-not-at-top
  from jaxinpaint import completion
  keys = completion.image_keys(seed, np.arange(n))
  z_star = jax.vmap(lambda k: completion.constrain_latent(
      completion.initial_latents(k, 1, model.z_dim, model.arch, options)[0],
      options))(keys)
  x_star = jax.jit(model.nets['generator'].apply)(
      model.variables['generator'], z_star)
  return np.asarray(z_star), np.asarray(x_star, np.float32)


def latent_recovery(model, *, losses=('paper', 'yeh'),
                    constraints=('box', 'sphere'), z_bound: float = 1.0,
                    n: int = 16, mask: str = 'center', steps: int = 200,
                    restarts: int = 1, seed: int = 0, target_seed: int = 1,
                    batch_size: int = 16, progress: bool = False,
                    tune_steps: int = 0, tune_options=None) -> list:
  """What the latent search recovers when the answer is in G's range.

  For each constraint ('box' with `z_bound`, 'sphere'), n targets x* =
  G(z*) with z* inside the constraint set (`latent_targets`, seed
  `target_seed`) lose their `mask` holes (default: the central square);
  each loss of `losses` (`completion.LOSSES` names) then searches with
  `steps` Adam steps under that constraint (seed `seed`). A perfect search
  would find z* (or another z with the same image), so the hole errors
  measure the search alone, apart from how well G covers real images.

  Returns one dict per (constraint, loss): 'constraint', 'loss', the hole
  MSEs on uint8 values of G(ẑ) ('g_hole_mse') and of the Poisson blend
  ('blend_hole_mse') against x*, the harmonic fill's ('harmonic_hole_mse',
  the no-model baseline, the same for every loss), the mean L2 norm
  |ẑ − z*| ('z_l2'), its per-coordinate RMS ('z_rms'), the mean of the
  kept restarts' final losses, n, steps, restarts, tune_steps.

  tune_steps, tune_options: pivotal tuning after the search
  (`completion.Options.tune_steps` and a dict of its other tune_* fields);
  the blend is then of G_θ(ẑ), and 'g_hole_mse' is G_θ(ẑ)'s.
  """
  # pylint: disable-next=g-import-not-at-top
  from jaxinpaint import completion, metrics, pipeline, poisson
  for c in constraints:
    completion.check_constraint(completion.Options(z_constraint=c,
                                                   z_bound=z_bound))
  specs = {name: completion.get_loss(name) for name in losses}
  holes_mask = masks_lib.make_masks(mask, n, model.resolution,
                                    model.resolution, seed)

  def hole_mse(a, b):
    return float(np.mean(metrics.hole_mse(
        metrics.to_uint8(a).astype(np.float32),
        metrics.to_uint8(b).astype(np.float32), holes_mask)))

  rows = []
  for constraint in constraints:
    options = completion.Options(steps=steps, restarts=restarts,
                                 z_constraint=constraint, z_bound=z_bound,
                                 tune_steps=tune_steps,
                                 **(tune_options or {}))
    z_star, x_star = latent_targets(model, n, target_seed, options)
    y = np.where(holes_mask > 0.5, x_star, np.float32(0))
    harmonic_fill, _ = poisson.harmonic_fill(y, holes_mask)
    harmonic_mse = hole_mse(harmonic_fill, x_star)
    for name, spec in specs.items():
      out = pipeline.inpaint_batches(
          model, y, holes_mask, np.arange(n), spec=spec, options=options,
          batch_size=batch_size, seed=seed, progress=progress)
      dz = out['z'] - z_star
      rows.append(dict(
          constraint=constraint, loss=name,
          g_hole_mse=hole_mse(out['generated'], x_star),
          blend_hole_mse=hole_mse(out['blended'], x_star),
          harmonic_hole_mse=harmonic_mse,
          z_l2=float(np.mean(np.linalg.norm(dz, axis=-1))),
          z_rms=float(np.sqrt(np.mean(dz * dz))),
          final_loss=float(out['final_loss'].min(axis=1).mean()),
          n=n, steps=steps, restarts=restarts, tune_steps=tune_steps))
  return rows


def latent_recovery_markdown(rows, z_bound: float = 1.0) -> str:
  """The rows of `latent_recovery` as a markdown table."""
  name = lambda c: f'box ±{z_bound:g}' if c == 'box' else c
  lines = ['| constraint | loss | ' + ' | '.join(h for _, h in
                                                 RECOVERY_COLUMNS) + ' |',
           '|---|---|' + '---:|' * len(RECOVERY_COLUMNS)]
  for r in rows:
    lines.append(f'| {name(r["constraint"])} | {r["loss"]} | ' + ' | '.join(
        f'{r[k]:.4g}' if k.startswith('z_') or k == 'final_loss'
        else f'{r[k]:.2f}' for k, _ in RECOVERY_COLUMNS) + ' |')
  return '\n'.join(lines)
