"""Completion's entry points: `complete` (paper 3.2), `complete_conditional`
(3.3), the fill from given latents, pivotal tuning alone, `generate` and
the per-image keys.

Each checks its arguments first, on the host (errors.ArgumentError, one
line naming the argument: the model, the options' fields, the arrays'
dtype, shape and values: `checked_inputs`), binds the loss to the model's networks (an
`objectives.Objective`, in `Options.dtype`) and runs the search
(`search.py`), then pivotal tuning when `Options.tuning.steps` > 0
(`tuning.py`).

Conventions: images float32 (N, H, W, C) in [-1, 1]; masks (N, H, W, 1),
1 = known; the model is a `models.Model` handle (`loading.load_model`): its
arch fixes the latent distribution and the form of the critic prior, its
z_dim the latent's size.
"""
import functools
import os

import jax
import jax.numpy as jnp
import numpy as np

from jaxinpaint import errors, models
from jaxinpaint.completion import objectives, search, tuning
from jaxinpaint.ops import image_ops


def _check_watch(on_steps, every):
  if on_steps is not None and not callable(on_steps):
    raise ValueError(f'on_steps must be callable or None, got {on_steps!r}')
  if isinstance(every, bool) or not isinstance(every, int) or every < 1:
    raise ValueError(f'every must be an int >= 1, got {every!r}')


def _check_critics(model, needs_critic: bool, what: str) -> None:
  """ValueError (one line) when `what` needs the global critic and the
  model has none (e.g. a generator exported alone)."""
  if needs_critic and 'critic' not in model.nets:
    raise ValueError(f'{what} needs the model\'s global critic D, but the '
                     f'model has only {sorted(model.nets)}')


# ----------------------------------------------------------------------------
# The inputs' checks: on the host, once per call (or per batch of
# `batched.inpaint_batches`), never inside the jitted search. Each is a few
# numpy reductions over the arrays, O(N·H·W), against a search of hundreds
# of steps through the networks.


def check_model(model) -> None:
  """errors.ArgumentError ('model') unless `model` is a `models.Model`."""
  if isinstance(model, models.Model):
    return
  if isinstance(model, (str, os.PathLike)):
    raise errors.ArgumentError(
        'model', f'expected a models.Model, got the path {str(model)!r}: use '
        'jaxinpaint.load_model(path)')
  raise errors.ArgumentError(
      'model', f'expected a models.Model (jaxinpaint.load_model), got '
      f'{type(model).__name__}')


def check_images(name: str, x, resolution: int) -> np.ndarray:
  """`x` as float32 (N, R, R, 3) on the host, after its dtype and shape
  checks (errors.ArgumentError naming `name`); values: `check_known`."""
  x = np.asarray(x)
  want = f'(N, {resolution}, {resolution}, 3)'
  if not jnp.issubdtype(x.dtype, jnp.floating):
    got = str(x.dtype)
    if jnp.issubdtype(x.dtype, jnp.integer) and x.size:
      got += f' {x.min()}..{x.max()}'
    hint = ': divide by 127.5 and subtract 1' if x.dtype == np.uint8 else ''
    raise errors.ArgumentError(name, 'expected float values in [-1, 1], got '
                               f'{got}{hint}')
  if x.shape == (resolution, resolution, 3):
    raise errors.ArgumentError(name, f'expected {want}, got one image '
                               f'{x.shape}: add the batch axis, x[None]')
  if x.ndim == 4 and x.shape[1] in (1, 3) and x.shape[2:] == (resolution,
                                                               resolution):
    raise errors.ArgumentError(
        name, f'expected channels last {want}, got {x.shape} (channels '
        'first): np.transpose(x, (0, 2, 3, 1))')
  if x.ndim != 4 or x.shape[1:] != (resolution, resolution, 3) or (
      not x.shape[0]):
    raise errors.ArgumentError(name, f'expected {want} with N >= 1 (the '
                               f'model\'s resolution), got {x.shape}')
  return x.astype(np.float32, copy=False)


