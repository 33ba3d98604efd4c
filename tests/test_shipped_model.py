"""The model shipped inside the package: loads, is sane, and completes the
example faces out of the box (no ../shared, no network)."""
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from helpers import REPO, run
from jaxinpaint import data, models
from jaxinpaint.inpaint_job import inputs
from jaxinpaint.models import checkpoint, loading

ASSETS = loading.ASSETS
EXAMPLES = inputs.EXAMPLES
# name -> (arch, resolution, the folder of real images its samples resemble)
SHIPPED = {
    'celeba64': ('wgan', 64, EXAMPLES / 'faces'),
    'celeba64_cpu': ('wgan', 64, EXAMPLES / 'faces'),
    'celeba64_dcgan': ('dcgan', 64, EXAMPLES / 'faces'),
    'cifar32': ('wgan', 32, None),
    'svhn32': ('wgan', 32, EXAMPLES / 'digits'),
    'svhn32_dcgan': ('dcgan', 32, EXAMPLES / 'digits'),
}


def test_every_shipped_model_is_tested_and_named_by_the_cli():
  assert loading.shipped_model_names() == sorted(SHIPPED)
  for name in SHIPPED:  # --checkpoint NAME finds it
    assert loading.find_model(name)[0] == ASSETS / name


@pytest.mark.parametrize('name', sorted(SHIPPED))
def test_shipped_weights_load_and_generate_image_range_outputs(name):
  arch, resolution, real_images = SHIPPED[name]
  config, variables, step = checkpoint.load_inference_variables(ASSETS / name)
  assert step > 0
  assert (config.model.arch, config.model.resolution) == (arch, resolution)
  nets = models.build_models(config.model)
  for net_name, net in nets.items():
    x = (jnp.zeros((1, config.model.z_dim)) if net_name == 'generator'
         else jnp.zeros((1, resolution, resolution, 3)))
    expected = jax.eval_shape(net.init, jax.random.key(0), x)
    assert (jax.tree.map(lambda a: (a.shape, a.dtype), expected)
            == jax.tree.map(lambda a: (a.shape, a.dtype), variables[net_name]))
    assert all(bool(jnp.isfinite(a).all())
               for a in jax.tree.leaves(variables[net_name]))
  z = models.sample_latent(jax.random.key(0), (16, config.model.z_dim), arch)
  samples = np.asarray(nets['generator'].apply(variables['generator'], z))
  assert samples.shape == (16, resolution, resolution, 3)
  assert np.abs(samples).max() <= 1.0
  # Not a constant image, and (faces) a colour balance near real faces'.
  assert samples.std(axis=(1, 2, 3)).min() > 0.05
  if real_images is not None:
    reals, _ = data.load_images(real_images, resolution)
    np.testing.assert_allclose(samples.mean((0, 1, 2)),
                               reals.mean((0, 1, 2)), atol=0.35)


@pytest.mark.parametrize('flags,size', [
    ([], 64),  # the default: the example faces, the CelebA model
    (['--checkpoint', 'svhn32', '--input', str(EXAMPLES / 'digits')], 32),
])
def test_inpaint_runs_out_of_the_box(tmp_path, flags, size):
  out = tmp_path / 'inpainted'
  result = run(['inpaint.py', *flags, '--limit', '2', '--steps', '5', '--out',
                str(out)])
  assert result.returncode == 0, result.stderr[-3000:]
  grid = Image.open(out / 'grid.png')
  assert grid.width > 3 * size and grid.height > 2 * size
  assert len(list(out.glob('*.png'))) == 3  # two faces and the grid
  assert str(out) in result.stdout


def test_the_default_input_is_found_from_any_directory(tmp_path):
  """The installed command's defaults (model, example faces) resolve against
  the package, not the current directory."""
  env = dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS='cpu')
  result = subprocess.run(
      [sys.executable, '-c', 'from jaxinpaint.cli.inpaint import main; '
       'main()', '--limit', '1', '--steps', '2'],
      cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  first = sorted((EXAMPLES / 'faces').glob('*.jpg'))[0].stem
  out = tmp_path / 'inpainted'  # the default --out, relative to the cwd
  assert sorted(p.name for p in out.glob('*.png')) == sorted(
      [f'{first}.png', 'grid.png'])
  with Image.open(out / f'{first}.png') as img:
    assert img.size == (64, 64)
