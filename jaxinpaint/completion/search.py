"""Semantic completion by latent search (paper 3.2-3.3, eq. 5-8 and 10-15).

For each damaged image y with mask M (1 = known), Adam searches the
generator's latent space for ẑ whose image agrees with y's known pixels and
their gradients and looks real to the critics; the hole is then filled with
G(ẑ) and Poisson-blended into y.

The per-(image, restart) step — loss, gradient, Adam update, projection
onto the latent constraint set (by default the paper's clip to [-1, 1]:
`Options.z_constraint`) — is written for one latent and `jax.vmap`ped over
restarts and images, and the whole optimization is one `lax.scan` inside
`jit` (on CPU, by default, a Python loop over that compiled step instead:
`Options.loop`). So an image's result depends on its own (y, M, key) only, never on the rest of its
batch, and G runs in inference mode (BatchNorm running statistics) for the
same reason.

Optionally (`Options.tune_steps`), pivotal tuning follows: each image's
own copy of G's parameters is tuned around its ẑ, vmapped over the batch
in the same way, and the hole is filled from the tuned G_θ(ẑ).

Conventions: images float32 (N, H, W, C) in [-1, 1]; masks (N, H, W, 1),
1 = known; the model is a `models.Model` handle (`loading.load_model`): its
arch fixes the latent distribution and the form of the critic prior, its
z_dim the latent's size. Inside, `variables` =
{'generator': {'params', 'batch_stats'}, 'critic': {'params', ...},
'patch_critic': {'params'}} travel as jit arguments and the nets as static
ones.
"""
import dataclasses
import functools

import jax
import jax.numpy as jnp
import optax

from jaxinpaint import models
from jaxinpaint.ops import image_ops, poisson


@dataclasses.dataclass(frozen=True)
class LossSpec:
  """Weights of one completion loss.

  loss = α·Σ W|M(G(z) − y)| + β·Σ W|M(∇G(z) − ∇y)| + η·prior(G(z)).
  prior 'critics' is the paper's −D(G(z)) − Dp(G(z)) (eq. 8; −D alone for
  a model without Dp); prior 'yeh' is Yeh et al.'s log(1 − σ(D(G(z)))) for
  a DCGAN discriminator and −D(G(z)) (global critic only) for a WGAN.
  """
  alpha: float
  beta: float
  eta: float
  prior: str = 'critics'


# Defaults. The paper's Tables 1-2 try α, β ∈ {(0.1, 0.9), (0.5, 0.5)} and
# η ∈ {1.0, 0.5}; (0.1, 0.9, 0.5) has the lowest MSE in three of the four
# table columns (CelebA three squares, SVHN central and three squares) and
# is the default. Yeh et al. weigh the contextual L1 by 1 and the prior by
# λ = 0.003; the paper's ablation adds the gradient term with (0.1, 0.9).
LOSSES = {
    'paper': LossSpec(alpha=0.1, beta=0.9, eta=0.5, prior='critics'),
    'yeh': LossSpec(alpha=1.0, beta=0.0, eta=0.003, prior='yeh'),
    'yeh_gradient': LossSpec(alpha=0.1, beta=0.9, eta=0.003, prior='yeh'),
}


def get_loss(name: str) -> LossSpec:
  if name not in LOSSES:
    raise ValueError(f'loss {name!r}: expected one of {sorted(LOSSES)}')
  return LOSSES[name]


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
  # CPU, where it is several times faster (see `_search`), else 'scan'.
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
  # Pivotal tuning (Roich et al. 2021) after the search: each image's own
  # copy of G's parameters takes `tune_steps` Adam steps (lr `tune_lr`) so
  # that G_θ(ẑ) fits the image's loss (the search's objective: contextual
  # terms with the same W and the critic prior), plus `tune_locality` ·
  # ‖G_θ(z) − G(z)‖² over `tune_locality_samples` latents z per step (half
  # near ẑ, N(ẑ, tune_near_scale²), half drawn from G's training
  # distribution), which keeps G_θ close to G away from ẑ. The hole is then
  # filled from G_θ(ẑ). `tune_layers`: 'all' of G's parameters or 'late'
  # (the last two up-sampling stages and the output layer:
  # `models.generator_late_layers`). 0 steps (the default, set by
  # docs/results.md's measurement: a small gain for ~4 search steps' cost a
  # step) = no tuning, every result bit for bit as without these fields.
  # lr 1e-4, the measured one: at 1e-3 two steps already spoil the hole.
  tune_steps: int = 0
  tune_lr: float = 1e-4
  tune_layers: str = 'all'
  tune_locality: float = 1.0
  tune_locality_samples: int = 2
  tune_near_scale: float = 0.5


