"""The latent search (paper 3.2): its options, constraint set and programs.

For each damaged image y with mask M (1 = known), Adam searches the
generator's latent space for ẑ whose image agrees with y's known pixels and
their gradients and looks real to the critics (an `objectives.Objective`);
the hole is then filled with G(ẑ) and Poisson-blended into y (`fill`).

The per-(image, restart) step — loss, gradient, Adam update, projection
onto the latent constraint set (by default the paper's clip to [-1, 1]:
`Options.z_constraint`) — is written for one latent and `jax.vmap`ped over
restarts and images, and the whole optimization is one `lax.scan` inside
`jit` (on CPU, by default, a Python loop over that compiled step instead:
`Options.loop`). So an image's result depends on its own (y, M, key) only,
never on the rest of its batch, and G runs in inference mode (BatchNorm
running statistics) for the same reason.

The public entry points (`complete`, ...) are in `api.py`; pivotal tuning,
which may follow the search (`Options.tuning`), is in `tuning.py`.
`variables` travel as jit arguments, the objective and the options as
static ones.
"""
import dataclasses
import functools
import math
import numbers

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxinpaint import errors, models
from jaxinpaint.completion import objectives
from jaxinpaint.ops import poisson


@dataclasses.dataclass(frozen=True)
class Tuning:
  """Pivotal tuning (Roich et al. 2021) after the search (`tuning.py`).

  Each image's own copy of G's parameters takes `steps` Adam steps (lr
  `lr`, Adam's b1 and b2 those of `Options`) so that G_θ(ẑ) fits the
  image's loss (the search's objective: contextual terms with the same W
  and the critic prior), plus `locality` · ‖G_θ(z) − G(z)‖² over
  `locality_samples` latents z per step (half near ẑ, N(ẑ, near_scale²),
  half drawn from G's training distribution), which keeps G_θ close to G
  away from ẑ. The hole is then filled from G_θ(ẑ). `layers`: 'all' of G's
  parameters or 'late' (the last two up-sampling stages and the output
  layer: `models.generator_late_layers`). 0 steps (the default, set by
  docs/results.md's measurement: a small gain for ~4 search steps' cost a
  step) = no tuning, every result bit for bit as without these fields.
  lr 1e-4, the measured one: at 1e-3 two steps already spoil the hole.
  """
  steps: int = 0
  lr: float = 1e-4
  layers: str = 'all'
  locality: float = 1.0
  locality_samples: int = 2
  near_scale: float = 0.5


@dataclasses.dataclass(frozen=True)
class Options:
  """Optimizer settings (paper, section 4)."""
  steps: int = 1000
  restarts: int = 1  # K random initializations per image; the best is kept
  learning_rate: float = 0.03
  b1: float = 0.9
  b2: float = 0.999
  window: int = 7  # of the weights W (eq. 7)
  blend: bool = True  # Poisson blending (eq. 9) of G(ẑ) into y
  cg_tol: float = 1e-5
  cg_max_iters: int = 2000
  # How the steps run: 'scan' = all in one compiled lax.scan, 'host' = a
  # Python loop over one compiled step (same numbers), 'auto' = 'host' on
  # CPU, where it is several times faster (see `search_latents`), else
  # 'scan'.
  loop: str = 'auto'
  # The activations' dtype of G and the critics during the search, e.g.
  # 'bfloat16' (faster on GPUs); None keeps the model's own `dtype`. Only the
  # networks change: their parameters, z, Adam's state and the loss stay
  # float32 (G's image and the critics' scores are returned in float32).
  dtype: str | None = None
  # The set z is kept in (see `constrain_latent`): 'box' clips every
  # coordinate to [-z_bound, z_bound] after each Adam step (the paper, with
  # z_bound = 1); 'sphere' projects z onto the sphere of radius sqrt(z_dim),
  # where a Gaussian latent's mass concentrates.
  z_constraint: str = 'box'
  z_bound: float = 1.0
  # Pivotal tuning after the search (`Tuning`; off by default). The
  # search's own programs take the options without it (`static_options`),
  # so no tuning setting changes which programs the search compiles.
  tuning: Tuning = Tuning()


Z_CONSTRAINTS = ('box', 'sphere')
TUNE_LAYERS = ('all', 'late')
LOOPS = ('auto', 'scan', 'host')


def _refuse(field: str, value, expected: str):
  raise errors.ArgumentError('options', f'{field} {value!r}: expected '
                             f'{expected}')


def _is_int(value) -> bool:
  return (isinstance(value, numbers.Integral)
          and not isinstance(value, bool))


def _is_number(value) -> bool:
  return (isinstance(value, numbers.Real) and not isinstance(value, bool)
          and math.isfinite(value))


