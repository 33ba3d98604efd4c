"""Latent-search completion (paper 3.2-3.3) against independent references.

The losses are checked against plain-numpy loop implementations of eq. 5-8
and 10-15 written here from the paper (not from image_ops), the optimizer
against a hand-written Adam, and the batched driver against itself run one
image at a time. The networks are tiny and randomly initialized: what is
tested is the search, not the quality of a trained model.

Compiling `complete` dominates the run time (~15 s per distinct program on a
loaded 2-core CPU), so the runs live in module-scoped fixtures and each test
reads the ones it needs.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxinpaint import completion, errors, models
from jaxinpaint.completion import api, search
from jaxinpaint.ops import image_ops, metrics
from jaxinpaint.training import config_schema

RES, WIDTH, Z_DIM = 32, 4, 16
SEED = 3
# Short searches: enough to show descent on a random net, and short enough
# that round-off differences between programs stay small (see
# test_batch_independence).
STEPS = 10
RESTARTS = 3
LONG_STEPS = 20


# ---------------------------------------------------------------------------
# Independent numpy references (paper eq. 5-8, 10-15; docs/design.md)
# ---------------------------------------------------------------------------

def np_window_fraction(mask, value, window=7):
  """Fraction of in-image pixels j of the window at i with mask[j] == value."""
  h, w = mask.shape
  r = window // 2
  out = np.zeros((h, w))
  for i in range(h):
    for j in range(w):
      count = hits = 0
      for a in range(i - r, i + r + 1):
        for b in range(j - r, j + r + 1):
          if 0 <= a < h and 0 <= b < w:  # |N_i| counts in-image pixels only
            count += 1
            hits += mask[a, b] == value
      out[i, j] = hits / count
  return out


def np_weights(mask):
  """Eq. 7 / 14: W(i) = M(i) · #holes in the window / |N_i|."""
  return np.where(mask == 1, np_window_fraction(mask, 0), 0.0)


def np_complement_weights(mask):
  """Eq. 15: W2(i) = (1 − M(i)) · (1 − #known in the window / |N_i|)."""
  return np.where(mask == 0, 1.0 - np_window_fraction(mask, 1), 0.0)


def np_masked_gradients(x, known):
  """(gy, gx) by the paper's rule, reading x only where the rule allows.

  Along each axis, at pixel i with neighbours p = i − 1, n = i + 1 (outside
  the image = unknown): central if p and n known, else forward if i and n
  known, else backward if i and p known, else 0.
  """
  h, w, _ = x.shape
  inside = lambda a, b: 0 <= a < h and 0 <= b < w
  is_known = lambda a, b: inside(a, b) and known[a, b]
  grads = []
  for da, db in ((1, 0), (0, 1)):
    g = np.zeros(x.shape)
    for i in range(h):
      for j in range(w):
        p, n = (i - da, j - db), (i + da, j + db)
        if is_known(*p) and is_known(*n):
          g[i, j] = (x[n] - x[p]) / 2
        elif known[i, j] and is_known(*n):
          g[i, j] = x[n] - x[i, j]
        elif known[i, j] and is_known(*p):
          g[i, j] = x[i, j] - x[p]
    grads.append(g)
  return grads


def np_region_l1(weights, region, a, b):
  """Σ_i W(i)·|a(i) − b(i)| over pixels of the region (a, b outside it are
  never looked at: they may be NaN)."""
  sel = region.astype(bool)
  return float(np.sum(weights[sel][:, None] * np.abs(a[sel] - b[sel])))


def np_contextual_terms(image, y, mask):
  """(value term, gradient term) of eq. 6 with W of eq. 7."""
  weights = np_weights(mask)
  known = mask == 1
  value = np_region_l1(weights, known, image, y)
  grad = sum(np_region_l1(weights, known, gi, gy) for gi, gy in
             zip(np_masked_gradients(image, known),
                 np_masked_gradients(y, known)))
  return value, grad


def np_clip(z):
  return np.clip(z, -1.0, 1.0)


def np_adam_clip(grad_fn, z0, steps, lr=0.03, b1=0.9, b2=0.999, eps=1e-8,
                 project=np_clip):
  """Kingma & Ba with bias correction, then `project` (default: the clip to
  [-1, 1], paper sec. 4)."""
  z = np.asarray(z0, np.float64)
  m, v = np.zeros_like(z), np.zeros_like(z)
  zs = [z]
  for t in range(1, steps + 1):
    g = grad_fn(z)
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    m_hat, v_hat = m / (1 - b1 ** t), v / (1 - b2 ** t)
    z = project(z - lr * m_hat / (np.sqrt(v_hat) + eps))
    zs.append(z)
  return zs


# ---------------------------------------------------------------------------
# Inputs and models
# ---------------------------------------------------------------------------

def model_config(arch):
  c = config_schema.base_config().model
  c.arch, c.resolution, c.width, c.z_dim = arch, RES, WIDTH, Z_DIM
  return c


def init_variables(nets):
  """Each net's `.init`, all in one jitted program.

  An RBG key, not the default threefry: Flax's initializers drawn with
  threefry take about a minute to compile on a loaded 2-core CPU, the RBG
  generator a few seconds, and any random values do for these tests.
  """
  z = jnp.zeros((1, Z_DIM))
  x = jnp.zeros((1, RES, RES, 3))

  @jax.jit
  def init(key):
    return {name: net.init(jax.random.fold_in(key, i),
                           z if name == 'generator' else x)
            for i, (name, net) in enumerate(nets.items())}

  return init(jax.random.key(0, impl='rbg'))


def inpainting_mask(rng):
  """Square hole, a hole on the image border, scattered one-pixel holes and
  a known pixel alone inside the hole: every case of the gradient rule."""
  m = (rng.random((RES, RES)) > 0.08).astype(np.float32)
  m[10:22, 12:26] = 0
  m[0:5, 0:8] = 0
  m[15, 18] = 1  # isolated known pixel: 0 gradient along both axes
  m[16, 12] = 1  # on the hole's edge: one-sided differences
  return m


def face_mask():
  """Conditional completion: take the 'eyes' and 'mouth' boxes from y2."""
  m = np.ones((RES, RES), np.float32)
  m[8:13, 5:14] = 0
  m[8:13, 18:27] = 0
  m[20:26, 9:23] = 0
  return m


@functools.lru_cache(maxsize=None)
def _forward_program(nets):
  def forward(variables, z):
    image = nets['generator'].apply(variables['generator'], z)
    scores = {name: nets[name].apply(variables[name], image)
              for name in nets if name != 'generator'}
    return image, scores
  return jax.jit(forward)