Z_CONSTRAINTS = ('box', 'sphere')


def check_constraint(options: Options) -> None:
  """ValueError (one line) for an unknown `z_constraint` or a bad bound."""
  if options.z_constraint not in Z_CONSTRAINTS:
    raise ValueError(f'Options.z_constraint {options.z_constraint!r}: '
                     f'expected one of {Z_CONSTRAINTS}')
  if options.z_constraint == 'box' and not options.z_bound > 0:
    raise ValueError(f'Options.z_bound {options.z_bound!r}: expected a '
                     'positive number')


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


def _render(nets, variables, z):
  """G(z) for one latent z (z_dim,) → (H, W, 3), inference mode."""
  return nets['generator'].apply(variables['generator'], z[None])[0]


def global_critic_prior(nets, variables, image, arch: str):
  """−D(G(z)) for a WGAN critic; log(1 − σ(D(G(z)))) for a DCGAN
  discriminator, whose output is a logit (Yeh et al.'s prior)."""
  score = nets['critic'].apply(variables['critic'], image[None])[0]
  if arch == 'dcgan':  # log(1 − σ(logit)) = −softplus(logit)
    return -jax.nn.softplus(score)
  return -score


def _prior(nets, variables, image, prior: str, arch: str):
  if prior == 'critics':
    return -sum(nets[n].apply(variables[n], image[None])[0]
                for n in ('critic', 'patch_critic') if n in nets)
  if prior == 'yeh':
    return global_critic_prior(nets, variables, image, arch)
  raise ValueError(f'unknown prior {prior!r}')


def _check_critics(model, needs_critic: bool, what: str) -> None:
  """ValueError (one line) when `what` needs the global critic and the
  model has none (e.g. a generator exported alone)."""
  if needs_critic and 'critic' not in model.nets:
    raise ValueError(f'{what} needs the model\'s global critic D, but the '
                     f'model has only {sorted(model.nets)}')


def weighted_l1(weights, a, b):
  return jnp.sum(weights * jnp.abs(a - b))


def _known_only(image, mask):
  """`image` with its pixels of mask 0 set to 0.

  Multiplying by M alone is not enough to ignore them: 0 · NaN = NaN, and a
  damaged image may hold anything (NaN included) in its hole. Pixels with
  M > 0 are untouched, so M · result = M · image whenever the latter is
  finite.
  """
  return jnp.where(mask > 0, image, jnp.zeros_like(image))


def inpainting_loss(z, y, mask, weights, nets, variables, spec: LossSpec,
                    arch: str):
  """Eq. 5-8 for one latent and one image: (loss, G(z)).

  y (H, W, C) in [-1, 1], mask (H, W, 1), weights = W of eq. 7 (H, W, 1).
  The gradients of G(z) and y use the same mask, so they are comparable.
  y's hole pixels are never read: they may hold anything, NaN included.
  """
  image = _render(nets, variables, z)
  y = _known_only(y, mask)
  loss = spec.alpha * weighted_l1(weights, mask * image, mask * y)
  if spec.beta:
    g_image = image_ops.masked_gradients(image, mask)
    g_y = image_ops.masked_gradients(y, mask)
    loss += spec.beta * sum(weighted_l1(weights, mask * a, mask * b)
                            for a, b in zip(g_image, g_y))
  if spec.eta:
    loss += spec.eta * _prior(nets, variables, image, spec.prior, arch)
  return loss, image


@dataclasses.dataclass(frozen=True)
class ConditionalSpec:
  """Weights of eq. 10-12: α1 values and α2 gradients of y1 where M = 1,
  α3 gradients of the reference y2 where M = 0, β·(−D(G(z)))."""
  alpha1: float = 0.1
  alpha2: float = 0.9
  alpha3: float = 0.9
  beta: float = 0.5


