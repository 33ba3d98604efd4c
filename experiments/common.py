"""What the experiment scripts share: flags, the paper's tables' methods run
and timed, the tables and figures they write.

The methods of the paper's Tables 1-2, each mapping damaged images y (holes
0) and a mask to completed images (N, R, R, 3) float32 in [-1, 1]:

  paper_wgan          our loss (paper eq. 5-8) on our WGAN-GP
  yeh_wgan            Yeh et al.'s loss on our WGAN
  yeh_gradient_wgan   Yeh et al.'s loss plus our gradient term, on our WGAN
  yeh_dcgan           Yeh et al.'s loss on the DCGAN baseline [39]
  harmonic, telea, biharmonic   the classical fills of `jaxinpaint.baselines`

`run_methods` runs them on the same images and masks, timing each (compile
time apart, `CompileTimer`); `table_markdown`, `timing_markdown` and
`save_figure` write what paper_tables.py prints. The scripts import this
module by name: Python puts a script's own folder first on sys.path.
"""
import argparse
import dataclasses
import time
from pathlib import Path

import jax
import numpy as np
import tqdm

from jaxinpaint import completion, data, errors, models
from jaxinpaint.completion import batched
from jaxinpaint.data import grids, masks as masks_lib
from jaxinpaint.errors import InputError
from jaxinpaint.evaluation import baselines, identity
from jaxinpaint.inpaint_job import inputs
from jaxinpaint.models import loading
from jaxinpaint.ops import metrics

# GAN methods: (model, completion.LOSSES key).
GAN_METHODS = {
    'paper_wgan': ('wgan', 'paper'),
    'yeh_wgan': ('wgan', 'yeh'),
    'yeh_gradient_wgan': ('wgan', 'yeh_gradient'),
    'yeh_dcgan': ('dcgan', 'yeh'),
}
METHODS = tuple(GAN_METHODS) + baselines.FILLS  # the tables' row order
# The models in the package: the defaults of the GAN methods.
SHIPPED = {'wgan': loading.DEFAULT_MODEL,
           'dcgan': loading.ASSETS / 'celeba64_dcgan'}
TABLE_MASKS = ('center', 'three_squares')
PAPER_TABLE = {'center': 'Table 1', 'three_squares': 'Table 2'}

# Columns of the table: (results key, header, higher is better).
COLUMNS = (('mse', 'MSE', False), ('psnr', 'PSNR', True),
           ('psnr_mean', 'mean PSNR', True), ('ssim', 'SSIM', True),
           ('hole_mse', 'hole MSE', False))
# With the `eval` extra and `<identity>_<n>` names (evaluation.identity):
# dlib's face-recognition distance to the person's other photos, and the
# rate of completions it calls the same person.
IDENTITY_COLUMNS = (('identity_mean', 'identity dist.', False),
                    ('identity_rate', 'same person', True))


# ----------------------------------------------------------------------------
# Flags.


def add_search_flags(p: argparse.ArgumentParser, item: str = 'image') -> None:
  """The latent-search and output flags that the scripts share."""
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
  """A comma list of names from `valid`, each once, else an InputError."""
  items = [s.strip() for s in arg.split(',') if s.strip()]
  if not items:
    raise InputError(f'{flag}: empty list')
  for s in items:
    if s not in valid:
      raise InputError(f'{flag}: unknown {s!r}; valid: {", ".join(valid)}')
  if len(set(items)) != len(items):
    raise InputError(f'{flag}: {arg!r} lists a name twice')
  return items


@dataclasses.dataclass(frozen=True)
class Search:
  """Settings of the GAN methods' latent search, and of the baselines."""
  steps: int = 1000
  restarts: int = 1
  batch_size: int = 64
  seed: int = 0
  telea_radius: int = 3
  progress: bool = True


# ----------------------------------------------------------------------------
# The tables' models, images and masks (checked before any work).


@dataclasses.dataclass
class TableModel:
  """A model of the tables: found by `find_table_model`, then loaded."""
  name: str  # 'wgan' | 'dcgan'
  path: Path
  label: str  # the path as shown in the table header
  config: object
  loaded: models.Model | None = None  # set by `load_models`

  @property
  def step(self) -> int | None:
    return None if self.loaded is None else self.loaded.step


def find_table_model(name: str, arg, skipped: dict,
                     wanted) -> TableModel | None:
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
  with errors.naming_flags(model=flag):
    model_dir, config = loading.find_model(path)
  if config.model.arch != name:
    raise InputError(f'{flag} {label}: the model is a {config.model.arch!r} '
                     f'model, expected {name!r}')
  return TableModel(name, model_dir, label, config)


def identity_references(names, images):
  """The identity columns' photos (`identity.References` over the
  originals `images`, in [-1, 1]), or None: no person among `names` has
  two photos, or the `eval` extra is missing (then a note says how to get
  them)."""
  if not identity.has_references(names):
    return None
  if not identity.available():
    inputs.note("note: no identity columns (is it still the same person?): "
                "they need dlib: pip install -e '.[eval]'")
    return None
  return identity.References(names, metrics.to_uint8(images))


def common_resolution(table_models, input_path) -> int:
  """The models' resolution, or without a model the input images' size
  (they are never resized)."""
  res = {m.name: int(m.config.model.resolution) for m in table_models}
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


def load_models(table_models) -> None:
  """Loads each TableModel's handle (`loading.load_model`)."""
  for m in table_models:
    m.loaded = loading.load_model(m.path)