def forward(net, z):
  """G(z) and every critic's score of it, for up to 2 latents.

  Jitted, and always on a batch of 2 so each model compiles once: eager
  Flax costs seconds per call on a loaded CPU.
  """
  nets, variables = net.nets, net.variables
  z = np.atleast_2d(np.asarray(z, np.float32))
  n = len(z)
  padded = np.concatenate([z, np.zeros((2 - n, Z_DIM), np.float32)])
  image, scores = _forward_program(nets)(variables, padded)
  return (np.asarray(image)[:n],
          {name: np.asarray(s)[:n] for name, s in scores.items()})


_inpainting_loss = jax.jit(completion.inpainting_loss,
                           static_argnames=('nets', 'spec', 'arch'))


def eval_loss(net, z, y, mask, spec):
  nets, variables = net.nets, net.variables
  w = image_ops.window_weights(jnp.asarray(mask), 7)
  loss, image = _inpainting_loss(
      jnp.asarray(z), jnp.asarray(y), jnp.asarray(mask), w, nets=nets,
      variables=variables, spec=spec, arch=net.arch)
  return float(loss), np.asarray(image)


def build_model(arch):
  """The `models.Model` handle of freshly initialized networks."""
  cfg = model_config(arch)
  return models.Model.from_config(cfg, init_variables(
      models.build_models(cfg)))


@pytest.fixture(scope='module')
def wgan():
  return build_model('wgan')


@pytest.fixture(scope='module')
def dcgan():
  return build_model('dcgan')


@pytest.fixture(scope='module')
def damaged(wgan):
  """Two images G(z*) with holes; the hole holds noise (finite) or NaN."""
  rng = np.random.default_rng(0)
  y, _ = forward(wgan, jax.random.normal(jax.random.key(7), (2, Z_DIM)))
  mask = np.stack([inpainting_mask(rng), inpainting_mask(rng)])[..., None]
  noise = rng.uniform(-1, 1, y.shape).astype(np.float32)
  y_noise = np.where(mask == 1, y, noise)
  y_nan = np.where(mask == 1, y, np.nan).astype(np.float32)
  return y_noise, y_nan, mask


PAPER_OPTIONS = completion.Options(steps=STEPS, restarts=RESTARTS)


def run_complete(net, y, mask, indices, options=PAPER_OPTIONS,
                 spec=completion.LOSSES['paper']):
  out = completion.complete(
      net, jnp.asarray(y), jnp.asarray(mask),
      completion.image_keys(SEED, indices), spec=spec, options=options)
  return jax.tree.map(np.asarray, out)


@pytest.fixture(scope='module')
def paper_run(wgan, damaged):
  y_noise, _, mask = damaged
  return run_complete(wgan, y_noise, mask, [0, 1])


# ---------------------------------------------------------------------------
# 1. The search lowers the loss, clips z and keeps the best restart
# ---------------------------------------------------------------------------

def test_completion_lowers_loss_and_keeps_best_restart(wgan, damaged,
                                                       paper_run):
  y, _, mask = damaged
  out = paper_run
  spec = completion.LOSSES['paper']
  assert out['z'].shape == (2, Z_DIM)
  assert out['final_loss'].shape == (2, RESTARTS)
  assert out['loss_trace'].shape == (2, STEPS)
  assert np.all(np.isfinite(out['loss_trace']))
  assert np.all(out['loss_trace'][:, -1] < out['loss_trace'][:, 0])
  best = np.argmin(out['final_loss'], axis=1)
  kept_final = out['final_loss'][np.arange(2), best]
  assert np.all(kept_final <= out['loss_trace'][:, 0])
  assert np.all(np.abs(out['z']) <= 1.0)

  keys = completion.image_keys(SEED, [0, 1])
  for i in range(2):
    # Restarts really differ, so picking one is a real choice.
    assert len(np.unique(out['final_loss'][i])) == RESTARTS
    # The returned ẑ is the kept restart's: its loss is min(final_loss) ...
    loss_at_z, image = eval_loss(wgan, out['z'][i], y[i], mask[i], spec)
    np.testing.assert_allclose(loss_at_z, kept_final[i], rtol=1e-5)
    np.testing.assert_allclose(out['generated'][i], image, atol=1e-6)
    # ... and the kept trace starts at that restart's initial latent, drawn
    # N(0, 1) from the image's own key (so unclipped at first).
    z0 = np.asarray(completion.initial_latents(keys[i], RESTARTS, Z_DIM,
                                               'wgan'))
    assert np.abs(z0).max() > 1.0
    loss_at_z0, _ = eval_loss(wgan, z0[best[i]], y[i], mask[i], spec)
    np.testing.assert_allclose(out['loss_trace'][i, 0], loss_at_z0,
                               rtol=1e-5)


def _cosine_objective(variables, z, offset):
  """A non-convex loss with many local minima, so restarts end apart."""
  del variables
  return jnp.sum(jnp.cos(4.0 * z) + 0.3 * (z - offset)), None


@pytest.mark.parametrize('host_loop', [False, True])
def test_best_restart_is_argmin_of_independent_runs(host_loop):
  # Two images, six restarts each, run by the batched search (one scan of
  # all steps, or a Python loop of one-step programs); each restart is re-run
  # on its own with `_optimize_one` and the kept one must be the argmin.
  options = completion.Options(steps=15, restarts=6, learning_rate=0.1)
  keys = completion.image_keys(11, [0, 1])
  data = (jnp.array([0.0, 0.5]),)
  static = dict(objective=_cosine_objective, options=options)
  state = search._init_search(keys, options=options, z_dim=5,
                              arch='wgan')
  if host_loop:
    traces = []
    for _ in range(options.steps):
      state, t = search._search_steps_jit(None, data, state, length=1,
                                          **static)
      traces.append(t)
    trace = jnp.concatenate(traces)
  else:
    state, trace = search._search_steps_jit(
        None, data, state, length=options.steps, **static)
  z, final, trace = search._select_best(
      None, data, state[0], trace, objective=_cosine_objective,
      options=options)
  for i in range(2):
    loss_fn = functools.partial(_cosine_objective, None, offset=data[0][i])
    z0 = completion.initial_latents(keys[i], 6, 5, 'wgan')
    one = jax.jit(lambda z: search._optimize_one(loss_fn, z, options))
    runs = [one(z0[k]) for k in range(6)]
    finals = np.array([float(r[1]) for r in runs])
    assert len(np.unique(np.round(finals, 4))) > 1
    best = int(np.argmin(finals))
    np.testing.assert_allclose(final[i], finals, rtol=1e-6)
    np.testing.assert_allclose(z[i], runs[best][0], atol=1e-6)
    np.testing.assert_allclose(trace[i], runs[best][2], rtol=1e-6)


