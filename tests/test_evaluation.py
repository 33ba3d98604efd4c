"""jaxinpaint.evaluation: the tables' methods, run and formatted.

The classical methods on hand-made images, against closed forms (a linear
ramp is harmonic and biharmonic, so both fills reproduce it), the table
built from hand-written metrics, and conditional completion with a tiny
random model, its SSIM against scikit-image's.
"""
import numpy as np
import pytest
from skimage.metrics import structural_similarity

from jaxinpaint import config as config_lib, evaluation, masks, metrics
from jaxinpaint import inputs, models, pipeline

R = 16


def _ramp(n=2):
  """(n, R, R, 3) images that are linear in x and y: harmonic and
  biharmonic, so a fill of any hole must give them back."""
  yy, xx = np.mgrid[:R, :R].astype(np.float32) / (R - 1)
  img = np.stack([xx - 0.5, 0.8 * yy - 0.4, 0.5 * (xx + yy) - 0.5], -1)
  return np.stack([img * (k + 1) / n for k in range(n)]).astype(np.float32)


def _damaged(images, mask):
  return np.where(mask > 0.5, images, np.float32(0))


def test_classical_fills_reproduce_a_linear_ramp():
  images = _ramp()
  mask = masks.make_masks('center', 1, R, R)
  filled, extra = evaluation.harmonic(_damaged(images, mask), mask)
  np.testing.assert_allclose(filled, images, atol=2e-4)
  assert extra['cg_iterations_max'] > 0
  skimage = pytest.importorskip('skimage.restoration',
                                reason=evaluation.BASELINES_HINT)
  filled, _ = evaluation.biharmonic(skimage.inpaint_biharmonic,
                                    _damaged(images, mask), mask)
  np.testing.assert_allclose(filled, images, atol=1e-4)


def test_telea_keeps_known_pixels_and_fills_a_constant():
  cv2 = pytest.importorskip('cv2', reason=evaluation.BASELINES_HINT)
  images = np.full((2, R, R, 3), 0.2, np.float32)
  images[1] = -0.6
  mask = masks.make_masks('center', 1, R, R)
  filled, _ = evaluation.telea(cv2, _damaged(images, mask), mask, radius=3)
  # uint8 round trip: 0.2 -> round(1.2 * 127.5) = 153 -> 153 / 127.5 - 1.
  want = np.round((images + 1) * 127.5) / 127.5 - 1
  known = np.broadcast_to(mask > 0.5, images.shape)
  np.testing.assert_allclose(filled[known], want[known], atol=1e-6)
  # In the hole Telea's gradient-weighted average of a constant is that
  # constant, to within the rounding of its uint8 steps (2 levels here).
  np.testing.assert_allclose(filled, want, atol=2.5 / 127.5)
  assert np.abs(filled - want).mean() < 0.5 / 127.5


def test_holes_broadcasts_one_mask():
  mask = masks.make_masks('center', 1, R, R)
  holes = evaluation.holes(mask, 3)
  assert holes.shape == (3, R, R) and holes.sum() == 3 * (R // 2) ** 2


def test_run_methods_without_a_model():
  images = _ramp(3)
  plan = evaluation.Plan(
      methods=['harmonic'], skipped={}, models={}, mods={}, images=images,
      names=['a', 'b', 'c'], mask_kinds=['center', 'three_squares'],
      masks=evaluation.table_masks(['center', 'three_squares'], 3, R, 0),
      input_label='ramps')
  done = evaluation.run_methods(plan, evaluation.Search(progress=False),
                                figure_rows=2)
  for kind, mask in plan.masks.items():
    filled, _ = evaluation.harmonic(_damaged(images, mask), mask)
    _, want = pipeline.evaluate(images, filled, mask)
    assert done['metrics'][kind]['harmonic'] == want
    assert done['figure'][kind]['harmonic'].shape == (2, R, R, 3)
    t = done['timing'][kind]['harmonic']
    assert 0 <= t['compile_seconds'] <= t['wall_seconds']


def test_table_markdown_by_hand():
  images = np.zeros((2, R, R, 3), np.float32)
  kind = 'center'
  plan = evaluation.Plan(
      methods=['harmonic', 'telea'], skipped={'biharmonic': 'no skimage'},
      models={}, mods={}, images=images, names=['a', 'b'], mask_kinds=[kind],
      masks=evaluation.table_masks([kind], 2, R, 0), input_label='faces/')
  metrics = {'harmonic': dict(mse=10.0, psnr=38.13, psnr_mean=38.5,
                              ssim=0.9, hole_mse=40.0),
             'telea': dict(mse=12.0, psnr=37.34, psnr_mean=38.6, ssim=0.8,
                           hole_mse=48.0)}
  settings = dict(steps=3, restarts=1, seed=0, device='cpu', telea_radius=5,
                  figure_rows=8)
  table = evaluation.table_markdown(kind, plan, settings, metrics)
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
  assert evaluation.describe('paper_wgan', 3) == (
      'ours, our WGAN: α = 0.1, β = 0.9, η = 0.5, prior '
      '-D(G(z)) - Dp(G(z)); Poisson blend')
  assert evaluation.describe('yeh_dcgan', 3).startswith(
      'Yeh et al. [39], DCGAN: α = 1, β = 0, η = 0.003, prior '
      'log(1 - sigmoid(D(G(z))))')


def test_split_list_refuses_unknown_and_repeated_names():
  assert evaluation.split_list(' telea, harmonic ', '--methods',
                               evaluation.METHODS) == ['telea', 'harmonic']
  for arg, message in ((',', 'empty list'), ('nope', "unknown 'nope'"),
                       ('telea,telea', 'lists a name twice')):
    with pytest.raises(evaluation.InputError, match=message):
      evaluation.split_list(arg, '--methods', evaluation.METHODS)


def test_conditional_completion_keeps_y1_and_scores_ssim_against_it():
  c = config_lib.base_config()
  c.model.resolution, c.model.width, c.model.z_dim = 32, 4, 16
  model = evaluation.Model('wgan', None, 'random', c, models.Model.from_config(
      c.model, models.random_variables(c.model), step=1))
  rng = np.random.default_rng(0)
  y1 = np.tanh(rng.normal(0, 0.5, (2, 32, 32, 3))).astype(np.float32)
  reference = np.tanh(rng.normal(0, 0.5, (1, 32, 32, 3))).astype(np.float32)
  keep = evaluation.eyes_mouth_keep_mask(32, 32)
  assert keep.shape == (1, 32, 32, 1) and keep.min() == 0 and keep.max() == 1
  blended, per_image, summary = evaluation.conditional_completion(
      model, y1, reference, keep,
      evaluation.Search(steps=2, batch_size=2, progress=False))
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


def test_the_haar_face_check_finds_upright_faces_only():
  # The 16 shipped example faces (CelebA crops): the cascade finds 15; on
  # flat and noise images none; turned upside down, far fewer (a frontal
  # detector), so it checks faces, not any texture.
  faces = inputs.load_inputs(str(inputs.EXAMPLES / 'faces'), 64, None)[0]
  hits = evaluation.haar_face_hits(faces)
  assert hits.shape == (16,) and hits.sum() >= 14
  rng = np.random.default_rng(0)
  others = np.concatenate([np.zeros((2, 64, 64, 3), np.float32),
                           rng.uniform(-1, 1, (2, 64, 64, 3)).astype(np.float32)])
  assert not evaluation.haar_face_hits(others).any()
  assert evaluation.haar_face_hits(faces[:, ::-1]).sum() <= 8
