"""Pivotal tuning (Roich et al. 2021): G's parameters fitted to each image
around its ẑ, after the search (`search.Tuning`, `Options.tuning`).

Each image gets its own copy of the tuned parameters (all of G's, or the
late layers'), and the tuning step is vmapped over the images as the
search's step is, so an image's tuned G depends on its own (y, M, key, ẑ)
only. The loss is the search's objective at G_θ(ẑ) plus a locality term
that keeps G_θ close to G at other latents; the hole is then filled from
G_θ(ẑ) (`search.fill`).
"""
import dataclasses
import functools

import jax
import jax.numpy as jnp
import optax

from jaxinpaint import models
from jaxinpaint.completion import objectives, search

# Checked with the other options where they are defined (`search`).
TUNE_LAYERS = search.TUNE_LAYERS
check_tuning = search.check_tuning


def tuned_layer_names(generator_params, options: search.Options) -> tuple:
  """The top-level names of G's parameters that tuning changes."""
  if options.tuning.layers == 'late':
    return models.generator_late_layers(generator_params)
  return tuple(generator_params)


def tuning_bytes_per_image(model: models.Model,
                           options: search.Options) -> dict:
  """What tuning keeps per image, from G's parameter tree: the tuned
  parameters' count and the bytes of their float32 copy, Adam's two
  moments and their gradient (4 copies). Activations come on top
  (`jax.stages.Compiled.memory_analysis` measures a whole step)."""
  params = model.variables['generator']['params']
  count = sum(models.count_params(params[name])
              for name in tuned_layer_names(params, options))
  return dict(tuned_params=count, bytes_per_image=16 * count)


def _with_generator_params(variables, tuned):
  """`variables` with G's parameters of the names in `tuned` replaced."""
  generator = variables['generator']
  return dict(variables, generator=dict(
      generator, params={**generator['params'], **tuned}))


def _tune_adam(options: search.Options):
  return optax.adam(options.tuning.lr, b1=options.b1, b2=options.b2)


# Folded into an image's key for tuning's draws: the search draws from the
# key itself, so tuning leaves the search's draws (and ẑ) as they were.
_TUNE_STREAM = 1


def _tune_key(key):
  return jax.random.fold_in(key, _TUNE_STREAM)


def locality_latents(key, z_hat, count: int, arch: str, near_scale: float):
  """`count` latents (count, z_dim) for the locality term: the first half
  near ẑ (ẑ + near_scale·ε, ε ~ N(0, I)), the rest from G's training
  distribution (`models.sample_latent`), far from ẑ."""
  near_key, far_key = jax.random.split(key)
  n_near = count // 2
  near = z_hat + near_scale * jax.random.normal(near_key,
                                                (n_near,) + z_hat.shape)
  far = models.sample_latent(far_key, (count - n_near,) + z_hat.shape, arch)
  return jnp.concatenate([near, far])


def _tuning_loss(tuned, variables, z_hat, key, image_data, *, objective,
                 options: search.Options):
  """One image's tuning loss at its parameters `tuned`: (loss, the
  objective at G_θ(ẑ) alone)."""
  tuning = options.tuning
  tuned_variables = _with_generator_params(variables, tuned)
  loss, _ = objective(tuned_variables, z_hat, *image_data)
  total = loss
  if tuning.locality and tuning.locality_samples:
    z = locality_latents(key, z_hat, tuning.locality_samples,
                         objective.arch, tuning.near_scale)
    generator = objective.nets['generator']
    original = jax.lax.stop_gradient(
        generator.apply(variables['generator'], z))
    moved = generator.apply(tuned_variables['generator'], z)
    # ‖G_θ(z) − G(z)‖² per latent, averaged over the latents.
    total += tuning.locality * jnp.sum(
        jnp.square(moved - original)) / z.shape[0]
  return total, loss


def _tune_init(variables, z_hat, *, options: search.Options):
  """Each image's copy of the tuned parameters and its Adam state,
  (N, ...)."""
  params = variables['generator']['params']
  tuned = {name: params[name] for name in tuned_layer_names(params, options)}
  copies = jax.tree.map(
      lambda p: jnp.broadcast_to(p, (z_hat.shape[0],) + p.shape), tuned)
  return copies, jax.vmap(_tune_adam(options).init)(copies)