def check_mask(name: str, mask, n: int, resolution: int) -> np.ndarray:
  """`mask` as float32 (n, R, R, 1) on the host (one row broadcast to n,
  not copied), values finite in [0, 1]; errors.ArgumentError naming
  `name`. A bool mask reads True = known."""
  mask = np.asarray(mask)
  want = f'(N or 1, {resolution}, {resolution}, 1)'
  if mask.ndim == 3 and mask.shape[1:] == (resolution, resolution):
    raise errors.ArgumentError(name, f'expected {want}, got {mask.shape} '
                               'without the channel axis: mask[..., None]')
  if mask.ndim == 4 and mask.shape[1:] == (1, resolution, resolution):
    raise errors.ArgumentError(
        name, f'expected channels last {want}, got {mask.shape} (channels '
        'first): np.transpose(mask, (0, 2, 3, 1))')
  if mask.ndim != 4 or mask.shape[1:] != (resolution, resolution, 1):
    raise errors.ArgumentError(name, f'expected {want}, got {mask.shape}')
  check_rows(name, mask.shape[0], n)
  if not (mask.dtype == bool or jnp.issubdtype(mask.dtype, jnp.number)):
    raise errors.ArgumentError(name, 'expected float values in [0, 1] (1 = '
                               f'known, 0 = hole), got {mask.dtype}')
  mask = mask.astype(np.float32, copy=False)
  if not np.isfinite(mask).all():
    raise errors.ArgumentError(name, 'expected values in [0, 1] (1 = known, '
                               '0 = hole), got NaN or inf')
  lo, hi = mask.min(), mask.max()
  if lo < 0 or hi > 1:
    hint = ': divide by 255' if lo >= 0 and hi <= 255 else ''
    raise errors.ArgumentError(name, 'expected values in [0, 1] (1 = known, '
                               f'0 = hole), got {lo:g}..{hi:g}{hint}')
  return np.broadcast_to(mask, (n,) + mask.shape[1:])


_READ = {'known': ('a known pixel (mask > 0)', 'hole pixels (mask 0)'),
         'reference': ('a pixel it gives (mask < 1)',
                       'pixels kept from the images (mask 1)')}


def check_known(name: str, x: np.ndarray, read: np.ndarray, rows=None,
                region: str = 'known') -> None:
  """errors.ArgumentError naming `name` and the image unless `x` (N, H, W,
  C) is finite and in [-1, 1] wherever `read` (N, H, W, 1) is True: the
  pixels the search reads (`region`: 'known', or 'reference' for y2). The
  others (a hole's) may hold anything, NaN included. `rows`: the images'
  numbers in the message (default 0..N-1)."""
  read = np.broadcast_to(read, x.shape)
  bad = ~(np.isfinite(x) | ~read)
  if bad.any():
    i = int(np.argmax(bad.any(axis=(1, 2, 3))))
    read_there, others = _READ[region]
    raise errors.ArgumentError(
        name, f'image {i if rows is None else int(rows[i])} has NaN or inf '
        f'at {read_there}; only {others} may hold anything')
  lo = np.min(x, where=read, initial=np.inf)
  hi = np.max(x, where=read, initial=-np.inf)
  if lo < -1 or hi > 1:
    hint = (': divide by 127.5 and subtract 1' if lo >= 0 and hi <= 255
            else '')
    raise errors.ArgumentError(name, f'expected float values in [-1, 1], got '
                               f'{lo:g}..{hi:g}{hint}')


def check_rows(name: str, count: int, n: int) -> None:
  """errors.ArgumentError naming `name` unless count is 1 (shared by all n
  images) or n."""
  if count not in (1, n):
    raise errors.ArgumentError(name, f'has {count} rows; expected 1 (shared '
                               f'by all images) or one per image ({n})')


def check_keys(keys, n: int) -> None:
  if len(keys) != n:
    raise errors.ArgumentError('keys', f'expected one PRNG key per image '
                               f'({n}), got {len(keys)}')


def checked_inputs(model, y, mask, reference=None, names=('y', 'mask', 'y2'),
                   rows=None):
  """(y, mask[, reference]) as float32 host arrays after every check above:
  y (N, R, R, 3) finite in [-1, 1] where mask > 0, mask (1 or N, R, R, 1)
  in [0, 1] broadcast to N, reference (1 or N, R, R, 3) finite in [-1, 1]
  where mask < 1, broadcast to N. `names`: the arguments' names in the
  errors; `rows`: the images' numbers in them."""
  r = model.resolution
  y = check_images(names[0], y, r)
  mask = check_mask(names[1], mask, len(y), r)
  check_known(names[0], y, mask > 0, rows)
  if reference is None:
    return y, mask
  reference = check_images(names[2], reference, r)
  check_rows(names[2], len(reference), len(y))
  reference = np.broadcast_to(reference, y.shape)
  check_known(names[2], reference, mask < 1, rows, region='reference')
  return y, mask, reference


def _on_device(given, checked):
  """The caller's jax.Array where checking did not change it (it stays where
  it is, e.g. split over the devices by `batched`), else the checked host
  array on the default device."""
  if isinstance(given, jax.Array) and (given.shape, given.dtype) == (
      checked.shape, checked.dtype):
    return given
  return jnp.asarray(checked)


