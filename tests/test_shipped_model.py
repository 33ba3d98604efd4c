"""The model shipped inside the package: loads, is sane, and completes the
example faces out of the box (no ../shared, no network)."""
import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from helpers import REPO, run
from jaxinpaint import checkpoint, data, inpaint_cli, models


def test_shipped_weights_load_and_generate_face_range_images():
  config, variables, step = checkpoint.load_inference_variables(
      inpaint_cli.DEFAULT_CHECKPOINT)
  assert step > 0
  assert config.model.resolution == 64 and config.model.arch == 'wgan'
  nets = models.build_models(config.model)
  for name, net in nets.items():
    x = (jnp.zeros((1, config.model.z_dim)) if name == 'generator'
         else jnp.zeros((1, 64, 64, 3)))
    expected = jax.eval_shape(net.init, jax.random.key(0), x)
    assert (jax.tree.map(lambda a: (a.shape, a.dtype), expected)
            == jax.tree.map(lambda a: (a.shape, a.dtype), variables[name]))
    assert all(bool(jnp.isfinite(a).all())
               for a in jax.tree.leaves(variables[name]))
  z = jax.random.normal(jax.random.key(0), (16, config.model.z_dim))
  samples = np.asarray(nets['generator'].apply(variables['generator'], z))
  faces, _ = data.load_images(REPO / 'examples' / 'faces', 64)
  assert samples.shape == (16, 64, 64, 3)
  assert np.abs(samples).max() <= 1.0
  # Not a constant image, and a colour balance near real faces'.
  assert samples.std(axis=(1, 2, 3)).min() > 0.05
  np.testing.assert_allclose(samples.mean((0, 1, 2)), faces.mean((0, 1, 2)),
                             atol=0.35)


def test_inpaint_runs_out_of_the_box(tmp_path):
  out = tmp_path / 'inpainted'
  result = run(['inpaint.py', '--limit', '2', '--steps', '5', '--out',
                str(out)])
  assert result.returncode == 0, result.stderr[-3000:]
  grid = Image.open(out / 'grid.png')
  assert grid.width > 3 * 64 and grid.height > 2 * 64
  assert len(list(out.glob('*.png'))) == 3  # two faces and the grid
  assert str(out) in result.stdout
