"""Completion of many images: fixed-size batches, streamed inputs, metrics.

The layer between `completion` (one jitted call on one batch) and the
`inpaint.py` CLI, importable from a notebook:

  model = loading.load_model(model_dir)
  results = batched.inpaint_batches(
      model, images, masks, np.arange(len(images)),
      spec=completion.LOSSES['paper'], options=completion.Options(),
      batch_size=64, seed=0)
  per_image, summary = batched.evaluate(originals, results, masks)

Every batch has the same shape (the last one is padded), so `complete` is
compiled once; each image's key comes from (seed, its index), and completion
is vmapped per image, so results do not depend on the batch size beyond
float rounding: within one batch size an image's result is bitwise the same
whatever its batchmates (tests/test_completion.py), but each batch size is
its own XLA program, whose convolutions may round differently in the last
bit (~1e-7; tests/test_batch_completion.py). Such differences can grow over
many Adam steps, because Adam's update is nearly sign(gradient) for small
gradients. The inputs may be arrays or rows readers (`rows_reader`): then
each batch is read when it is due, the next one on a thread.

Batches run on every local device by default: each batch is split over a
one-axis `Mesh` (images on 'images', the networks replicated) and the same
jitted search runs SPMD, each device on its own images. The Adam steps need
no communication; after them the restart selection gathers the latents
(N x K x z_dim floats) and the CG blend's loop test reduces one flag per
iteration over the devices (a converged system is frozen, so no value
depends on the split). The per-image maths is unchanged, so results equal
the one-device ones up to the rounding above (tests/test_devices.py).
"""
import concurrent.futures
from typing import Dict, Mapping, Sequence, Tuple

import jax
import numpy as np
import tqdm

from jaxinpaint import errors, host_memory, models, sharding
from jaxinpaint.completion import api, objectives, search
from jaxinpaint.ops import metrics

RESULT_KEYS = ('generated', 'overlay', 'blended', 'z', 'final_loss',
               'loss_trace', 'cg_iterations', 'tune_trace')


def _broadcast_rows(name: str, x: np.ndarray, n: int) -> np.ndarray:
  """(1, ...) or (n, ...) -> (n, ...) without copying."""
  x = np.asarray(x)
  if x.shape[0] not in (1, n):
    raise ValueError(f'{name} has {x.shape[0]} rows; expected 1 (shared by '
                     f'all images) or one per image ({n})')
  return np.broadcast_to(x, (n,) + x.shape[1:])


def _padded_rows(start: int, n: int, batch_size: int) -> np.ndarray:
  """Row indices of the batch starting at `start`, padded to `batch_size`.

  A short last batch repeats its own rows cyclically: the padding rows are
  real (finite) work that is dropped afterwards, and one compiled shape
  serves every batch.
  """
  count = min(batch_size, n - start)
  return start + np.arange(batch_size) % count


# The mesh axis that completion batches are split on (their leading axis).
# The search differentiates G and the critics for every latent it holds
# (batch x restarts): their forward activations are kept for the backward
# pass, which makes gradients of the same sizes, and XLA keeps temporaries
# besides. XLA's own figure for the compiled search (temporaries and
# arguments; widths 4 and 16 at 64x64, batches 2-4, 1-4 restarts, CPU) was
# 0.95-1.9x the forward activations per latent; SEARCH_MEMORY_FACTOR x them
# is a rough, generous estimate: it only has to refuse sizes that are far
# too large before they compile.
SEARCH_MEMORY_FACTOR = 2


def activation_bytes(model: models.Model) -> int:
  """Bytes of the outputs of every layer of G and the critics for one
  latent, in float32: computed from shapes only (nothing runs)."""
  nets, variables = model.nets, model.variables

  def forward(z):
    x, g = nets['generator'].apply(variables['generator'], z,
                                   capture_intermediates=True,
                                   mutable=['intermediates'])
    captured = [g]
    for name in nets:
      if name != 'generator':
        _, d = nets[name].apply(variables[name], x,
                                capture_intermediates=True,
                                mutable=['intermediates'])
        captured.append(d)
    return captured

  shapes = jax.eval_shape(forward, jax.ShapeDtypeStruct((1, model.z_dim),
                                                        np.float32))
  return sum(4 * int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(shapes))