def check_latents(name: str, z, n: int | None, z_dim: int) -> np.ndarray:
  """errors.ArgumentError naming `name` unless z is finite (n, z_dim)
  (any n >= 1 when None)."""
  z = np.asarray(z)
  if (z.ndim != 2 or z.shape[1] != z_dim or not len(z)
      or n is not None and len(z) != n):
    raise errors.ArgumentError(name, f'expected ({n or "N"}, {z_dim}) '
                               f'latents, got shape {z.shape}')
  if not jnp.issubdtype(z.dtype, jnp.floating):
    raise errors.ArgumentError(name, f'expected float latents, got {z.dtype}')
  if not np.isfinite(z).all():
    raise errors.ArgumentError(name, 'expected finite latents, got NaN or inf')
  return z


_window_weights_jit = jax.jit(image_ops.window_weights, static_argnums=1)


def complete(model: models.Model, y, mask, keys, *,
             spec: objectives.LossSpec, options: search.Options,
             on_steps=None, every: int = 1):
  """Fills the holes of a batch of images.

  Args:
    model: the `models.Model` handle (nets, variables, arch, z_dim); its
      arch picks the latent distribution and the Yeh prior's form.
    y: (N, R, R, 3) damaged float images in [-1, 1] (R the model's
      resolution); hole pixels are never read (neither by the loss nor by
      the blend), so they may hold anything, NaN included; known pixels
      must be finite.
    mask: (N, R, R, 1) or (1, R, R, 1) (shared by all images), values in
      [0, 1]: 1 = known pixel, 0 = hole.
    keys: (N,) PRNG keys, one per image (its restarts' initializations).
    spec, options: `LOSSES[name]` and `Options(...)`.
    on_steps: optional `on_steps(done, z, loss)`, called after every
      `every` Adam steps and after the last one, to watch the search (a
      progress bar, a preview of G(z)): done = steps finished, z (N, K,
      z_dim) every restart's latent now, loss (N, K) each restart's loss at
      the z its last step differentiated. The steps then run from Python
      (`Options.loop` 'host'); the results are those of the host loop
      without a callback, bit for bit.
    every: steps between calls of `on_steps`.

  Returns a dict: z (N, z_dim) the kept ẑ, inside the constraint set
  ([-1, 1] by default); generated G(ẑ); overlay M·y + (1 − M)·G(ẑ); blended
  (Poisson, eq. 9); final_loss (N, K) per restart; loss_trace (N, steps) of
  the kept restart; cg_iterations; tune_trace (N, tuning.steps): the
  search's loss at G_θ(ẑ) before each tuning step ((N, 0) without tuning).
  With `options.tuning.steps` > 0, generated is G_θ(ẑ) of the image's tuned
  G (pivotal tuning, `Tuning`); ẑ, final_loss and loss_trace are the
  search's, as without tuning.

  Raises errors.ArgumentError (a ValueError) naming the argument, before
  any work: e.g. uint8 images, a mask of 0/255, NaN at a known pixel, an
  option out of range (`search.check_options`).
  """
  check_model(model)
  search.check_options(options)
  _check_watch(on_steps, every)
  _check_critics(model, bool(spec.eta), f'the {spec.prior!r} prior (η > 0)')
  checked = checked_inputs(model, y, mask)
  check_keys(keys, len(checked[0]))
  y, mask = (_on_device(*pair) for pair in zip((y, mask), checked))
  data = (y, mask, _window_weights_jit(mask, options.window))
  return _run(model, data, keys, y, mask, spec, options, on_steps, every)


def _objective(model, spec, options: search.Options) -> objectives.Objective:
  return objectives.Objective(with_dtype(model.nets, options.dtype), spec,
                              model.arch, options.window)


def _run(model, data, keys, known, mask, spec, options: search.Options,
         on_steps=None, every=1):
  """The search, tuned or not: the dict of `complete`."""
  objective = _objective(model, spec, options)
  run = dict(objective=objective, options=options, z_dim=model.z_dim,
             on_steps=on_steps, every=every)
  if options.tuning.steps:
    z_hat, final, trace = search.best_latents(model.variables, data, keys,
                                              **run)
    return tuning.tune_and_fill(model.variables, data, keys, known, mask,
                                z_hat, final, trace, objective=objective,
                                options=options)
  out = search.search(model.variables, data, keys, known, mask, **run)
  return dict(out, tune_trace=jnp.zeros((known.shape[0], 0), jnp.float32))


