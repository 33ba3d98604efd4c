"""experiments/common.py and conditional_figure.py: the tables' methods run
and formatted, the flags' lists, the compile timer, conditional completion.

The table is built from hand-written metrics; conditional completion runs
with a tiny random model, its SSIM checked against scikit-image's.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from skimage.metrics import structural_similarity

from helpers import load_experiment
from jaxinpaint import models
from jaxinpaint.completion import batched
from jaxinpaint.data import masks
from jaxinpaint.errors import InputError
from jaxinpaint.ops import metrics
from jaxinpaint.training import config_schema
from test_baselines import R, damage, ramp

conditional_figure = load_experiment('conditional_figure')
common = conditional_figure.common


def test_run_methods_without_a_model():
  images = ramp(3)
  plan = common.Plan(
      methods=['harmonic'], skipped={}, models={}, images=images,
      names=['a', 'b', 'c'], mask_kinds=['center', 'three_squares'],
      masks=common.table_masks(['center', 'three_squares'], 3, R, 0),
      input_label='ramps')
  done = common.run_methods(plan, common.Search(progress=False),
                            figure_rows=2)
  for kind, mask in plan.masks.items():
    filled, _ = common.baselines.harmonic(damage(images, mask), mask)
    _, want = batched.evaluate(images, filled, mask)
    assert done['metrics'][kind]['harmonic'] == want
    assert done['figure'][kind]['harmonic'].shape == (2, R, R, 3)
    t = done['timing'][kind]['harmonic']
    assert 0 <= t['compile_seconds'] <= t['wall_seconds']


def test_table_markdown_by_hand():
  images = np.zeros((2, R, R, 3), np.float32)
  kind = 'center'
  plan = common.Plan(
      methods=['harmonic', 'telea'], skipped={'biharmonic': 'no skimage'},
      models={}, images=images, names=['a', 'b'], mask_kinds=[kind],
      masks=common.table_masks([kind], 2, R, 0), input_label='faces/')
  by_method = {'harmonic': dict(mse=10.0, psnr=38.13, psnr_mean=38.5,
                                ssim=0.9, hole_mse=40.0),
               'telea': dict(mse=12.0, psnr=37.34, psnr_mean=38.6, ssim=0.8,
                             hole_mse=48.0)}
  settings = dict(steps=3, restarts=1, seed=0, device='cpu', telea_radius=5,
                  figure_rows=8)
  table = common.table_markdown(kind, plan, settings, by_method)
  lines = table.splitlines()
  assert lines[0] == "# Inpainting, mask `center` (cf. the paper's Table 1)"
  assert lines[2] == ('- 2 images from `faces/` (16x16), the first 2 in '
                      'sorted order')
  assert lines[3] == ('- mask `center`: the middle half of each side; 64 hole '
                      'pixels per image on average (25.00% of 16x16)')
  assert ('| harmonic | harmonic fill (Laplace equation, no guide) | '
          '**10.0000** | **38.1300** | 38.5000 | **0.9000** | **40.0000** |'
          in lines)
  assert ('| telea | OpenCV Telea, radius 5 | 12.0000 | 37.3400 | '
          '**38.6000** | 0.8000 | 48.0000 |' in lines)
  assert '- biharmonic: no skimage' in lines
  assert lines[-1] == ('fig_center.png: the first 2 images, columns: masked '
                       'input | harmonic | telea | original.')
  assert 's/image' not in table  # timing has its own file


def test_describe_names_the_loss_weights():
  assert common.describe('paper_wgan', 3) == (
      'ours, our WGAN: α = 0.1, β = 0.9, η = 0.5, prior '
      '-D(G(z)) - Dp(G(z)); Poisson blend')
  assert common.describe('yeh_dcgan', 3).startswith(
      'Yeh et al. [39], DCGAN: α = 1, β = 0, η = 0.003, prior '
      'log(1 - sigmoid(D(G(z))))')


def test_split_list_refuses_unknown_and_repeated_names():
  assert common.split_list(' telea, harmonic ', '--methods',
                           common.METHODS) == ['telea', 'harmonic']
  for arg, message in ((',', 'empty list'), ('nope', "unknown 'nope'"),
                       ('telea,telea', 'lists a name twice')):
    with pytest.raises(InputError, match=message):
      common.split_list(arg, '--methods', common.METHODS)


def test_compile_timer_counts_compilation_and_then_unregisters():
  with common.CompileTimer() as timer:
    jax.jit(lambda x: jnp.sin(x) * 3)(jnp.ones(7)).block_until_ready()
  counted = timer.seconds
  assert counted > 0
  jax.jit(lambda x: jnp.cos(x) * 5)(jnp.ones(9)).block_until_ready()
  assert timer.seconds == counted  # no longer listening


def test_conditional_completion_keeps_y1_and_scores_ssim_against_it():
  c = config_schema.base_config()
  c.model.resolution, c.model.width, c.model.z_dim = 32, 4, 16
  model = models.Model.from_config(c.model, models.random_variables(c.model),
                                   step=1)
  rng = np.random.default_rng(0)
  y1 = np.tanh(rng.normal(0, 0.5, (2, 32, 32, 3))).astype(np.float32)
  reference = np.tanh(rng.normal(0, 0.5, (1, 32, 32, 3))).astype(np.float32)
  # The keep-mask the script builds: all but the eyes and the mouth.
  keep = masks.three_squares_mask(1, 32, 32)
  assert keep.shape == (1, 32, 32, 1) and keep.min() == 0 and keep.max() == 1
  blended, per_image, summary = conditional_figure.conditional_completion(
      model, y1, reference, keep,
      common.Search(steps=2, batch_size=2, progress=False))
  kept = np.broadcast_to(keep > 0.5, y1.shape)
  np.testing.assert_allclose(blended[kept], y1[kept], atol=1e-5)
  ours, theirs = metrics.to_uint8(blended), metrics.to_uint8(y1)
  want = [structural_similarity(
      np.asarray(theirs[i], np.float64), np.asarray(ours[i], np.float64),
      gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
      data_range=255, channel_axis=-1) for i in range(2)]
  np.testing.assert_allclose(per_image['ssim'], want, atol=1e-4)
  assert summary['ssim'] == pytest.approx(np.mean(want), abs=1e-4)
  assert max(want) < 1  # the eyes and mouth did change