def _check_ints(owner: str, fields: dict) -> None:
  """fields: name -> (value, least allowed)."""
  for name, (value, least) in fields.items():
    if not _is_int(value) or value < least:
      _refuse(f'{owner}.{name}', value, f'an int >= {least}')


def check_constraint(options: Options) -> None:
  """errors.ArgumentError ('options', one line) for an unknown
  `z_constraint` or a bad bound."""
  if options.z_constraint not in Z_CONSTRAINTS:
    _refuse('Options.z_constraint', options.z_constraint,
            f'one of {Z_CONSTRAINTS}')
  if options.z_constraint == 'box' and not (_is_number(options.z_bound)
                                            and options.z_bound > 0):
    _refuse('Options.z_bound', options.z_bound, 'a finite number > 0')


def check_tuning(options: Options) -> None:
  """errors.ArgumentError ('options', one line) for tuning options out of
  range."""
  tuning = options.tuning
  if not isinstance(tuning, Tuning):
    _refuse('Options.tuning', tuning, 'a Tuning')
  _check_ints('Tuning', dict(steps=(tuning.steps, 0),
                             locality_samples=(tuning.locality_samples, 0)))
  if tuning.layers not in TUNE_LAYERS:
    _refuse('Tuning.layers', tuning.layers, f'one of {TUNE_LAYERS}')
  if not (_is_number(tuning.lr) and tuning.lr > 0):
    _refuse('Tuning.lr', tuning.lr, 'a finite number > 0')
  for name in ('locality', 'near_scale'):
    value = getattr(tuning, name)
    if not (_is_number(value) and value >= 0):
      _refuse(f'Tuning.{name}', value, 'a finite number >= 0')


def checked_dtype(dtype):
  """`Options.dtype` as a jnp dtype (None stays None); errors.ArgumentError
  ('options') unless it names a float dtype."""
  if dtype is None:
    return None
  try:
    dtype = jnp.dtype(dtype)
  except TypeError:
    _refuse('Options.dtype', dtype,
            "None or a float dtype such as 'float32' or 'bfloat16'")
  if not jnp.issubdtype(dtype, jnp.floating):
    _refuse('Options.dtype', str(dtype),
            "a float dtype such as 'float32' or 'bfloat16'")
  return dtype


def check_options(options: Options) -> None:
  """errors.ArgumentError ('options', one line naming the field) unless
  every field of `options` is in range; every public entry point calls it
  before any work (on the host: nothing is compiled).

  steps may be 0: ẑ is then the best start (tests, latent recovery).
  """
  if not isinstance(options, Options):
    raise errors.ArgumentError('options', 'expected a completion.Options, '
                               f'got {type(options).__name__}')
  _check_ints('Options', dict(steps=(options.steps, 0),
                              restarts=(options.restarts, 1),
                              window=(options.window, 1),
                              cg_max_iters=(options.cg_max_iters, 1)))
  if options.window % 2 == 0:
    _refuse('Options.window', options.window, 'an odd int >= 1 (a window '
            'centred on its pixel)')
  if not (_is_number(options.learning_rate) and options.learning_rate > 0):
    _refuse('Options.learning_rate', options.learning_rate,
            'a finite number > 0')
  for name in ('b1', 'b2'):
    value = getattr(options, name)
    if not (_is_number(value) and 0 <= value < 1):
      _refuse(f'Options.{name}', value, 'a number in [0, 1)')
  if not (_is_number(options.cg_tol) and options.cg_tol > 0):
    _refuse('Options.cg_tol', options.cg_tol, 'a finite number > 0')
  if not isinstance(options.blend, (bool, np.bool_)):
    _refuse('Options.blend', options.blend, 'True or False')
  if options.loop not in LOOPS:
    _refuse('Options.loop', options.loop, f'one of {LOOPS}')
  checked_dtype(options.dtype)
  check_constraint(options)
  check_tuning(options)


def constrain_latent(z, options: Options):
  """The projection of z (..., z_dim) onto the search's constraint set.

  'box': clip to [-z_bound, z_bound]. 'sphere': z · sqrt(z_dim) / |z|, the
  nearest point of the sphere of radius sqrt(z_dim) (z = 0, which has no
  nearest point, stays 0).
  """
  if options.z_constraint == 'sphere':
    norm = jnp.linalg.norm(z, axis=-1, keepdims=True)
    radius = jnp.sqrt(jnp.asarray(z.shape[-1], z.dtype))
    return jnp.where(norm > 0, z * (radius / jnp.where(norm > 0, norm, 1.0)),
                     z)
  return jnp.clip(z, -options.z_bound, options.z_bound)