def test_host_loop_and_scan_agree(wgan, damaged, paper_run):
  # On CPU `complete` runs its steps from Python ('auto' = 'host'); the one
  # compiled scan must give the same search. Different programs round
  # differently, and Adam, nearly sign(gradient) for small gradients, grows
  # those ~1e-7 differences: hence the loose tolerances.
  y, _, mask = damaged
  scan = run_complete(wgan, y, mask, [0, 1], options=dataclasses.replace(
      PAPER_OPTIONS, loop='scan'))
  assert completion.uses_host_loop(PAPER_OPTIONS) == (
      jax.default_backend() == 'cpu')
  np.testing.assert_allclose(scan['z'], paper_run['z'], atol=1e-3)
  np.testing.assert_allclose(scan['loss_trace'], paper_run['loss_trace'],
                             rtol=1e-3)
  np.testing.assert_allclose(scan['blended'], paper_run['blended'],
                             atol=1e-2)
  with pytest.raises(ValueError, match='Options.loop'):
    completion.uses_host_loop(completion.Options(loop='gpu'))


def test_watching_the_search_changes_nothing(wgan, damaged, paper_run):
  # `on_steps` sees the search every 4 steps and at the end; the results
  # are the host loop's without it, bit for bit, and what it saw is the
  # search's own state (its last z holds ẑ, its losses the trace).
  y, _, mask = damaged
  seen = []
  out = completion.complete(
      wgan, jnp.asarray(y), jnp.asarray(mask), completion.image_keys(SEED,
                                                                     [0, 1]),
      spec=completion.LOSSES['paper'], options=PAPER_OPTIONS,
      on_steps=lambda done, z, loss: seen.append(
          (done, np.asarray(z), np.asarray(loss))), every=4)
  out = jax.tree.map(np.asarray, out)
  expected = paper_run
  if not completion.uses_host_loop(PAPER_OPTIONS):  # an accelerator
    expected = run_complete(wgan, y, mask, [0, 1], options=dataclasses.replace(
        PAPER_OPTIONS, loop='host'))
  for key in ('z', 'generated', 'blended', 'final_loss', 'loss_trace'):
    np.testing.assert_array_equal(out[key], expected[key], err_msg=key)
  assert [done for done, _, _ in seen] == [4, 8, STEPS]
  best = np.argmin(out['final_loss'], axis=1)
  for done, z, loss in seen:
    assert z.shape == (2, RESTARTS, Z_DIM) and loss.shape == (2, RESTARTS)
    np.testing.assert_array_equal(loss[[0, 1], best],
                                  out['loss_trace'][:, done - 1])
  np.testing.assert_array_equal(seen[-1][1][[0, 1], best], out['z'])
  # `generate` renders the search's latents as `complete` does.
  np.testing.assert_allclose(
      np.asarray(completion.generate(wgan, out['z'])), out['generated'],
      atol=1e-6)
  for bad in (0, 2.5, True):
    with pytest.raises(ValueError, match='every must be an int >= 1'):
      completion.complete(wgan, y, mask, completion.image_keys(SEED, [0, 1]),
                          spec=completion.LOSSES['paper'],
                          options=PAPER_OPTIONS, on_steps=print, every=bad)


def test_batchmates_do_not_matter(wgan, damaged, paper_run):
  # Same compiled program, so exact: image a's result must not move by one
  # bit when its batchmate (image, mask and key) and its position change.
  y, _, mask = damaged
  other = y[1, ::-1]
  other_mask = mask[0, :, ::-1]
  out = run_complete(wgan, np.stack([other, y[0]]),
                     np.stack([other_mask, mask[0]]), [5, 0])
  for name in ('z', 'generated', 'overlay', 'blended', 'final_loss',
               'loss_trace'):
    np.testing.assert_array_equal(out[name][1], paper_run[name][0],
                                  err_msg=name)


def test_batch_independence(wgan, damaged, paper_run):
  """Each image completed alone, with its own key, matches the pair.

  A batch of one is a different XLA program: its convolutions round
  differently in the last bit (~1e-7), and Adam amplifies such differences
  along a trajectory (about 2x per step on this random net, where
  m/sqrt(v) of a coordinate near a sign change of its gradient is decided by
  round-off). The losses, sums over the whole image, stay within 1e-5; the
  latent of one image drifted to 1.2e-4 after 10 steps (4e-3 after 20), so
  z and the images get 1e-3. A real coupling between images (batch
  statistics, a shared optimizer normalization, the wrong key) is off by
  orders of magnitude more from step 0, and is tested exactly above.
  """
  y, _, mask = damaged
  pair = completion.image_keys(SEED, [0, 1])
  for i in range(2):
    assert np.array_equal(jax.random.key_data(pair[i]),
                          jax.random.key_data(
                              completion.image_keys(SEED, [i])[0]))
    alone = run_complete(wgan, y[i:i + 1], mask[i:i + 1], [i])
    for name in ('final_loss', 'loss_trace'):
      np.testing.assert_allclose(alone[name][0], paper_run[name][i],
                                 rtol=1e-5, err_msg=name)
    for name in ('z', 'generated', 'overlay', 'blended'):
      np.testing.assert_allclose(alone[name][0], paper_run[name][i],
                                 atol=1e-3, err_msg=name)


def test_hole_pixels_of_y_are_never_read(wgan, damaged, paper_run):
  # Same program, only the hole's content changes (noise → NaN): a NaN that
  # leaked into the loss, the overlay or the blend would show up here.
  _, y_nan, mask = damaged
  out = run_complete(wgan, y_nan, mask, [0, 1])
  for name in ('z', 'final_loss', 'loss_trace', 'overlay', 'blended'):
    np.testing.assert_array_equal(out[name], paper_run[name], err_msg=name)


# ---------------------------------------------------------------------------
# 3. inpainting_loss = eq. 5-8, in numpy
# ---------------------------------------------------------------------------