def conditional_loss(z, y1, y2, mask, nets, variables, spec: ConditionalSpec,
                     window: int, arch: str):
  """Eq. 10-15 for one latent: keep y1 where M = 1, y2's structure elsewhere.

  Both contextual terms are those of section 3.2 on complementary regions,
  so their gradients follow its masked rule with their own mask: M for the
  y1 terms (eq. 11) and 1 − M for the y2 term (eq. 12), applied alike to
  G(z) and to the reference. Hence y1 is read only where M = 1 and y2 only
  where M = 0, and the differences at a region's edge are one-sided instead
  of reaching into the other image's region. The critic term is that of
  the model's arch (`global_critic_prior`): −D for a WGAN critic, Yeh et
  al.'s log(1 − σ(D)) for a DCGAN discriminator.
  """
  image = _render(nets, variables, z)
  keep, swap = mask, 1.0 - mask
  y1 = _known_only(y1, keep)
  y2 = _known_only(y2, swap)
  w1 = image_ops.window_weights(mask, window)
  w2 = image_ops.complement_window_weights(mask, window)
  loss = spec.alpha1 * weighted_l1(w1, keep * image, keep * y1)
  for g, g1 in zip(image_ops.masked_gradients(image, keep),
                   image_ops.masked_gradients(y1, keep)):
    loss += spec.alpha2 * weighted_l1(w1, keep * g, keep * g1)
  for g, g2 in zip(image_ops.masked_gradients(image, swap),
                   image_ops.masked_gradients(y2, swap)):
    loss += spec.alpha3 * weighted_l1(w2, swap * g, swap * g2)
  if spec.beta:
    loss += spec.beta * global_critic_prior(nets, variables, image, arch)
  return loss, image


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


@dataclasses.dataclass(frozen=True)
class _Objective:
  """The loss of one latent for one image, `(variables, z, *image_data)` →
  (loss, G(z)). Hashable, so the jitted search takes it as a static arg.

  image_data: (y, mask, weights) for a `LossSpec`, (y1, y2, mask) for a
  `ConditionalSpec`.
  """
  nets: object
  spec: object
  arch: str
  window: int

  def __call__(self, variables, z, *data):
    if isinstance(self.spec, ConditionalSpec):
      return conditional_loss(z, *data, self.nets, variables, self.spec,
                              self.window, self.arch)
    return inpainting_loss(z, *data, self.nets, variables, self.spec,
                           self.arch)


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

  if length == 1:  # no loop at all: see `_search` for why that matters
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


def _select_and_finish(variables, data, z, trace, known, mask, *, objective,
                       options: Options):
  z_hat, final, trace = _select_best(variables, data, z, trace,
                                     objective=objective, options=options)
  return _finish(objective.nets, variables, z_hat, final, trace, known, mask,
                 options)


_STATIC = ('objective', 'options')
_init_search_jit = jax.jit(_init_search,
                           static_argnames=('options', 'z_dim', 'arch'))
_search_steps_jit = jax.jit(_search_steps,
                            static_argnames=_STATIC + ('length',))
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
  if options.loop not in ('auto', 'scan', 'host'):
    raise ValueError(f"Options.loop {options.loop!r}: expected 'auto', "
                     "'scan' or 'host'")
  if options.loop == 'auto':
    return jax.default_backend() == 'cpu'
  return options.loop == 'host'


def _check_watch(on_steps, every):
  if on_steps is not None and not callable(on_steps):
    raise ValueError(f'on_steps must be callable or None, got {on_steps!r}')
  if isinstance(every, bool) or not isinstance(every, int) or every < 1:
    raise ValueError(f'every must be an int >= 1, got {every!r}')


