"""`latent_recovery.measure`: completing G's own samples x* = G(z*), and
experiments/latent_recovery.py's table of it."""
import numpy as np
import pytest

from helpers import load_experiment
from jaxinpaint import completion, models
from jaxinpaint.data import masks
from jaxinpaint.evaluation import latent_recovery
from jaxinpaint.ops import poisson
from jaxinpaint.training import config_schema

RES, N = 16, 2


@pytest.fixture(scope='module')
def model():
  c = config_schema.base_config()
  c.model.resolution, c.model.width, c.model.z_dim = RES, 8, 16
  return models.Model.from_config(c.model, models.random_variables(c.model))


def np_hole_mse(a, b, mask):
  """Mean over images of the hole pixels' squared uint8 differences."""
  u8 = lambda x: np.clip(np.round((np.asarray(x, np.float64) + 1) * 127.5),
                         0, 255)
  hole = np.broadcast_to(mask < 0.5, a.shape)
  d = (u8(a) - u8(b)) ** 2
  return float(np.mean([d[i][hole[i]].mean() for i in range(len(a))]))


def test_recovery_numbers_and_the_harmonic_baseline(model):
  rows = latent_recovery.measure(model, losses=('paper',),
                                 constraints=('box', 'sphere'), n=N, steps=2,
                                 batch_size=N)
  script = load_experiment('latent_recovery')
  assert [(r['constraint'], r['loss']) for r in rows] == [
      ('box', 'paper'), ('sphere', 'paper')]
  mask = masks.make_masks('center', N, RES, RES)
  for r in rows:
    assert all(np.isfinite(r[k]) for k, _ in script.COLUMNS)
    assert r['z_l2'] > 0 and r['g_hole_mse'] > 0  # seeds 0 and 1 differ
    options = completion.Options(z_constraint=r['constraint'])
    z_star, x_star = latent_recovery.targets(model, N, 1, options)
    if r['constraint'] == 'sphere':
      np.testing.assert_allclose(np.linalg.norm(z_star, axis=-1), 4.0,
                                 rtol=1e-5)
    else:
      assert np.abs(z_star).max() <= 1.0
    y = np.where(mask > 0.5, x_star, 0.0).astype(np.float32)
    filled, _ = poisson.harmonic_fill(y, mask)
    np.testing.assert_allclose(r['harmonic_hole_mse'],
                               np_hole_mse(filled, x_star, mask), rtol=1e-6)
  table = script.table_markdown(rows)
  assert table.count('\n') == 3 and '| box ±1 | paper |' in table


def test_zero_steps_from_the_target_itself_recover_it_exactly(model):
  # z* drawn with the search's own seed is its (projected) start: with no
  # step, ẑ = z*, in the box (the WGAN's Gaussian start clipped: exactly)
  # and on the sphere (|z| = 4: to float32 rounding, as the projection's
  # division is compiled in two programs). z·4/|z| rounds a sum of 16
  # squares, a square root, a division and a product: a few ulps (2^-24
  # relative each) per program on any CPU; 4e-6 = 1e-6·|z| ≈ 17·2^-24·|z|,
  # and z_rms is |dz|/√16. A pixel's uint8 level (g_hole_mse: squared
  # levels) moves only where its value lies within that rounding of a step.
  rows = latent_recovery.measure(model, losses=('yeh',),
                                 constraints=('box', 'sphere'), n=N, steps=0,
                                 seed=5, target_seed=5, batch_size=N)
  box, sphere = rows
  assert box['z_l2'] == 0.0 and box['z_rms'] == 0.0, box
  assert sphere['z_l2'] < 4e-6 and sphere['z_rms'] < 1e-6, sphere
  for r in rows:
    assert r['g_hole_mse'] < 0.5, r  # the same image, up to rounding
  # Another target seed: the same zero steps are far from z*.
  far, = latent_recovery.measure(model, losses=('yeh',),
                                 constraints=('sphere',), n=N, steps=0,
                                 seed=5, target_seed=6, batch_size=N)
  assert far['z_l2'] > 1.0


def test_recovery_with_pivotal_tuning_keeps_the_search(model):
  # Tuning after the same search: ẑ and the baseline are the search's, the
  # hole is G_θ(ẑ)'s (the blend of the tuned G).
  common = dict(losses=('paper',), constraints=('box',), n=N, steps=2,
                batch_size=N)
  plain, = latent_recovery.measure(model, **common)
  tuned, = latent_recovery.measure(
      model, tune_steps=2, tune_options=dict(lr=1e-3), **common)
  assert (plain['tune_steps'], tuned['tune_steps']) == (0, 2)
  for key in ('z_l2', 'z_rms', 'final_loss', 'harmonic_hole_mse'):
    assert tuned[key] == plain[key], key
  assert tuned['g_hole_mse'] != plain['g_hole_mse']
  assert np.isfinite(tuned['blend_hole_mse'])
