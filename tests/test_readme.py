"""The README's promises that code can check: its library example runs,
its links resolve, and it stays short."""
import re

import numpy as np

from jaxinpaint.inpaint_job import inputs
from tests.helpers import REPO

README = (REPO / 'README.md').read_text()


def test_the_library_example_runs_as_written():
  code = re.search(r'## From your own JAX code\n\n```python\n(.*?)```',
                   README, re.S).group(1)
  # Two example faces and 2 steps instead of 1000: the code is the README's.
  assert 'steps=1000' in code
  code = code.replace('steps=1000', 'steps=2')
  y = inputs.load_inputs(str(inputs.EXAMPLES / 'faces'), 64, 2)[0].read_all()
  scope = {'y': y}
  exec(compile(code, 'README.md', 'exec'), scope)  # pylint: disable=exec-used
  out = scope['out']
  assert out['blended'].shape == y.shape == out['generated'].shape
  mask = np.asarray(scope['mask'])
  # Known pixels are the input's, to float32 rounding of the blend.
  known = np.broadcast_to(mask, y.shape) == 1
  np.testing.assert_allclose(np.asarray(out['blended'])[known], y[known],
                             atol=1e-5)


def test_links_resolve_and_the_readme_stays_short():
  for target in re.findall(r'\]\(([^)#]+)\)', README):
    if '://' not in target:
      assert (REPO / target).exists(), target
  for page in (REPO / 'docs').glob('*.md'):
    for target in re.findall(r'\]\(([^)#]+)\)', page.read_text()):
      if '://' not in target:
        assert (page.parent / target).exists(), f'{page.name}: {target}'
  assert len(README.splitlines()) <= 200