def constrain_start(z0, options: Options):
  """The starting latents as the search takes them.

  The paper draws z0 from the training distribution and clips only after
  each step, so with 'box' z0 is kept as drawn (the defaults' results are
  the paper's protocol). On the sphere it is projected: a Gaussian z0 lies
  near the sphere but not on it, and the search should start in its set.
  """
  if options.z_constraint == 'sphere':
    return constrain_latent(z0, options)
  return z0


def static_options(options: Options) -> Options:
  """`options` as the search's compiled step programs take them: without
  the step count (one compile serves every count) and without the tuning
  settings, which they never read."""
  return dataclasses.replace(options, steps=0, tuning=None)


def _adam(options: Options):
  return optax.adam(options.learning_rate, b1=options.b1, b2=options.b2)


def _adam_project_step(loss_fn, opt, options, z, opt_state):
  """One Adam step on one latent, then the projection onto the constraint
  set (the paper's clip to [-1, 1] by default, 3.2).

  Returns (z, opt_state, the loss at the z that was differentiated).
  """
  (loss, _), grad = jax.value_and_grad(loss_fn, has_aux=True)(z)
  updates, opt_state = opt.update(grad, opt_state, z)
  return (constrain_latent(optax.apply_updates(z, updates), options),
          opt_state, loss)


def _optimize_one(loss_fn, z0, options: Options):
  """Adam on one latent, projected onto the constraint set after every step.

  Returns (final z, final loss, loss trace (steps,)). The trace entry t is
  the loss at the z that step t differentiated. A reference for the batched
  search below, which runs the same step on every (image, restart).
  """
  opt = _adam(options)

  def step(carry, _):
    z, opt_state, loss = _adam_project_step(loss_fn, opt, options, *carry)
    return (z, opt_state), loss

  (z, _), trace = jax.lax.scan(step, (z0, opt.init(z0)), None,
                               length=options.steps)
  final_loss, _ = loss_fn(z)
  return z, final_loss, trace


def initial_latents(key, restarts, z_dim, arch, options: Options = Options()):
  """K starting points: N(0, 1) for the WGAN (paper), U(-1, 1) for DCGAN,
  as the constraint takes them (`constrain_start`)."""
  return constrain_start(models.sample_latent(key, (restarts, z_dim), arch),
                         options)


def _init_search(keys, *, options: Options, z_dim: int, arch: str):
  """Each image's K starting latents and their Adam states, (N, K, ...)."""
  opt = _adam(options)

  def per_image(key):
    z0 = initial_latents(key, options.restarts, z_dim, arch, options)
    return z0, jax.vmap(opt.init)(z0)

  return jax.vmap(per_image)(keys)


def _search_steps(variables, data, state, *, objective, options: Options,
                  length: int):
  """`length` Adam steps on every (image, restart): one `lax.scan` of a
  step vmapped over restarts and images. Returns (state, losses
  (length, N, K))."""
  opt = _adam(options)

  def per_image(z, opt_state, image_data):
    loss_fn = lambda z: objective(variables, z, *image_data)
    return jax.vmap(lambda z, s: _adam_project_step(loss_fn, opt, options, z,
                                                    s))(z, opt_state)

  def step(state, _):
    z, opt_state, loss = jax.vmap(per_image)(*state, data)
    return (z, opt_state), loss

  if length == 1:  # no loop at all: see `search_latents` for why it matters
    state, loss = step(state, None)
    return state, loss[None]
  return jax.lax.scan(step, state, None, length=length)


def _select_best(variables, data, z, trace, *, objective, options):
  """Each image's restart of lowest final loss: (ẑ (N, z_dim), final losses
  (N, K), the kept restart's trace (N, steps)) from z (N, K, z_dim) and
  trace (steps, N, K).

  z is projected first: a no-op after any step (each step ends with it),
  it puts ẑ in the constraint set even after 0 steps.
  """
  z = constrain_latent(z, options)
  final = jax.vmap(lambda zs, image_data: jax.vmap(
      lambda z: objective(variables, z, *image_data)[0])(zs))(z, data)
  best = jnp.argmin(final, axis=1)
  rows = jnp.arange(z.shape[0])
  return z[rows, best], final, trace[:, rows, best].T


def fill(generated, z_hat, final, trace, y, mask, options: Options):
  """The overlay and the Poisson blend of `generated` into y: the dict
  `api.complete` returns (without its tune_trace)."""
  overlay = mask * objectives.known_only(y, mask) + (1.0 - mask) * generated
  cg_iterations = None
  if options.blend:
    blended, cg_info = poisson.poisson_blend(
        y, generated, mask, tol=options.cg_tol, max_iters=options.cg_max_iters)
    cg_iterations = cg_info['iterations']
  else:
    blended = overlay
  return dict(z=z_hat, generated=generated, overlay=overlay, blended=blended,
              final_loss=final, loss_trace=trace, cg_iterations=cg_iterations)