def _prepare_fill(model, y, mask, z_hat, keys, spec, options):
  check_model(model)
  search.check_options(options)
  _check_critics(model, bool(spec.eta), f'the {spec.prior!r} prior (η > 0)')
  checked = checked_inputs(model, y, mask)
  check_latents('z_hat', z_hat, len(checked[0]), model.z_dim)
  check_keys(keys, len(checked[0]))
  y, mask, z_hat = (_on_device(*pair) for pair in
                    zip((y, mask, z_hat), checked + (np.asarray(z_hat),)))
  data = (y, mask, _window_weights_jit(mask, options.window))
  return y, mask, z_hat, data, _objective(model, spec, options)


def tune_generators(model: models.Model, y, mask, z_hat, keys, *,
                    spec: objectives.LossSpec, options: search.Options):
  """Pivotal tuning alone: each image's tuned parameters of G around its
  ẑ (N, z_dim), as `complete` tunes them.

  Returns (tuned, trace): tuned = {layer name: parameters with a leading
  image axis N} for the layers `options.tuning.layers` selects (G's other
  parameters stay those of `model`); trace (N, tuning.steps) the loss at
  G_θ(ẑ) before each step.
  """
  _, _, z_hat, data, objective = _prepare_fill(model, y, mask, z_hat, keys,
                                               spec, options)
  return tuning.tune(model.variables, data, z_hat, keys, objective=objective,
                     options=options)


def fill_from_latents(model: models.Model, y, mask, z_hat, keys, *,
                      spec: objectives.LossSpec, options: search.Options):
  """The end of `complete` for given latents ẑ (N, z_dim), e.g. those of a
  search already run: pivotal tuning when `options.tuning.steps` > 0, then
  the fill and the blend. `complete` with the same inputs and options
  finds ẑ and then does exactly this. final_loss and loss_trace are None.
  """
  y, mask, z_hat, data, objective = _prepare_fill(model, y, mask, z_hat,
                                                  keys, spec, options)
  return tuning.tune_and_fill(model.variables, data, keys, y, mask, z_hat,
                              None, None, objective=objective,
                              options=options)


def complete_conditional(
    model: models.Model, y1, y2, mask, keys, *,
    spec: objectives.ConditionalSpec = objectives.ConditionalSpec(),
    options: search.Options = search.Options(), on_steps=None,
    every: int = 1):
  """Conditional face completion (eq. 10-15): a face like y1 whose parts
  where M = 0 (eyes, mouth, ...) follow the reference y2.

  model: the `models.Model` handle; its critic term follows its arch.
  y1, y2: (N, R, R, 3) in [-1, 1] (y2 may be one row shared by all);
  mask (N or 1, R, R, 1), 1 = keep from y1. y1 is read only where M > 0
  and y2 only where M < 1: there they must be finite, elsewhere anything.
  on_steps, every: as for `complete`.
  Returns the same dict as `complete`; `blended` Poisson-blends G(ẑ) into y1
  outside the kept region.
  """
  check_model(model)
  search.check_options(options)
  _check_watch(on_steps, every)
  _check_critics(model, bool(spec.beta), 'conditional completion (β > 0)')
  checked = checked_inputs(model, y1, mask, y2, names=('y1', 'mask', 'y2'))
  check_keys(keys, len(checked[0]))
  y1, mask, y2 = (_on_device(*pair) for pair in zip((y1, mask, y2), checked))
  return _run(model, (y1, y2, mask), keys, y1, mask, spec, options,
              on_steps, every)


def with_dtype(nets, dtype: str | None):
  """`nets` with their activations in `dtype` (`Options.dtype`); as they
  are when None. Parameters are float32 either way, so the same variables
  serve both."""
  dtype = search.checked_dtype(dtype)
  if dtype is None:
    return nets
  return type(nets)({name: net.clone(dtype=dtype)
                     for name, net in nets.items()})


@functools.partial(jax.jit, static_argnames='nets')
def _generate(nets, variables, z):
  return nets['generator'].apply(variables['generator'], z)


def generate(model: models.Model, z):
  """G(z) (N, H, W, 3) in inference mode for latents z (N, z_dim), e.g. the
  search's current latents (`complete`'s on_steps) for a preview."""
  check_model(model)
  z = _on_device(z, check_latents('z', z, None, model.z_dim))
  return _generate(model.nets, {'generator': model.variables['generator']},
                   z)


def image_keys(seed: int, indices) -> jax.Array:
  """One key per image from (seed, the image's index in its data set), so a
  result does not depend on batch size or on which images share a batch."""
  root = jax.random.key(seed)
  return jax.vmap(lambda i: jax.random.fold_in(root, i))(jnp.asarray(indices))