@pytest.mark.parametrize('name', ['paper', 'yeh', 'yeh_gradient'])
def test_inpainting_loss_matches_numpy(wgan, damaged, name):
  _, y_nan, mask = damaged
  y, m = y_nan[0], mask[0, ..., 0]
  z = np.asarray(jax.random.uniform(jax.random.key(5), (Z_DIM,), minval=-1,
                                    maxval=1))
  spec = completion.LOSSES[name]
  # `complete` computes W itself; here it is an input, so check it first.
  np.testing.assert_allclose(
      image_ops.window_weights(jnp.asarray(mask[0]), 7)[..., 0],
      np_weights(m), atol=1e-6)
  loss, image = eval_loss(wgan, z, y, mask[0], spec)
  g, scores = forward(wgan, z)
  np.testing.assert_allclose(image, g[0], atol=1e-6)

  value, grad = np_contextual_terms(image.astype(np.float64),
                                    y.astype(np.float64), m)
  assert value > 0 and grad > 0
  d, dp = scores['critic'][0], scores['patch_critic'][0]
  prior = -d - dp if spec.prior == 'critics' else -d  # WGAN Yeh prior: −D
  expected = spec.alpha * value + spec.beta * grad + spec.eta * prior
  np.testing.assert_allclose(loss, expected, rtol=1e-5)


@pytest.mark.parametrize('alpha, beta', [(1.0, 0.0), (0.0, 1.0)])
def test_contextual_terms_separately(wgan, damaged, alpha, beta):
  # Each term alone, so one cannot hide an error in the other.
  _, y_nan, mask = damaged
  z = np.linspace(-1, 1, Z_DIM).astype(np.float32)
  loss, image = eval_loss(wgan, z, y_nan[1], mask[1],
                          completion.LossSpec(alpha, beta, 0.0))
  value, grad = np_contextual_terms(image.astype(np.float64),
                                    y_nan[1].astype(np.float64),
                                    mask[1, ..., 0])
  np.testing.assert_allclose(loss, alpha * value + beta * grad, rtol=1e-5)


def test_priors(wgan, dcgan):
  z = np.linspace(-1, 1, Z_DIM).astype(np.float32)
  y = np.zeros((RES, RES, 3), np.float32)
  mask = np.ones((RES, RES, 1), np.float32)
  prior_only = lambda prior: completion.LossSpec(0.0, 0.0, 1.0, prior)

  loss, _ = eval_loss(wgan, z, y, mask, prior_only('critics'))
  _, scores = forward(wgan, z)
  expected = -scores['critic'][0] - scores['patch_critic'][0]
  np.testing.assert_allclose(loss, expected, rtol=1e-5, atol=1e-6)

  # Yeh et al.: log(1 − σ(D)) = −softplus(D) on the DCGAN logit.
  loss, _ = eval_loss(dcgan, z, y, mask, prior_only('yeh'))
  _, scores = forward(dcgan, z)
  logit = float(scores['critic'][0])
  np.testing.assert_allclose(loss, -np.logaddexp(0.0, logit), rtol=1e-5,
                             atol=1e-6)
  np.testing.assert_allclose(loss, np.log(1 - 1 / (1 + np.exp(-logit))),
                             rtol=1e-4)


# ---------------------------------------------------------------------------
# 4. Adam + clip step = hand-written Adam
# ---------------------------------------------------------------------------

def test_adam_clip_matches_numpy():
  # A quadratic whose minimum lies partly outside [-1, 1], so the clip
  # engages and Adam must go on from the clipped point.
  a = np.array([1.0, 2.0, 0.5, 3.0, 1.5, 0.2])
  target = np.array([1.5, -2.0, 0.3, -0.4, 0.9, -1.2])
  z0 = np.array([0.9, -0.7, 0.0, 0.5, -0.2, -0.98], np.float32)
  steps = 12
  options = completion.Options(steps=steps, learning_rate=0.03)

  def loss_fn(z):
    return 0.5 * jnp.sum(a * (z - target) ** 2), z

  z, final, trace = jax.jit(
      lambda z: search._optimize_one(loss_fn, z, options))(z0)
  zs = np_adam_clip(lambda z: a * (z - target), z0, steps)
  np_loss = lambda z: 0.5 * np.sum(a * (z - target) ** 2)
  np.testing.assert_allclose(z, zs[-1], atol=1e-5)
  np.testing.assert_allclose(trace, [np_loss(z) for z in zs[:-1]], rtol=1e-5)
  np.testing.assert_allclose(final, np_loss(zs[-1]), rtol=1e-5)
  assert np.asarray(z)[0] == 1.0 and np.asarray(z)[1] == -1.0  # clipped

  # A large step: the clip is hit on the first update.
  big = completion.Options(steps=3, learning_rate=0.5)
  z, _, _ = jax.jit(lambda z: search._optimize_one(loss_fn, z, big))(z0)
  np.testing.assert_allclose(
      z, np_adam_clip(lambda z: a * (z - target), z0, 3, lr=0.5)[-1],
      atol=1e-5)


def test_constraint_projections_by_hand():
  box = completion.Options(z_bound=0.5)
  sphere = completion.Options(z_constraint='sphere')
  z = jnp.array([[0.7, -2.0, 0.2, -0.5], [3.0, 0.0, 4.0, 0.0]])
  np.testing.assert_array_equal(
      completion.constrain_latent(z, box),
      np.float32([[0.5, -0.5, 0.2, -0.5], [0.5, 0.0, 0.5, 0.0]]))
  # Radius sqrt(4) = 2: row 2 has norm 5 -> (3, 0, 4, 0) * 2 / 5.
  on_sphere = np.asarray(completion.constrain_latent(z, sphere))
  np.testing.assert_allclose(on_sphere[1], [1.2, 0.0, 1.6, 0.0], rtol=1e-6)
  norm0 = np.sqrt(0.49 + 4.0 + 0.04 + 0.25)
  np.testing.assert_allclose(on_sphere[0], np.asarray(z[0]) * 2 / norm0,
                             rtol=1e-6)
  # 0 has no nearest point on the sphere: it stays 0 (and finite).
  np.testing.assert_array_equal(
      completion.constrain_latent(jnp.zeros((1, 4)), sphere), np.zeros((1, 4)))
  # The default is the paper's box [-1, 1].
  np.testing.assert_array_equal(
      completion.constrain_latent(z, completion.Options()),
      np.clip(np.asarray(z), -1, 1))
  for bad, match in ((dict(z_constraint='ball'), 'z_constraint'),
                     (dict(z_bound=0.0), 'z_bound')):
    with pytest.raises(ValueError, match=match):
      completion.check_constraint(completion.Options(**bad))