def _search_latents(variables, data, keys, *, objective, options, z_dim,
                    on_steps=None, every=1):
  """The search's Adam steps on every (image, restart), before a restart is
  chosen: (state, trace (steps, N, K)).

  'scan' compiles all steps into one program (accelerators: no host round
  trip per step). 'host' runs the same one-step program `steps` times from
  Python: XLA:CPU executes convolutions inside a compiled loop several
  times slower than outside one (jax#12868; bench/completion.py measures
  both), so on CPU this is the faster way to the same numbers. A caller
  that watches the search (`on_steps`) gets the host loop: only it comes
  back to Python between steps.
  """
  # The step programs never read the step counts: keyed without them, one
  # compile serves every count.
  static = dict(objective=objective, options=_search_options(options))
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


def _search(variables, data, keys, known, mask, *, objective, options,
            z_dim, on_steps=None, every=1):
  """Runs the latent search of every image in the batch and fills from
  G(ẑ); see `complete`. Unwatched on an accelerator, all of it is one
  program (`_search_fused`)."""
  if on_steps is None and not uses_host_loop(options):
    return _search_fused(variables, data, keys, known, mask, z_dim=z_dim,
                         objective=objective, options=options)
  state, trace = _search_latents(variables, data, keys, objective=objective,
                                 options=options, z_dim=z_dim,
                                 on_steps=on_steps, every=every)
  return _select_and_finish_jit(variables, data, state[0], trace, known, mask,
                                objective=objective,
                                options=_search_options(options))


# ---------------------------------------------------------------------------
# Pivotal tuning (Roich et al. 2021): G's parameters fitted to each image
# around its ẑ, after the search.


TUNE_LAYERS = ('all', 'late')


def check_tuning(options: Options) -> None:
  """ValueError (one line) for tuning options out of range."""
  if options.tune_steps < 0:
    raise ValueError(f'Options.tune_steps {options.tune_steps!r}: expected 0 '
                     'or more')
  if options.tune_layers not in TUNE_LAYERS:
    raise ValueError(f'Options.tune_layers {options.tune_layers!r}: expected '
                     f'one of {TUNE_LAYERS}')
  if not options.tune_lr > 0:
    raise ValueError(f'Options.tune_lr {options.tune_lr!r}: expected a '
                     'positive number')
  if not options.tune_locality >= 0:
    raise ValueError(f'Options.tune_locality {options.tune_locality!r}: '
                     'expected 0 or more')
  if options.tune_locality_samples < 0:
    raise ValueError('Options.tune_locality_samples '
                     f'{options.tune_locality_samples!r}: expected 0 or more')


def tuned_layer_names(generator_params, options: Options) -> tuple:
  """The top-level names of G's parameters that tuning changes."""
  if options.tune_layers == 'late':
    return models.generator_late_layers(generator_params)
  return tuple(generator_params)


def tuning_bytes_per_image(model: models.Model, options: Options) -> dict:
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


def _tune_adam(options: Options):
  return optax.adam(options.tune_lr, b1=options.b1, b2=options.b2)


# Folded into an image's key for tuning's draws: the search draws from the
# key itself, so tuning leaves the search's draws (and ẑ) as they were.
_TUNE_STREAM = 1


def _tune_key(key):
  return jax.random.fold_in(key, _TUNE_STREAM)


def _search_options(options: Options) -> Options:
  """`options` as the compiled step programs take them: without the step
  counts (one compile serves every count) and, for the search's own
  programs, without the tuning settings, which they never read."""
  return dataclasses.replace(
      options, steps=0, tune_steps=0, tune_lr=Options.tune_lr,
      tune_layers=Options.tune_layers, tune_locality=Options.tune_locality,
      tune_locality_samples=Options.tune_locality_samples,
      tune_near_scale=Options.tune_near_scale)


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
                 options: Options):
  """One image's tuning loss at its parameters `tuned`: (loss, the
  objective at G_θ(ẑ) alone)."""
  tuned_variables = _with_generator_params(variables, tuned)
  loss, _ = objective(tuned_variables, z_hat, *image_data)
  total = loss
  if options.tune_locality and options.tune_locality_samples:
    z = locality_latents(key, z_hat, options.tune_locality_samples,
                         objective.arch, options.tune_near_scale)
    generator = objective.nets['generator']
    original = jax.lax.stop_gradient(
        generator.apply(variables['generator'], z))
    moved = generator.apply(tuned_variables['generator'], z)
    # ‖G_θ(z) − G(z)‖² per latent, averaged over the latents.
    total += options.tune_locality * jnp.sum(
        jnp.square(moved - original)) / z.shape[0]
  return total, loss


