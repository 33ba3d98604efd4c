"""jaxinpaint.face_check: OpenCV's Haar face detector as an independent
check of completions."""
import numpy as np
import pytest

from jaxinpaint.evaluation import face_check
from jaxinpaint.inpaint_job import inputs

pytest.importorskip('cv2', reason='pip install -e .[baselines]')


def test_the_haar_face_check_finds_upright_faces_only():
  # The 16 shipped example faces (CelebA crops): the cascade finds 15; on
  # flat and noise images none; turned upside down, far fewer (a frontal
  # detector), so it checks faces, not any texture.
  faces = inputs.load_inputs(str(inputs.EXAMPLES / 'faces'), 64)[0].read_all()
  hits = face_check.haar_face_hits(faces)
  assert hits.shape == (16,) and hits.sum() >= 14
  rng = np.random.default_rng(0)
  others = np.concatenate([np.zeros((2, 64, 64, 3), np.float32),
                           rng.uniform(-1, 1, (2, 64, 64, 3)).astype(np.float32)])
  assert not face_check.haar_face_hits(others).any()
  assert face_check.haar_face_hits(faces[:, ::-1]).sum() <= 8
