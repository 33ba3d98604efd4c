"""Completion's entry points: `complete` (paper 3.2), `complete_conditional`
(3.3), the fill from given latents, pivotal tuning alone, `generate` and
the per-image keys.

Each checks its inputs, binds the loss to the model's networks (an
`objectives.Objective`, in `Options.dtype`) and runs the search
(`search.py`), then pivotal tuning when `Options.tuning.steps` > 0
(`tuning.py`).

Conventions: images float32 (N, H, W, C) in [-1, 1]; masks (N, H, W, 1),
1 = known; the model is a `models.Model` handle (`loading.load_model`): its
arch fixes the latent distribution and the form of the critic prior, its
z_dim the latent's size.
"""
import functools

import jax
import jax.numpy as jnp

from jaxinpaint import models
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


_window_weights_jit = jax.jit(image_ops.window_weights, static_argnums=1)


def complete(model: models.Model, y, mask, keys, *,
             spec: objectives.LossSpec, options: search.Options,
             on_steps=None, every: int = 1):
  """Fills the holes of a batch of images.

  Args:
    model: the `models.Model` handle (nets, variables, arch, z_dim); its
      arch picks the latent distribution and the Yeh prior's form.
    y: (N, H, W, C) damaged images in [-1, 1]; hole pixels are never read
      for the loss (multiplied by M) and only known pixels enter the blend.
    mask: (N, H, W, 1), 1 = known pixel, 0 = hole.
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
  """
  search.check_constraint(options)
  tuning.check_tuning(options)
  _check_watch(on_steps, every)
  _check_critics(model, bool(spec.eta), f'the {spec.prior!r} prior (η > 0)')
  y, mask = jnp.asarray(y), jnp.asarray(mask)
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


def _prepare_fill(model, y, mask, z_hat, spec, options):
  tuning.check_tuning(options)
  _check_critics(model, bool(spec.eta), f'the {spec.prior!r} prior (η > 0)')
  y, mask, z_hat = jnp.asarray(y), jnp.asarray(mask), jnp.asarray(z_hat)
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
  _, _, z_hat, data, objective = _prepare_fill(model, y, mask, z_hat, spec,
                                               options)
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
                                                  spec, options)
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
  y1, y2: (N, H, W, C) in [-1, 1]; mask (N, H, W, 1), 1 = keep from y1.
  y1 is read only where M = 1 and y2 only where M = 0.
  on_steps, every: as for `complete`.
  Returns the same dict as `complete`; `blended` Poisson-blends G(ẑ) into y1
  outside the kept region.
  """
  search.check_constraint(options)
  tuning.check_tuning(options)
  _check_watch(on_steps, every)
  _check_critics(model, bool(spec.beta), 'conditional completion (β > 0)')
  y1, y2, mask = jnp.asarray(y1), jnp.asarray(y2), jnp.asarray(mask)
  return _run(model, (y1, y2, mask), keys, y1, mask, spec, options,
              on_steps, every)


def with_dtype(nets, dtype: str | None):
  """`nets` with their activations in `dtype` (`Options.dtype`); as they
  are when None. Parameters are float32 either way, so the same variables
  serve both."""
  if dtype is None:
    return nets
  try:
    dtype = jnp.dtype(dtype)
  except TypeError:
    raise ValueError(f"Options.dtype {dtype!r}: expected None or a float "
                     "dtype such as 'float32' or 'bfloat16'") from None
  if not jnp.issubdtype(dtype, jnp.floating):
    raise ValueError(f"Options.dtype {str(dtype)!r}: expected a float dtype "
                     "such as 'float32' or 'bfloat16'")
  return type(nets)({name: net.clone(dtype=dtype)
                     for name, net in nets.items()})


@functools.partial(jax.jit, static_argnames='nets')
def _generate(nets, variables, z):
  return nets['generator'].apply(variables['generator'], z)


def generate(model: models.Model, z):
  """G(z) (N, H, W, 3) in inference mode for latents z (N, z_dim), e.g. the
  search's current latents (`complete`'s on_steps) for a preview."""
  return _generate(model.nets, {'generator': model.variables['generator']},
                   jnp.asarray(z))


def image_keys(seed: int, indices) -> jax.Array:
  """One key per image from (seed, the image's index in its data set), so a
  result does not depend on batch size or on which images share a batch."""
  root = jax.random.key(seed)
  return jax.vmap(lambda i: jax.random.fold_in(root, i))(jnp.asarray(indices))