def _tune_init(variables, z_hat, *, options: Options):
  """Each image's copy of the tuned parameters and its Adam state,
  (N, ...)."""
  params = variables['generator']['params']
  tuned = {name: params[name] for name in tuned_layer_names(params, options)}
  copies = jax.tree.map(
      lambda p: jnp.broadcast_to(p, (z_hat.shape[0],) + p.shape), tuned)
  return copies, jax.vmap(_tune_adam(options).init)(copies)


def _tune_steps(variables, data, z_hat, keys, state, first_step, *,
                objective, options: Options, length: int):
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
  if length == 1:  # no loop: see `_search`
    (state, _), loss = step(carry, None)
    return state, loss[None]
  (state, _), losses = jax.lax.scan(step, carry, None, length=length)
  return state, losses


def _tuned_finish(variables, tuned, z_hat, final, trace, y, mask, *,
                  objective, options: Options):
  """G_θ(ẑ) of each image's own parameters, then `_fill`."""
  nets = objective.nets
  generated = jax.vmap(lambda p, z: _render(
      nets, _with_generator_params(variables, p), z))(tuned, z_hat)
  return _fill(generated, z_hat, final, trace, y, mask, options)


_TUNE_STATIC = ('objective', 'options')
_tune_init_jit = jax.jit(_tune_init, static_argnames=('options',))
_tune_steps_jit = jax.jit(_tune_steps,
                          static_argnames=_TUNE_STATIC + ('length',))
_tuned_finish_jit = jax.jit(_tuned_finish, static_argnames=_TUNE_STATIC)
_select_best_jit = jax.jit(_select_best, static_argnames=_STATIC)


def _tune(variables, data, z_hat, keys, *, objective, options: Options):
  """Runs the tuning steps of every image: (per-image tuned parameters,
  trace (N, tune_steps)). A host loop on CPU, one scan elsewhere, as the
  search (`_search`)."""
  steps = options.tune_steps
  # The step programs never read `tune_steps`: one compile serves all.
  options = dataclasses.replace(options, steps=0, tune_steps=0)
  state = _tune_init_jit(variables, z_hat, options=options)
  static = dict(objective=objective, options=options)
  if not uses_host_loop(options):
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


def _search_then_tune(variables, data, keys, known, mask, *, objective,
                      options: Options, z_dim: int, on_steps=None, every=1):
  """The search (without its fill), the tuning, and the fill from G_θ(ẑ).

  The search runs the programs `_search` runs, so ẑ is the one it finds.
  """
  state, trace = _search_latents(variables, data, keys, objective=objective,
                                 options=options, z_dim=z_dim,
                                 on_steps=on_steps, every=every)
  z_hat, final, trace = _select_best_jit(
      variables, data, state[0], trace, objective=objective,
      options=_search_options(options))
  return _tune_and_fill(variables, data, keys, known, mask, z_hat, final,
                        trace, objective=objective, options=options)


def _tune_and_fill(variables, data, keys, known, mask, z_hat, final, trace,
                   *, objective, options: Options):
  """Tunes each image's G around its ẑ and fills from G_θ(ẑ)."""
  tuned, tune_trace = _tune(variables, data, z_hat, keys,
                            objective=objective, options=options)
  out = _tuned_finish_jit(variables, tuned, z_hat, final, trace, known, mask,
                          objective=objective,
                          options=_search_options(options))
  return dict(out, tune_trace=tune_trace)


def _finish(nets, variables, z_hat, final, trace, y, mask, options):
  """G(ẑ), the overlay and the Poisson blend: the dict `complete` returns."""
  generated = jax.vmap(lambda z: _render(nets, variables, z))(z_hat)
  return _fill(generated, z_hat, final, trace, y, mask, options)