@pytest.mark.parametrize('constraint', ['box', 'sphere'])
def test_adam_step_then_projection_matches_numpy(constraint):
  # The quadratic of `test_adam_clip_matches_numpy`, its minimum outside
  # both sets (|target| > sqrt(6) and outside ±0.5), under each constraint.
  a = np.array([1.0, 2.0, 0.5, 3.0, 1.5, 0.2])
  target = np.array([1.5, -2.0, 0.3, -0.4, 0.9, -1.2]) * 2
  z0 = np.array([0.9, -0.7, 0.0, 0.5, -0.2, -0.98], np.float32)
  options = completion.Options(steps=8, learning_rate=0.1,
                               z_constraint=constraint, z_bound=0.5)
  if constraint == 'box':
    project = lambda z: np.clip(z, -0.5, 0.5)
  else:
    project = lambda z: z * np.sqrt(6) / np.linalg.norm(z)

  def loss_fn(z):
    return 0.5 * jnp.sum(a * (z - target) ** 2), z

  z, _, _ = jax.jit(lambda z: search._optimize_one(loss_fn, z, options))(
      z0)
  zs = np_adam_clip(lambda z: a * (z - target), z0, 8, lr=0.1,
                    project=project)
  np.testing.assert_allclose(z, zs[-1], atol=1e-5)
  if constraint == 'sphere':
    np.testing.assert_allclose(np.linalg.norm(z), np.sqrt(6), rtol=1e-6)
  else:
    assert np.abs(np.asarray(z)).max() == 0.5


def test_sphere_search_starts_and_stays_on_the_sphere(wgan, damaged):
  y, _, mask = damaged
  sphere = completion.Options(steps=2, restarts=2, z_constraint='sphere',
                              blend=False)
  keys = completion.image_keys(SEED, [0, 1])
  raw = np.asarray(models.sample_latent(keys[0], (2, Z_DIM), 'wgan'))
  # The start is the Gaussian draw projected onto the sphere; the box keeps
  # the paper's unclipped draw (its first step clips it).
  start = np.asarray(completion.initial_latents(keys[0], 2, Z_DIM, 'wgan',
                                                sphere))
  np.testing.assert_allclose(start, raw * np.sqrt(Z_DIM) / np.linalg.norm(
      raw, axis=-1, keepdims=True), rtol=1e-6)
  np.testing.assert_array_equal(
      completion.initial_latents(keys[0], 2, Z_DIM, 'wgan'), raw)
  out = run_complete(wgan, y, mask, [0, 1], options=sphere)
  np.testing.assert_allclose(np.linalg.norm(out['z'], axis=-1),
                             np.sqrt(Z_DIM), rtol=1e-5)
  loss_at_start, _ = eval_loss(wgan, start[np.argmin(out['final_loss'][0])],
                               y[0], mask[0], completion.LOSSES['paper'])
  np.testing.assert_allclose(out['loss_trace'][0, 0], loss_at_start,
                             rtol=1e-5)


# ---------------------------------------------------------------------------
# 5. overlay and blend
# ---------------------------------------------------------------------------

def test_overlay_and_blend(damaged, paper_run):
  y, _, mask = damaged
  out = paper_run
  known = np.broadcast_to(mask == 1, y.shape)
  np.testing.assert_array_equal(out['blended'][known], y[known])
  np.testing.assert_array_equal(
      out['overlay'], mask * y + (1 - mask) * out['generated'])
  # The blend did move the hole (Poisson, not a copy of the overlay).
  assert np.all(np.isfinite(out['blended']))
  assert np.abs(out['blended'] - out['overlay'])[~known].max() > 1e-3
  assert np.all(out['cg_iterations'] > 0)


# ---------------------------------------------------------------------------
# 6. Conditional completion (eq. 10-15)
# ---------------------------------------------------------------------------

@pytest.fixture(scope='module')
def faces(wgan):
  """y1 known where M = 1 (NaN elsewhere), y2 known where M = 0."""
  faces, _ = forward(wgan, jax.random.normal(jax.random.key(9), (2, Z_DIM)))
  refs, _ = forward(wgan, jax.random.normal(jax.random.key(10), (2, Z_DIM)))
  mask = np.broadcast_to(face_mask()[None, ..., None], (2, RES, RES, 1))
  y1 = np.where(mask == 1, faces, np.nan).astype(np.float32)
  y2 = np.where(mask == 0, refs, np.nan).astype(np.float32)
  return y1, y2, np.ascontiguousarray(mask)


# Three different α, so a term weighted by the wrong one would show.
COND_SPEC = completion.ConditionalSpec(alpha1=0.3, alpha2=0.9, alpha3=0.7,
                                       beta=0.5)
_conditional_loss = jax.jit(completion.conditional_loss,
                            static_argnames=('nets', 'spec', 'window',
                                             'arch'))


def eval_conditional_loss(net, z, y1, y2, mask):
  nets, variables = net.nets, net.variables
  loss, image = _conditional_loss(
      jnp.asarray(z), jnp.asarray(y1), jnp.asarray(y2), jnp.asarray(mask),
      nets=nets, variables=variables, spec=COND_SPEC, window=7,
      arch=net.arch)
  return float(loss), np.asarray(image)


def test_conditional_loss_matches_numpy(wgan, faces):
  y1, y2, mask = faces
  spec = COND_SPEC
  z = np.asarray(jax.random.uniform(jax.random.key(4), (Z_DIM,), minval=-1,
                                    maxval=1))
  loss, image = eval_conditional_loss(wgan, z, y1[0], y2[0], mask[0])

  m = mask[0, ..., 0]
  keep, swap = m == 1, m == 0
  image = np.asarray(image, np.float64)
  a, b = y1[0].astype(np.float64), y2[0].astype(np.float64)
  w1, w2 = np_weights(m), np_complement_weights(m)
  assert w2[swap].min() > 0 and w2[keep].max() == 0
  value = np_region_l1(w1, keep, image, a)
  grad1 = sum(np_region_l1(w1, keep, g, ga) for g, ga in
              zip(np_masked_gradients(image, keep),
                  np_masked_gradients(a, keep)))
  grad2 = sum(np_region_l1(w2, swap, g, gb) for g, gb in
              zip(np_masked_gradients(image, swap),
                  np_masked_gradients(b, swap)))
  assert value > 0 and grad1 > 0 and grad2 > 0
  g, scores = forward(wgan, z)
  np.testing.assert_allclose(image, g[0], atol=1e-6)
  d = scores['critic'][0]
  expected = (spec.alpha1 * value + spec.alpha2 * grad1 + spec.alpha3 * grad2
              - spec.beta * d)
  np.testing.assert_allclose(loss, expected, rtol=1e-5)