def search_memory(model: models.Model, batch_size: int, restarts: int,
                  n_devices: int = 1) -> int:
  """Estimated device memory in bytes of one compiled search of
  `batch_size` images x `restarts` latents on each of `n_devices` devices
  (the batch split between them): SEARCH_MEMORY_FACTOR x the activations
  of every latent plus the model's variables."""
  per_device = -(-batch_size // n_devices) * restarts
  params = sum(4 * int(np.size(x)) for x in jax.tree.leaves(model.variables))
  return SEARCH_MEMORY_FACTOR * activation_bytes(model) * per_device + params


def check_search_memory(model: models.Model, batch_size: int, restarts: int,
                        devices: Sequence[jax.Device]):
  """Raises errors.ArgumentError ('restarts' or 'batch_size') when
  `search_memory` exceeds the first device's free memory, saying whether
  the restarts alone are too many (then no batch size fits) or the batch
  size to use at most."""
  need = search_memory(model, batch_size, restarts, len(devices))
  free = host_memory.free_memory(devices[0])
  if need <= free:
    return
  gib = lambda b: f'{b / 2**30:.1f} GiB'
  where = (f'{devices[0].device_kind} has {gib(free)} free; the estimate is '
           f'SEARCH_MEMORY_FACTOR={SEARCH_MEMORY_FACTOR} x the activations '
           'of the networks per latent')
  one = search_memory(model, len(devices), restarts, len(devices))
  if one > free:
    most = max(0, restarts * free // one)
    raise errors.ArgumentError(
        'restarts', f'{restarts} latents per image need about {gib(one)} even '
        f'with one image per device ({where}); use at most {most}')
  fits = len(devices)
  while search_memory(model, fits * 2, restarts, len(devices)) <= free:
    fits *= 2
  raise errors.ArgumentError(
      'batch_size', f'{batch_size} images x {restarts} restarts need about '
      f'{gib(need)} ({where}); use at most {fits}, or fewer restarts')


def rows_reader(name: str, x, n: int, dtype=np.float32):
  """`read(rows)` of the rows of `x`: an array with n rows, one row shared
  by all n (broadcast, not copied), or an object with `__len__` (n) and
  `read(rows)` that reads only those rows (e.g. `inputs.ImageFiles`: files
  decoded on demand, so memory is bounded by the batch size). The rows
  come in `dtype` (None: as `x` gives them)."""
  if hasattr(x, 'read'):
    if len(x) != n:
      raise ValueError(f'{name} has {len(x)} rows; expected {n}')
    return lambda rows: np.asarray(x.read(rows), dtype)
  x = np.asarray(x, dtype)
  if x.shape[0] == 1:
    return lambda rows: np.broadcast_to(x, (len(rows),) + x.shape[1:])
  _broadcast_rows(name, x, n)  # checks the count
  return lambda rows: x[rows]


_INPUT_NAMES = ('images', 'masks', 'reference')


def _checked_inputs(model, images, masks, reference, indices,
                    batch_size: int, keep):
  """(images, masks, reference, indices, whether each batch needs its
  checks) after `inpaint_batches`' argument checks (ValueError, one line).

  Arrays are checked here, before any work (`api.checked_inputs`: dtype,
  shape, then values when no input is a rows reader); a reader's rows can
  only be checked as they are read, a batch at a time (`_batch_reader`).
  """
  r = model.resolution
  readers = [hasattr(x, 'read') for x in (images, masks, reference)]
  if not readers[0]:
    images = api.check_images('images', images, r)
  n = len(images)
  if n == 0:
    raise errors.ArgumentError('images', 'expected (N, H, W, 3) with N >= 1, '
                               'got none')
  if not readers[1]:
    masks = api.check_mask('masks', masks, n, r)
  if reference is not None and not readers[2]:
    reference = api.check_images('reference', reference, r)
    api.check_rows('reference', len(reference), n)
  if not any(readers):
    api.checked_inputs(model, images, masks, reference, names=_INPUT_NAMES)
  if batch_size < 1:
    raise ValueError(f'batch_size must be >= 1, got {batch_size}')
  unknown = set(keep) - set(RESULT_KEYS)
  if unknown:
    raise ValueError(f'keep={tuple(keep)}: {sorted(unknown)} are not among '
                     f'{RESULT_KEYS}')
  indices = np.asarray(indices)
  if indices.shape != (n,):
    raise ValueError(f'indices must have shape ({n},), got {indices.shape}')
  return images, masks, reference, indices, any(readers)


def _batch_reader(model, images, masks, reference, n: int, check: bool):
  """`read(rows)` → a batch's inputs {'images', 'masks'[, 'reference']},
  float32; with `check`, every check of `api.checked_inputs` on the batch
  (errors name the input and the image's row)."""
  read_images = rows_reader('images', images, n, dtype=None)
  read_masks = rows_reader('masks', masks, n, dtype=None)
  read_reference = (None if reference is None
                    else rows_reader('reference', reference, n, dtype=None))

  def read(rows):
    inputs = (read_images(rows), read_masks(rows),
              None if read_reference is None else read_reference(rows))
    if check:
      inputs = api.checked_inputs(model, *inputs, names=_INPUT_NAMES,
                                  rows=rows)
    return {name: np.asarray(x, np.float32)
            for name, x in zip(_INPUT_NAMES, inputs) if x is not None}

  return read


def _batch_search(model, spec, options: search.Options, reference,
                  place_batch):
  """`run(batch, keys)`: `api.complete` of a batch's inputs, or
  `api.complete_conditional` with a reference, placed on the devices."""
  if reference is None:
    return lambda b, keys: api.complete(
        model, *place_batch((b['images'], b['masks'], keys)), spec=spec,
        options=options)
  cond_spec = spec if spec is not None else objectives.ConditionalSpec()
  if not isinstance(cond_spec, objectives.ConditionalSpec):
    raise ValueError('conditional completion (reference given) needs a '
                     f'completion.ConditionalSpec, got {type(spec).__name__}')
  return lambda b, keys: api.complete_conditional(
      model, *place_batch((b['images'], b['reference'], b['masks'], keys)),
      spec=cond_spec, options=options)


def inpaint_batches(model: models.Model, images, masks, indices, *,
                    spec, options: search.Options, batch_size: int,
                    seed: int, progress: bool = True,
                    reference=None, on_batch=None,
                    devices: sharding.Devices = None,
                    keep=RESULT_KEYS) -> Dict[str, np.ndarray]:
  """Completes N images with `completion.complete`, `batch_size` at a time.

  Args:
    model: the `models.Model` handle (`loading.load_model`); its arch
      picks the latent distribution and prior.
    images: (N, R, R, 3) float in [-1, 1], the damaged images y (hole
      pixels are never read: they may hold anything, NaN included), or a
      rows reader (`rows_reader`): then each batch is read when it is due,
      the next one on a thread while the current one is completed, and is
      checked as `api.complete` checks its arguments (errors.ArgumentError
      naming the input and the image's row); arrays are checked before any
      work. With `reference`, the images y1 to change.
    masks: (N, H, W, 1) or (1, H, W, 1) float, 1 = known, 0 = hole, or a
      rows reader of N masks, values in [0, 1]; one mask broadcasts to all
      images. With `reference`, 1 = keep from y1.
    indices: (N,) int, each image's index in its data set; with `seed` it
      fixes the image's PRNG key (`completion.image_keys`), so results do not
      depend on `batch_size` or on which images share a batch.
    spec: `completion.LossSpec` (e.g. `completion.LOSSES['paper']`); with
      `reference`, a `completion.ConditionalSpec` or None for its default.
    options: `completion.Options` (steps, restarts, blending, ...).
    batch_size: images per compiled call, B >= 1. The batch is
      min(B, N) rounded up to a multiple of the device count (7 images,
      B = 3 on 4 devices: batches of 4); the last batch is padded to it by
      repeating its rows, and padding rows never reach the results.
    seed: root seed of the latent initializations.
    progress: show a tqdm bar over batches (on stderr).
    reference: optional (1 or N, H, W, 3) float32 in [-1, 1], the reference
      face(s) y2: conditional completion (`completion.complete_conditional`).
    on_batch: optional `on_batch(start, stop, batch)`, called after each
      batch with its rows [start, stop) of the dict returned below (every
      key of RESULT_KEYS) plus the batch's inputs 'images' and 'masks': a
      caller that writes them there keeps the finished batches of a run
      that is interrupted later, and needs no copy of all inputs.
    devices: where to run (`sharding.completion_devices`): None = all local
      devices, an int = the first that many, or a list of devices. Each
      batch is split evenly over them; an image's result depends only on
      its own (y, M, key), so the device count changes results by float
      rounding only.
    keep: the results to gather and return (default: all of RESULT_KEYS);
      a caller that streams many images keeps the small ones only (e.g.
      ('final_loss',)) and takes the images in `on_batch`.

  Returns:
    dict of numpy arrays with leading axis N, the `keep` ones of:
    'generated' G(ẑ), 'overlay' M·y + (1 − M)·G(ẑ), 'blended'
    (Poisson-blended, = overlay when `options.blend` is False), all (N, H,
    W, 3) float32 in [-1, 1]; 'z' (N, z_dim) in `options`' constraint set;
    'final_loss' (N, restarts); 'loss_trace' (N, steps) of the kept
    restart; 'cg_iterations' (N,) int32 (-1 when not blending);
    'tune_trace' (N, options.tuning.steps), the loss at G_θ(ẑ) before each
    pivotal-tuning step (`completion.Tuning`).
  """
  api.check_model(model)
  search.check_options(options)
  images, masks, reference, indices, check = _checked_inputs(
      model, images, masks, reference, indices, batch_size, keep)
  n = len(images)
  read = _batch_reader(model, images, masks, reference, n, check)
  devices = sharding.completion_devices(devices)
  place_batch, place_replicated = sharding.batch_placement(devices)
  model = model.with_variables(place_replicated(model.variables))
  run = _batch_search(model, spec, options, reference, place_batch)

  batch = sharding.round_batch_size(batch_size, n, len(devices))
  starts = list(range(0, n, batch))
  pieces = {k: [] for k in keep}
  # One reader thread: the next batch is decoded while this one computes.
  with concurrent.futures.ThreadPoolExecutor(1) as reader:
    upcoming = reader.submit(read, _padded_rows(0, n, batch))
    for i, start in enumerate(tqdm.tqdm(starts, desc='completing',
                                        unit='batch', disable=not progress,
                                        leave=False)):
      rows = _padded_rows(start, n, batch)
      inputs = upcoming.result()
      if i + 1 < len(starts):
        upcoming = reader.submit(read, _padded_rows(starts[i + 1], n, batch))
      keys = api.image_keys(seed, indices[rows])
      out = run(inputs, keys)
      if out.get('cg_iterations') is None:
        out = dict(out, cg_iterations=np.full((batch,), -1, np.int32))
      out = jax.device_get({k: out[k] for k in RESULT_KEYS})
      count = min(batch, n - start)  # drop the padding rows
      out = {k: np.asarray(out[k])[:count] for k in RESULT_KEYS}
      if on_batch is not None:
        on_batch(start, start + count,
                 dict(out, images=inputs['images'][:count],
                      masks=inputs['masks'][:count]))
      for k in keep:
        pieces[k].append(out[k])
  return {k: np.concatenate(v) for k, v in pieces.items()}


def evaluate(originals, results, masks) -> Tuple[Dict[str, np.ndarray],
                                                 Dict[str, float]]:
  """The paper's metrics of completed images against the originals.

  Both sides are first rounded to uint8 values with `metrics.to_uint8`, so
  the numbers describe the PNG files that are written, on [0, 255].

  Args:
    originals: (N, H, W, 3) float in [-1, 1], the undamaged images.
    results: the dict of `inpaint_batches` (its 'blended' is used) or the
      completed images themselves, (N, H, W, 3) float in [-1, 1].
    masks: (N or 1, H, W, 1), 1 = known, 0 = hole (for hole_mse).

  Returns:
    (per_image, summary): per_image = {'mse', 'psnr', 'ssim', 'hole_mse'},
    each a float64 numpy array (N,); summary = `metrics.summarize(...)`:
    {'mse', 'psnr' (10·log10(255²/mean MSE)), 'psnr_mean', 'ssim',
    'hole_mse', 'n_images'}.
  """
  completed = results['blended'] if isinstance(results, Mapping) else results
  a = metrics.to_uint8(completed).astype(np.float32)
  b = metrics.to_uint8(originals).astype(np.float32)
  if a.shape != b.shape or a.ndim != 4:
    raise ValueError(f'completed images {a.shape} and originals {b.shape} '
                     'must be the same (N, H, W, C)')
  n = len(a)
  masks = _broadcast_rows('masks', np.asarray(masks, np.float32), n)
  # Fixed-size chunks, the last one padded: one compile whatever N is (eager
  # metrics would compile every primitive again for each new N).
  chunk = _METRICS_CHUNK
  pieces = []
  for start in range(0, n, chunk):
    rows = _padded_rows(start, n, chunk)
    values = jax.device_get(_image_metrics(a[rows], b[rows], masks[rows]))
    pieces.append({k: v[:min(chunk, n - start)] for k, v in values.items()})
  per_image = {k: np.concatenate([p[k] for p in pieces]).astype(np.float64)
               for k in pieces[0]}
  summary = metrics.summarize(per_image['mse'], per_image['psnr'],
                              per_image['ssim'], per_image['hole_mse'])
  return per_image, summary


_METRICS_CHUNK = 64


@jax.jit
def _image_metrics(a, b, masks):
  """Per-image metrics of uint8-valued float images (N, H, W, C)."""
  return {'mse': metrics.mse(a, b), 'psnr': metrics.psnr(a, b),
          'ssim': metrics.ssim(a, b), 'hole_mse': metrics.hole_mse(a, b, masks)}