def _fill(generated, z_hat, final, trace, y, mask, options):
  """The overlay and the Poisson blend of `generated` into y."""
  overlay = mask * _known_only(y, mask) + (1.0 - mask) * generated
  cg_iterations = None
  if options.blend:
    blended, cg_info = poisson.poisson_blend(
        y, generated, mask, tol=options.cg_tol, max_iters=options.cg_max_iters)
    cg_iterations = cg_info['iterations']
  else:
    blended = overlay
  return dict(z=z_hat, generated=generated, overlay=overlay, blended=blended,
              final_loss=final, loss_trace=trace, cg_iterations=cg_iterations)


_window_weights_jit = jax.jit(image_ops.window_weights, static_argnums=1)


def complete(model: models.Model, y, mask, keys, *, spec: LossSpec,
             options: Options, on_steps=None, every: int = 1):
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
  the kept restart; cg_iterations; tune_trace (N, tune_steps): the search's
  loss at G_θ(ẑ) before each tuning step ((N, 0) without tuning). With
  `options.tune_steps` > 0, generated is G_θ(ẑ) of the image's tuned G
  (pivotal tuning, `Options`); ẑ, final_loss and loss_trace are the
  search's, as without tuning.
  """
  check_constraint(options)
  check_tuning(options)
  _check_watch(on_steps, every)
  _check_critics(model, bool(spec.eta), f'the {spec.prior!r} prior (η > 0)')
  y, mask = jnp.asarray(y), jnp.asarray(mask)
  data = (y, mask, _window_weights_jit(mask, options.window))
  return _run(model, data, keys, y, mask, spec, options, on_steps, every)


def _run(model, data, keys, known, mask, spec, options: Options,
         on_steps=None, every=1):
  """The search, tuned or not: the dict of `complete`."""
  objective = _Objective(with_dtype(model.nets, options.dtype), spec,
                         model.arch, options.window)
  if options.tune_steps:
    return _search_then_tune(model.variables, data, keys, known, mask,
                             z_dim=model.z_dim, options=options,
                             objective=objective, on_steps=on_steps,
                             every=every)
  out = _search(model.variables, data, keys, known, mask, z_dim=model.z_dim,
                options=options, objective=objective, on_steps=on_steps,
                every=every)
  return dict(out, tune_trace=jnp.zeros((known.shape[0], 0), jnp.float32))


def _prepare_fill(model, y, mask, z_hat, spec, options):
  check_tuning(options)
  _check_critics(model, bool(spec.eta), f'the {spec.prior!r} prior (η > 0)')
  y, mask, z_hat = jnp.asarray(y), jnp.asarray(mask), jnp.asarray(z_hat)
  data = (y, mask, _window_weights_jit(mask, options.window))
  objective = _Objective(with_dtype(model.nets, options.dtype), spec,
                         model.arch, options.window)
  return y, mask, z_hat, data, objective


def tune_generators(model: models.Model, y, mask, z_hat, keys, *,
                    spec: LossSpec, options: Options):
  """Pivotal tuning alone: each image's tuned parameters of G around its
  ẑ (N, z_dim), as `complete` tunes them.

  Returns (tuned, trace): tuned = {layer name: parameters with a leading
  image axis N} for the layers `options.tune_layers` selects (G's other
  parameters stay those of `model`); trace (N, tune_steps) the loss at
  G_θ(ẑ) before each step.
  """
  _, _, z_hat, data, objective = _prepare_fill(model, y, mask, z_hat, spec,
                                               options)
  return _tune(model.variables, data, z_hat, keys, objective=objective,
               options=options)


def fill_from_latents(model: models.Model, y, mask, z_hat, keys, *,
                      spec: LossSpec, options: Options):
  """The end of `complete` for given latents ẑ (N, z_dim), e.g. those of a
  search already run: pivotal tuning when `options.tune_steps` > 0, then
  the fill and the blend. `complete` with the same inputs and options
  finds ẑ and then does exactly this. final_loss and loss_trace are None.
  """
  y, mask, z_hat, data, objective = _prepare_fill(model, y, mask, z_hat,
                                                  spec, options)
  return _tune_and_fill(model.variables, data, keys, y, mask, z_hat, None,
                        None, objective=objective, options=options)


def complete_conditional(model: models.Model, y1, y2, mask, keys, *,
                         spec: ConditionalSpec = ConditionalSpec(),
                         options: Options = Options(), on_steps=None,
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
  check_constraint(options)
  check_tuning(options)
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