def test_complete_conditional_lowers_loss(wgan, faces):
  y1, y2, mask = faces
  options = completion.Options(steps=LONG_STEPS, restarts=2)
  out = jax.tree.map(np.asarray, completion.complete_conditional(
      wgan, jnp.asarray(y1), jnp.asarray(y2), jnp.asarray(mask),
      completion.image_keys(SEED, [0, 1]), spec=COND_SPEC,
      options=options))
  assert np.all(np.isfinite(out['loss_trace']))
  assert np.all(out['loss_trace'][:, -1] < out['loss_trace'][:, 0])
  assert np.all(np.abs(out['z']) <= 1.0)
  for i in range(2):
    loss, _ = eval_conditional_loss(wgan, out['z'][i], y1[i], y2[i], mask[i])
    np.testing.assert_allclose(loss, out['final_loss'][i].min(), rtol=1e-5)
  keep = np.broadcast_to(mask == 1, y1.shape)
  np.testing.assert_array_equal(out['blended'][keep], y1[keep])
  np.testing.assert_array_equal(out['overlay'][~keep],
                                out['generated'][~keep])
  assert np.all(np.isfinite(out['blended']))


# ---------------------------------------------------------------------------
# 7. The DCGAN (Yeh et al.) path
# ---------------------------------------------------------------------------

def test_dcgan_path(dcgan, damaged):
  _, _, mask = damaged
  # Targets from latents outside the box: the contextual optimum lies beyond
  # [-1, 1], so the search must push into the walls and the clip must hold.
  z_star = 3.0 * jnp.sign(jax.random.normal(jax.random.key(2), (2, Z_DIM)))
  y, _ = forward(dcgan, z_star)
  keys = completion.image_keys(SEED, [0, 1])
  z0 = np.stack([completion.initial_latents(k, 2, Z_DIM, 'dcgan')
                 for k in keys])
  assert np.abs(z0).max() <= 1.0 and np.abs(z0).max() > 0.5
  assert not np.allclose(z0[:, 0], z0[:, 1])

  # A large learning rate drives coordinates into the box walls; blend off.
  options = completion.Options(steps=LONG_STEPS, restarts=2,
                               learning_rate=0.3, blend=False)
  spec = completion.LOSSES['yeh']
  out = run_complete(dcgan, y, mask, [0, 1], options=options, spec=spec)
  assert np.all(np.isfinite(out['loss_trace']))
  assert np.all(out['loss_trace'][:, -1] < out['loss_trace'][:, 0])
  assert np.all(np.abs(out['z']) <= 1.0)
  assert np.any(np.abs(out['z']) == 1.0)  # the clip really acted
  # U(-1, 1) starts never sit exactly on the wall: that was the clip.
  assert not np.any(np.abs(z0) == 1.0)
  np.testing.assert_array_equal(out['blended'], out['overlay'])
  assert out['cg_iterations'] is None
  best = np.argmin(out['final_loss'], axis=1)
  for i in range(2):
    loss_at_z0, _ = eval_loss(dcgan, z0[i, best[i]], y[i], mask[i], spec)
    np.testing.assert_allclose(out['loss_trace'][i, 0], loss_at_z0,
                               rtol=1e-5)


def test_dcgan_handle_brings_its_latent_and_prior(dcgan):
  # No arch argument anywhere: the handle alone makes `complete` draw
  # U(-1, 1) starts and use log(1 − σ(D)). Zero steps: ẑ is the start and
  # the final loss is the prior there.
  assert (dcgan.arch, dcgan.latent_distribution) == ('dcgan', 'uniform')
  y = np.zeros((2, RES, RES, 3), np.float32)
  mask = np.ones((2, RES, RES, 1), np.float32)
  spec = completion.LossSpec(0.0, 0.0, 1.0, 'yeh')
  out = run_complete(dcgan, y, mask, [0, 1], spec=spec,
                     options=completion.Options(steps=0, blend=False))
  keys = completion.image_keys(SEED, [0, 1])
  want = np.stack([np.asarray(jax.random.uniform(k, (1, Z_DIM), minval=-1.0,
                                                 maxval=1.0))[0]
                   for k in keys])
  np.testing.assert_array_equal(out['z'], want)
  _, scores = forward(dcgan, want)
  np.testing.assert_allclose(out['final_loss'][:, 0],
                             -np.logaddexp(0.0, scores['critic']), rtol=1e-5)


def test_handle_reads_z_dim_from_the_config_and_checks_it():
  cfg = model_config('dcgan')
  cfg.z_dim = 12  # not a layer name's, the config's
  variables = models.random_variables(cfg)
  model = models.Model.from_config(cfg, variables, step=7)
  assert (model.z_dim, model.resolution, model.step) == (12, RES, 7)
  assert model.sample_latent(jax.random.key(0), (3,)).shape == (3, 12)
  wrong = model_config('dcgan')  # z_dim 16, G's variables take 12
  with pytest.raises(ValueError, match='z_dim=16.*does not fit'):
    models.Model.from_config(wrong, variables)
  with pytest.raises(ValueError, match='no generator'):
    models.Model.from_config(cfg, {'critic': variables['critic']})
  with pytest.raises(ValueError, match='patch_critic'):
    models.Model.from_config(cfg, dict(variables, patch_critic={}))


def test_a_model_without_critic_is_refused_where_one_is_needed():
  cfg = model_config('wgan')
  generator_only = models.Model.from_config(
      cfg, {'generator': models.random_variables(cfg)['generator']})
  assert sorted(generator_only.nets) == ['generator']
  y = np.zeros((1, RES, RES, 3), np.float32)
  mask = np.ones((1, RES, RES, 1), np.float32)
  keys = completion.image_keys(0, [0])
  with pytest.raises(ValueError, match='global critic D'):
    completion.complete_conditional(generator_only, y, y, mask, keys)
  with pytest.raises(ValueError, match='global critic D'):
    completion.complete(generator_only, y, mask, keys,
                        spec=completion.LOSSES['yeh'],
                        options=completion.Options(steps=1))
  with pytest.raises(ValueError, match='z_constraint'):
    completion.complete(generator_only, y, mask, keys,
                        spec=completion.LossSpec(1.0, 0.0, 0.0),
                        options=completion.Options(z_constraint='ball'))


# ---------------------------------------------------------------------------
# 8. bfloat16 networks (Options.dtype), float32 search
# ---------------------------------------------------------------------------