def _tune_steps(variables, data, z_hat, keys, state, first_step, *,
                objective, options: search.Options, length: int):
  """`length` tuning steps of every image from step `first_step`, vmapped
  over the images (their parameters, ẑ, data and keys): (state, the
  objective at G_θ(ẑ) before each step (length, N))."""
  opt = _tune_adam(options)

  def per_image(tuned, opt_state, z, key, image_data, step):
    loss_fn = functools.partial(
        _tuning_loss, variables=variables, z_hat=z,
        key=jax.random.fold_in(_tune_key(key), step), image_data=image_data,
        objective=objective, options=options)
    (_, loss), grad = jax.value_and_grad(loss_fn, has_aux=True)(tuned)
    updates, opt_state = opt.update(grad, opt_state, tuned)
    return optax.apply_updates(tuned, updates), opt_state, loss

  def step(carry, _):
    (tuned, opt_state), t = carry
    tuned, opt_state, loss = jax.vmap(per_image, in_axes=(0, 0, 0, 0, 0, None))(
        tuned, opt_state, z_hat, keys, data, t)
    return ((tuned, opt_state), t + 1), loss

  carry = (state, jnp.asarray(first_step, jnp.int32))
  if length == 1:  # no loop: see `search.search_latents`
    (state, _), loss = step(carry, None)
    return state, loss[None]
  (state, _), losses = jax.lax.scan(step, carry, None, length=length)
  return state, losses


def _tuned_finish(variables, tuned, z_hat, final, trace, y, mask, *,
                  objective, options: search.Options):
  """G_θ(ẑ) of each image's own parameters, then `search.fill`."""
  nets = objective.nets
  generated = jax.vmap(lambda p, z: objectives.render(
      nets, _with_generator_params(variables, p), z))(tuned, z_hat)
  return search.fill(generated, z_hat, final, trace, y, mask, options)


_TUNE_STATIC = ('objective', 'options')
_tune_init_jit = jax.jit(_tune_init, static_argnames=('options',))
_tune_steps_jit = jax.jit(_tune_steps,
                          static_argnames=_TUNE_STATIC + ('length',))
_tuned_finish_jit = jax.jit(_tuned_finish, static_argnames=_TUNE_STATIC)


def tune(variables, data, z_hat, keys, *, objective,
         options: search.Options):
  """Runs the tuning steps of every image: (per-image tuned parameters,
  trace (N, tuning.steps)). A host loop on CPU, one scan elsewhere, as the
  search (`search.search_latents`)."""
  steps = options.tuning.steps
  # The step programs never read the step counts: one compile serves all.
  options = dataclasses.replace(
      options, steps=0, tuning=dataclasses.replace(options.tuning, steps=0))
  state = _tune_init_jit(variables, z_hat, options=options)
  static = dict(objective=objective, options=options)
  if not search.uses_host_loop(options):
    state, trace = _tune_steps_jit(variables, data, z_hat, keys, state, 0,
                                   length=steps, **static)
  else:
    losses = []
    for t in range(steps):
      state, loss = _tune_steps_jit(variables, data, z_hat, keys, state, t,
                                    length=1, **static)
      losses.append(loss)
    trace = (jnp.concatenate(losses) if losses else
             jnp.zeros((0, z_hat.shape[0]), jnp.float32))
  return state[0], trace.T


def tune_and_fill(variables, data, keys, known, mask, z_hat, final, trace,
                  *, objective, options: search.Options):
  """Tunes each image's G around its ẑ and fills from G_θ(ẑ): the dict
  `api.complete` returns."""
  tuned, tune_trace = tune(variables, data, z_hat, keys,
                           objective=objective, options=options)
  out = _tuned_finish_jit(variables, tuned, z_hat, final, trace, known, mask,
                          objective=objective,
                          options=search.static_options(options))
  return dict(out, tune_trace=tune_trace)
