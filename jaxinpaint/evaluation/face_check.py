"""An independent semantic check of completions: does a face detector find
a face?

OpenCV's Haar frontal-face cascade was trained apart from our networks, so
a completion that only fools our critics does not pass it. OpenCV is an
optional dependency (pip install "opencv-python-headless<5": 5.0 no longer
ships the cascades), imported when the check runs.
"""
import numpy as np

from jaxinpaint.errors import InputError
from jaxinpaint.ops import metrics


def haar_face_hits(images, pad: int = 16, size: int = 192) -> np.ndarray:
  """(N,) bool: the Haar frontal-face cascade finds a face in each image
  (N, R, R, 3) in [-1, 1].

  CelebA's tight crops leave the cascade no margin, so each image is first
  padded by `pad` pixels (replicated) and scaled to `size`; this finds a
  face in 97% of the first 64 CelebA 64x64 test faces (31-39% unpadded).
  Needs OpenCV's bundled cascades (`cv2.data.haarcascades`:
  opencv-python(-headless) 4.x).
  """
  import cv2  # pylint: disable=g-import-not-at-top
  cascades = getattr(getattr(cv2, 'data', None), 'haarcascades', None)
  if not hasattr(cv2, 'CascadeClassifier') or not cascades:
    raise InputError(f'OpenCV {cv2.__version__} has no Haar cascades; the '
                     'face check needs opencv-python-headless 4.x')
  detector = cv2.CascadeClassifier(cascades +
                                   'haarcascade_frontalface_default.xml')
  hits = []
  for image in metrics.to_uint8(images):
    image = cv2.copyMakeBorder(image, pad, pad, pad, pad,
                               cv2.BORDER_REPLICATE)
    grey = cv2.cvtColor(cv2.resize(image, (size, size),
                                   interpolation=cv2.INTER_CUBIC),
                        cv2.COLOR_RGB2GRAY)
    faces = detector.detectMultiScale(grey, scaleFactor=1.05, minNeighbors=5,
                                      minSize=(size // 4, size // 4))
    hits.append(len(faces) > 0)
  return np.array(hits, bool)