# Mean |blended_bf16 − blended_float32| over all pixels, in grey levels, of
# the test below (width 8, 10 steps, the holes 26% of the image). Two
# causes, neither tied to a CPU's kernels: (1) G's bfloat16 rounding: n ≈ 45
# roundings of ±2^-8 from z to a pixel (test_train_step_torch counts them),
# a random walk of standard deviation √(n/3)·2^-8 = 3.9·2^-8 of |G| ≈ 0.3;
# its mean absolute value, √(2/π) of that, is 0.46 grey levels in the hole,
# 0.12 over the image; (2) the searches' drift: Adam steps ±lr (0.03) either
# way where a gradient is within rounding of zero, and a latent 2·lr away
# on every coordinate moves the hole by 0.63 over the image. 2 · 0.12 +
# 0.63 < 1. A search that went elsewhere (another latent: ~37 grey levels
# in the hole, ~10 over the image) is far above. (Measured: 0.06 and 0.08.)
BF16_MEAN_GREY_TOL = 1.0


def test_bfloat16_networks_keep_a_float32_search():
  cfg = model_config('wgan')
  cfg.width = 8
  nets = models.build_models(cfg)
  variables = jax.device_put(models.random_variables(cfg, seed=1))
  bf16_nets = completion.with_dtype(nets, 'bfloat16')
  assert all(net.dtype == jnp.bfloat16 for net in bf16_nets.values())
  assert completion.with_dtype(nets, None) is nets

  rng = np.random.default_rng(2)
  target = nets['generator'].apply(variables['generator'],
                                   rng.normal(size=(2, Z_DIM)))
  mask = np.stack([inpainting_mask(rng), inpainting_mask(rng)])[..., None]
  y = np.where(mask == 1, np.asarray(target), 0.0).astype(np.float32)
  runs = {dtype: run_complete(
      models.Model.from_config(cfg, variables), y, mask, [0, 1],
      options=completion.Options(steps=STEPS, dtype=dtype))
          for dtype in (None, 'bfloat16')}
  ref, bf16 = runs[None], runs['bfloat16']

  for key in ('z', 'final_loss', 'loss_trace', 'blended'):
    assert bf16[key].dtype == np.float32, key
  # The bf16 nets were used (results moved), and only by rounding: the
  # first loss, at the same starting z, agrees to bf16's precision. It is
  # (~80 here) a weighted sum of ~2000 terms |G(z) − y| and |∇G(z) − ∇y|
  # over the known pixels; G's rounding of a pixel (at most c·2^-8·|G|, c ≈
  # 15 for the ~45 roundings above) has a sign independent of its term's,
  # so the sum moves by ~c·2^-8/√2000 of itself (4 standard deviations:
  # 1.4·2^-8), and the prior η·(−D − Dp) ~1 by c·2^-8·(|D| + |Dp|) ≈ 1e-3
  # of the loss. rtol 2e-2 = 5·2^-8 holds on any CPU (measured: 1e-4).
  assert not np.array_equal(bf16['z'], ref['z'])
  np.testing.assert_allclose(bf16['loss_trace'][:, 0],
                             ref['loss_trace'][:, 0], rtol=2e-2)
  assert np.all(bf16['loss_trace'][:, -1] < bf16['loss_trace'][:, 0])
  grey = np.abs(metrics.to_uint8(bf16['blended']).astype(np.float64)
                - metrics.to_uint8(ref['blended']))
  print(f'bf16 vs float32: mean |diff| {grey.mean():.3f} grey levels, '
        f'max |dz| {np.abs(bf16["z"] - ref["z"]).max():.3f}')
  assert grey.mean() < BF16_MEAN_GREY_TOL


def test_bad_dtype_option():
  nets = models.build_models(model_config('wgan'))
  with pytest.raises(ValueError, match='Options.dtype'):
    completion.with_dtype(nets, 'int8')
  with pytest.raises(ValueError, match='Options.dtype'):
    completion.with_dtype(nets, 'float17')


# ---------------------------------------------------------------------------
# 9. Bad arguments: one line naming the argument, before any work
# ---------------------------------------------------------------------------

def refused(argument, match, fn, *args, **kwargs):
  """`fn(...)` raises errors.ArgumentError about `argument`, one line."""
  with pytest.raises(errors.ArgumentError, match=match) as raised:
    fn(*args, **kwargs)
  assert raised.value.argument == argument
  assert '\n' not in str(raised.value)


def complete_args(damaged, **changes):
  """complete's arguments on the damaged pair, with `changes`."""
  y_noise, _, mask = damaged
  args = dict(y=y_noise, mask=mask, keys=completion.image_keys(SEED, [0, 1]),
              spec=completion.LOSSES['paper'], options=PAPER_OPTIONS)
  return dict(args, **changes)


def test_images_must_be_floats_in_minus_one_one(wgan, damaged):
  y_noise = damaged[0]
  as_uint8 = metrics.to_uint8(y_noise)
  hint = r': divide by 127.5 and subtract 1$'
  refused('y', r'float values in \[-1, 1\], got uint8 \d+\.\.\d+' + hint,
          completion.complete, wgan, **complete_args(damaged, y=as_uint8))
  refused('y', r'got \d+\.\.\d+' + hint, completion.complete, wgan,
          **complete_args(damaged, y=as_uint8.astype(np.float32)))
  _, _, mask = damaged
  refused('y', r'got -3\.\.-3$', completion.complete, wgan,
          **complete_args(damaged, y=np.where(mask == 1, -3.0, y_noise)))
  refused('y2', 'got uint8', completion.complete_conditional, wgan, y_noise,
          as_uint8, mask, completion.image_keys(SEED, [0, 1]))


def test_arrays_must_be_channels_last_with_a_channel_axis(wgan, damaged):
  y_noise, _, mask = damaged
  refused('y', r'channels first\): np\.transpose', completion.complete, wgan,
          **complete_args(damaged, y=y_noise.transpose(0, 3, 1, 2)))
  refused('mask', r'without the channel axis: mask\[\.\.\., None\]',
          completion.complete, wgan, **complete_args(damaged,
                                                    mask=mask[..., 0]))
  refused('mask', r'channels first', completion.complete, wgan,
          **complete_args(damaged, mask=mask.transpose(0, 3, 1, 2)))
  refused('y', r'add the batch axis, x\[None\]', completion.complete, wgan,
          **complete_args(damaged, y=y_noise[0]))
  refused('y', rf'expected \(N, {RES}, {RES}, 3\)', completion.complete,
          wgan, **complete_args(damaged, y=y_noise[:, :16, :16]))
  refused('mask', r'has 3 rows; expected 1 .* or one per image \(2\)',
          completion.complete, wgan,
          **complete_args(damaged, mask=np.concatenate([mask, mask[:1]])))
  refused('keys', r'one PRNG key per image \(2\), got 3', completion.complete,
          wgan, **complete_args(damaged,
                                keys=completion.image_keys(SEED, [0, 1, 2])))