def _select_and_finish(variables, data, z, trace, known, mask, *, objective,
                       options: Options):
  """The best restart, G(ẑ), the overlay and the blend (`fill`)."""
  z_hat, final, trace = _select_best(variables, data, z, trace,
                                     objective=objective, options=options)
  generated = jax.vmap(
      lambda z: objectives.render(objective.nets, variables, z))(z_hat)
  return fill(generated, z_hat, final, trace, known, mask, options)


_STATIC = ('objective', 'options')
_init_search_jit = jax.jit(_init_search,
                           static_argnames=('options', 'z_dim', 'arch'))
_search_steps_jit = jax.jit(_search_steps,
                            static_argnames=_STATIC + ('length',))
_select_best_jit = jax.jit(_select_best, static_argnames=_STATIC)
_select_and_finish_jit = jax.jit(_select_and_finish, static_argnames=_STATIC)


@functools.partial(jax.jit, static_argnames=_STATIC + ('z_dim',))
def _search_fused(variables, data, keys, known, mask, *, objective, options,
                  z_dim):
  """The whole search and the blend as one jitted program."""
  state = _init_search(keys, options=options, z_dim=z_dim,
                       arch=objective.arch)
  state, trace = _search_steps(variables, data, state, objective=objective,
                               options=options, length=options.steps)
  return _select_and_finish(variables, data, state[0], trace, known, mask,
                            objective=objective, options=options)


def uses_host_loop(options: Options) -> bool:
  """Whether the search runs its steps from Python (`Options.loop`)."""
  if options.loop not in LOOPS:
    _refuse('Options.loop', options.loop, f'one of {LOOPS}')
  if options.loop == 'auto':
    return jax.default_backend() == 'cpu'
  return options.loop == 'host'


def search_latents(variables, data, keys, *, objective, options, z_dim,
                   on_steps=None, every=1):
  """The search's Adam steps on every (image, restart), before a restart is
  chosen: (state, trace (steps, N, K)).

  'scan' compiles all steps into one program (accelerators: no host round
  trip per step). 'host' runs the same one-step program `steps` times from
  Python: XLA:CPU executes convolutions inside a compiled loop several
  times slower than outside one (jax#12868; bench/completion.py measures
  both), so on CPU this is the faster way to the same numbers. A caller
  that watches the search (`on_steps`, see `api.complete`) gets the host
  loop: only it comes back to Python between steps.
  """
  # The step programs never read the step counts: keyed without them, one
  # compile serves every count.
  static = dict(objective=objective, options=static_options(options))
  state = _init_search_jit(keys, options=static['options'], z_dim=z_dim,
                           arch=objective.arch)
  if on_steps is None and not uses_host_loop(options):
    return _search_steps_jit(variables, data, state, length=options.steps,
                             **static)
  losses = []
  for done in range(1, options.steps + 1):
    state, loss = _search_steps_jit(variables, data, state, length=1,
                                    **static)
    losses.append(loss)
    if on_steps is not None and (done % every == 0 or done == options.steps):
      # Reads the state only: the search goes on exactly as without it.
      on_steps(done, state[0], loss[0])
  trace = (jnp.concatenate(losses) if losses else
           jnp.zeros((0,) + state[0].shape[:2], jnp.float32))
  return state, trace


def best_latents(variables, data, keys, *, objective, options, z_dim,
                 on_steps=None, every=1):
  """The search without its fill: (ẑ (N, z_dim), final losses (N, K), the
  kept restart's trace (N, steps)), from the programs `search` runs, so ẑ
  is the one it finds."""
  state, trace = search_latents(variables, data, keys, objective=objective,
                                options=options, z_dim=z_dim,
                                on_steps=on_steps, every=every)
  return _select_best_jit(variables, data, state[0], trace,
                          objective=objective,
                          options=static_options(options))


def search(variables, data, keys, known, mask, *, objective, options,
           z_dim, on_steps=None, every=1):
  """Runs the latent search of every image in the batch and fills from
  G(ẑ); see `api.complete`. Unwatched on an accelerator, all of it is one
  program (`_search_fused`)."""
  if on_steps is None and not uses_host_loop(options):
    # The fused program runs the steps, so it keeps their count.
    return _search_fused(variables, data, keys, known, mask, z_dim=z_dim,
                         objective=objective,
                         options=dataclasses.replace(options, tuning=None))
  state, trace = search_latents(variables, data, keys, objective=objective,
                                options=options, z_dim=z_dim,
                                on_steps=on_steps, every=every)
  return _select_and_finish_jit(variables, data, state[0], trace, known, mask,
                                objective=objective,
                                options=static_options(options))