def table_masks(mask_kinds, n: int, resolution: int, seed: int) -> dict:
  """{kind: mask}: the tables' masks are one layout, the others per image."""
  return {kind: masks_lib.make_masks(kind, 1 if kind in TABLE_MASKS else n,
                                     resolution, resolution, seed)
          for kind in mask_kinds}


@dataclasses.dataclass
class Plan:
  """One evaluation, checked: the methods, models, images and masks."""
  methods: list  # to run, in table order
  skipped: dict  # method -> reason
  models: dict  # 'wgan' / 'dcgan' -> TableModel
  images: np.ndarray  # (N, R, R, 3) in [-1, 1], the originals
  names: list
  mask_kinds: list
  masks: dict  # kind -> (1 or N, R, R, 1)
  input_label: str
  # The persons' photos for the identity columns, or None
  # (`identity_references`).
  identity_photos: identity.References | None = None


# ----------------------------------------------------------------------------
# The methods: (y, mask) -> (completed (N, R, R, 3) in [-1, 1], extra numbers).


def run_gan(model: models.Model, loss: str, y, mask, search: Search):
  """Latent search with `completion.LOSSES[loss]` and Poisson blending."""
  results = batched.inpaint_batches(
      model, y, mask, np.arange(len(y)),
      spec=completion.get_loss(loss),
      options=completion.Options(steps=search.steps, restarts=search.restarts),
      batch_size=search.batch_size, seed=search.seed,
      progress=search.progress)
  extra = {'final_loss_mean': float(results['final_loss'].min(axis=1).mean()),
           'cg_iterations_max': int(results['cg_iterations'].max())}
  return results['blended'], extra


def complete_with(method: str, plan: Plan, y, mask, search: Search):
  """Runs one method of the plan on damaged images y."""
  if method in GAN_METHODS:
    model, loss = GAN_METHODS[method]
    return run_gan(plan.models[model].loaded, loss, y, mask, search)
  return baselines.fill(method, y, mask, telea_radius=search.telea_radius)


def describe(method: str, telea_radius: int) -> str:
  """The table's 'Loss / method' cell."""
  if method in GAN_METHODS:
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


def device_label() -> str:
  """The first device, as the results name it: 'cpu', 'gpu (NVIDIA H100)'."""
  device = jax.devices()[0]
  if device.device_kind == device.platform:
    return device.platform
  return f'{device.platform} ({device.device_kind})'


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
    jax.monitoring.register_event_duration_secs_listener(self)
    return self

  def __exit__(self, *exc):
    jax.monitoring.unregister_event_duration_listener(self)


def run_methods(plan: Plan, search: Search, figure_rows: int) -> dict:
  """Every method of the plan on every mask, evaluated and timed.

  Returns {'metrics', 'per_image', 'extra', 'timing'} (each keyed by mask,
  then method), 'figure' ({mask: {method: its first `figure_rows`
  results}}) and 'damaged' ({mask: the damaged images, holes grey}).
  """
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
        values, summary = batched.evaluate(images, result, mask)
        if plan.identity_photos is not None:
          values.update(identity.identity_distances(
              metrics.to_uint8(result), metrics.to_uint8(images), plan.names,
              plan.identity_photos))
          summary.update(identity.summarize(values))
        out['metrics'][kind][method] = summary
        # NaN (an identity without other photos) as JSON's null.
        out['per_image'][kind][method] = {
            k: [None if np.isnan(x) else x for x in v.tolist()]
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


def table_columns(metrics_by_method) -> tuple:
  """The table's columns: `COLUMNS`, then `IDENTITY_COLUMNS` when the
  methods' metrics have them."""
  first = next(iter(metrics_by_method.values()), {})
  return COLUMNS + (IDENTITY_COLUMNS if first.get('identity_mean') is not None
                    else ())


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
            *_identity_lines(metrics_by_method),
            '- timing (not reproducible): '
            f'[timing_{kind}.md](timing_{kind}.md); figure: '
            f'[fig_{kind}.png](fig_{kind}.png)', '']
  columns = table_columns(metrics_by_method)
  header = ['Method', 'Loss / method'] + [c[1] for c in columns]
  lines.append('| ' + ' | '.join(header) + ' |')
  lines.append('|' + '|'.join(['---', '---'] + ['---:'] * len(columns)) + '|')
  best = {}
  for key, _, higher in columns:
    values = [metrics_by_method[m][key] for m in plan.methods]
    best[key] = _fmt(max(values) if higher else min(values))
  for m in plan.methods:
    cells = [m, describe(m, settings['telea_radius'])]
    for key, _, _ in columns:
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


def _identity_lines(metrics_by_method) -> list:
  """The table header's line on the identity columns, if it has them."""
  if table_columns(metrics_by_method) == COLUMNS:
    return []
  first = next(iter(metrics_by_method.values()))
  return [f'- identity: dlib\'s face-recognition distance of each completion '
          'to the other photos of the same person (aligned with the '
          'original\'s landmarks), its mean, and the rate below '
          f'{identity.SAME_PERSON} (dlib\'s "same person"), over the '
          f'{first["identity_count"]} images whose person has other photos; '
          f'the originals themselves: '
          f'{_fmt(first["identity_original_mean"])}, '
          f'{_fmt(first["identity_original_rate"])}']


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
  rows = len(next(iter(completed.values()))) if completed else len(damaged)
  grids.save_rows(path, [damaged[:rows]] + [completed[m] for m in methods]
                  + [originals[:rows]], ['input', *methods, 'original'])