def test_known_pixels_must_be_finite_the_hole_may_hold_anything(wgan,
                                                                damaged):
  y_noise, y_nan, mask = damaged
  for bad in (np.nan, np.inf):
    y = y_noise.copy()
    y[1][np.broadcast_to(mask[1] == 1, y[1].shape)] = bad  # known pixels
    refused('y', 'image 1 has NaN or inf at a known pixel', completion.complete,
            wgan, **complete_args(damaged, y=y))
  # NaN (or anything) in the hole passes the checks: the search never reads
  # it (test_hole_pixels_of_y_are_never_read runs it).
  wild = np.where(mask == 1, y_noise, 300.0).astype(np.float32)
  for y in (y_nan, wild):
    checked, _ = api.checked_inputs(wgan, y, mask)
    np.testing.assert_array_equal(checked, y)
  # Conditional completion reads y2 where M < 1 only.
  keys = completion.image_keys(SEED, [0, 1])
  keep = np.broadcast_to(mask == 1, y_noise.shape)
  refused('y2', 'image 0 has NaN or inf at a pixel it gives',
          completion.complete_conditional, wgan, y_noise,
          np.where(keep, y_noise, np.nan), mask, keys)
  _, _, y2 = api.checked_inputs(wgan, y_noise, mask,
                                np.where(keep, np.nan, y_noise))
  assert np.isnan(y2[keep]).all()


def test_mask_values_are_zero_to_one(wgan, damaged):
  _, _, mask = damaged
  refused('mask', r'values in \[0, 1\] .*got 0\.\.255: divide by 255$',
          completion.complete, wgan, **complete_args(damaged,
                                                    mask=mask * 255))
  refused('mask', r'got -1\.\.1$', completion.complete, wgan,
          **complete_args(damaged, mask=2 * mask - 1))
  with_nan = mask.copy()
  with_nan[0, 3, 3] = np.nan
  refused('mask', 'got NaN or inf', completion.complete, wgan,
          **complete_args(damaged, mask=with_nan))
  _, as_bool = api.checked_inputs(wgan, damaged[0], mask == 1)
  np.testing.assert_array_equal(as_bool, mask)  # True = known


@pytest.mark.parametrize('field, value', [
    ('steps', -5), ('steps', 2.5), ('learning_rate', float('nan')),
    ('learning_rate', float('inf')), ('learning_rate', 0.0), ('b1', 1.0),
    ('b2', -0.1), ('window', 4), ('window', 0), ('cg_tol', 0.0),
    ('cg_max_iters', 0), ('z_bound', float('nan')), ('loop', 'gpu'),
    ('blend', 'yes'), ('dtype', 'int8')])
def test_options_out_of_range_are_refused(wgan, damaged, field, value):
  # Each once accepted (a search that did nothing, a NaN latent, a skewed
  # window, no blend) or failed inside JAX. steps=0 stays allowed: ẑ is
  # then the best start (test_dcgan_handle_brings_its_latent_and_prior).
  options = dataclasses.replace(PAPER_OPTIONS, **{field: value})
  refused('options', rf'^options: Options\.{field} ', completion.complete,
          wgan, **complete_args(damaged, options=options))


def test_bad_tuning_fields_and_every_entry_point_check_options(wgan,
                                                               damaged):
  y_noise, _, mask = damaged
  keys = completion.image_keys(SEED, [0, 1])
  spec = completion.LOSSES['paper']
  z_hat = np.zeros((2, Z_DIM), np.float32)
  # The first two once ran; the others were refused as plain ValueErrors.
  for bad in (dict(near_scale=-1.0), dict(locality=float('inf')),
              dict(lr=float('nan')), dict(steps=-1)):
    options = dataclasses.replace(PAPER_OPTIONS,
                                  tuning=completion.Tuning(**bad))
    for run in (
        lambda: completion.complete(wgan, y_noise, mask, keys, spec=spec,
                                    options=options),
        lambda: completion.complete_conditional(wgan, y_noise, y_noise, mask,
                                                keys, options=options),
        lambda: completion.fill_from_latents(wgan, y_noise, mask, z_hat,
                                             keys, spec=spec,
                                             options=options),
        lambda: completion.tune_generators(wgan, y_noise, mask, z_hat, keys,
                                           spec=spec, options=options)):
      refused('options', rf'Tuning\.{next(iter(bad))} ', run)


def test_zero_restarts_is_refused(wgan, damaged):
  y_noise, _, mask = damaged
  options = dataclasses.replace(PAPER_OPTIONS, restarts=0)
  match = r'Options\.restarts 0: expected an int >= 1'
  refused('options', match, completion.complete, wgan,
          **complete_args(damaged, options=options))
  refused('options', match, completion.complete_conditional, wgan, y_noise,
          y_noise, mask, completion.image_keys(SEED, [0, 1]),
          options=options)


def test_the_model_must_be_a_handle(wgan, damaged):
  refused('model', r"the path 'runs/celeba64': use "
          r'jaxinpaint\.load_model\(path\)', completion.complete,
          'runs/celeba64', **complete_args(damaged))
  refused('model', 'got dict', completion.generate, {'generator': None},
          np.zeros((1, Z_DIM), np.float32))
  refused('z', rf'\(N, {Z_DIM}\) latents', completion.generate, wgan,
          np.zeros((1, Z_DIM + 1), np.float32))
  refused('z_hat', 'finite', completion.fill_from_latents, wgan, damaged[0],
          damaged[2], np.full((2, Z_DIM), np.nan, np.float32),
          completion.image_keys(SEED, [0, 1]),
          spec=completion.LOSSES['paper'], options=PAPER_OPTIONS)


def test_a_one_row_mask_is_shared_by_all_images(wgan, damaged):
  # As in the CLI and `inpaint_batches`: (1, H, W, 1) for N images.
  y_noise, _, mask = damaged
  shared = run_complete(wgan, y_noise, mask[:1], [0, 1])
  tiled = run_complete(wgan, y_noise, np.repeat(mask[:1], 2, 0), [0, 1])
  for name in ('z', 'final_loss', 'blended'):
    np.testing.assert_array_equal(shared[name], tiled[name], err_msg=name)
