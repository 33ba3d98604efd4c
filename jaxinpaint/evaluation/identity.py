"""Is a completion still the same person? Measured with a model nobody here
trained: dlib's face-recognition ResNet (128-d descriptors; dlib calls two
faces the same person when their descriptors are less than 0.6 apart).

Each completion is compared with the OTHER photos of the same person, which
share no pixels with it, and so is its original (what the measure gives
when nothing was lost). The faces are aligned with the landmarks of the
ORIGINAL, so a hole cannot move the alignment: a completion and its
original are cut out of the same square.

File stems `<identity>_<n>` (both decimal numbers: CelebA's person and
image numbers, as in `../shared/data/celeba64`) say who is who; an image
whose person has no other photo is left out of the numbers (and counted).

The optional `eval` extra (pip install -e '.[eval]'): `dlib-bin` and
`face-recognition-models`, whose package holds the landmark and
recognition models (nothing is downloaded). dlib runs on the CPU, an image
at a time (~70 ms at 64x64 on one core).
"""
import functools
import importlib.util
import os
import re

import numpy as np

from jaxinpaint.errors import InputError

INSTALL = "pip install -e '.[eval]'"
MISSING = ('the identity measure needs dlib and face_recognition_models: '
           + INSTALL)
SAME_PERSON = 0.6  # dlib's threshold on the descriptor distance
# The per-image columns of `identity_distances` (metrics.csv's order).
PER_IMAGE_KEYS = ('identity', 'identity_original', 'face_detected')
# HOG finds faces of ~80 px and up: small images are upscaled (bicubic) to
# about this size, then padded (edge pixels, this fraction of the side on
# each side) because CelebA's tight crops leave the detector no margin.
# 4x and 0.25 find a face in 96% of the first 200 CelebA 64x64 test faces.
_SIZE = 256
_PAD = 0.25
_NAME = re.compile(r'(\d+)_(\d+)')


@functools.cache
def _models():
  """(dlib, HOG detector, 5-point predictor, recognition net), loaded once;
  an InputError saying how to install them when they are missing."""
  try:
    import dlib  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise InputError(MISSING) from e
  # The package's own functions locate its files with pkg_resources, which
  # newer setuptools no longer has: the same files, found without it.
  spec = importlib.util.find_spec('face_recognition_models')
  if spec is None or spec.origin is None:
    raise InputError(MISSING)
  folder = os.path.join(os.path.dirname(spec.origin), 'models')
  return (dlib, dlib.get_frontal_face_detector(),
          dlib.shape_predictor(
              os.path.join(folder, 'shape_predictor_5_face_landmarks.dat')),
          dlib.face_recognition_model_v1(
              os.path.join(folder, 'dlib_face_recognition_resnet_model_v1.dat')))


def available() -> bool:
  """Whether the `eval` extra is installed (its models load)."""
  try:
    _models()
  except InputError:
    return False
  return True


def _layout(h: int, w: int):
  """(upscaling factor, padding in pixels) of an h x w image."""
  scale = max(1, round(_SIZE / max(h, w)))
  return scale, round(_PAD * scale * max(h, w))


def prepare(image) -> np.ndarray:
  """An (H, W, 3) uint8 image as dlib sees it: upscaled to about 256 px
  (an integer factor, bicubic), then padded with its edge pixels."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  image = np.asarray(image)
  if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
    raise ValueError(f'images must be (H, W, 3) uint8, not {image.shape} '
                     f'{image.dtype}')
  h, w = image.shape[:2]
  scale, pad = _layout(h, w)
  big = np.asarray(Image.fromarray(image).resize((w * scale, h * scale),
                                                 Image.BICUBIC))
  return np.ascontiguousarray(np.pad(big, ((pad, pad), (pad, pad), (0, 0)),
                                     mode='edge'))


def face_shape(image):
  """(the 5 landmarks of the largest face HOG finds in an (H, W, 3) uint8
  image, whether it found one), in `prepare(image)`'s pixels; without a
  face, those of the whole image taken as the face's rectangle."""
  dlib, detector, predictor, _ = _models()
  prepared = prepare(image)
  faces = detector(prepared, 0)
  if len(faces):
    rect = max(faces, key=lambda r: r.area())
  else:
    h, w = np.shape(image)[:2]
    scale, pad = _layout(h, w)
    rect = dlib.rectangle(pad, pad, pad + w * scale - 1, pad + h * scale - 1)
  return predictor(prepared, rect), bool(len(faces))


def descriptors(images, align_to=None, return_detected=False):
  """(N, 128) float32 face descriptors of uint8 images (N, H, W, 3).

  Args:
    images: (N, H, W, 3) uint8.
    align_to: (N, H, W, 3) uint8 images whose landmarks align each image
      (a completion's original, so its hole cannot move the alignment), or
      None: each image's own.
    return_detected: also return (N,) bool, whether HOG found a face on
      the image aligned to (else the whole image was the face).
  """
  _, _, _, net = _models()
  images = np.asarray(images)
  align_to = images if align_to is None else np.asarray(align_to)
  if align_to.shape != images.shape:
    raise ValueError(f'align_to {align_to.shape} must have the shape of the '
                     f'images {images.shape}')
  out = np.zeros((len(images), 128), np.float32)
  detected = np.zeros(len(images), bool)
  for i, (image, guide) in enumerate(zip(images, align_to)):
    shape, detected[i] = face_shape(guide)
    out[i] = net.compute_face_descriptor(prepare(image), shape)
  return (out, detected) if return_detected else out


def identity_of(name):
  """The person of a file stem `<identity>_<n>` (both decimal numbers), or
  None for another name."""
  match = _NAME.fullmatch(str(name))
  return match.group(1) if match else None


def groups(names) -> dict:
  """{identity: [indices into names]} of the names `<identity>_<n>`."""
  out = {}
  for i, name in enumerate(names):
    person = identity_of(name)
    if person is not None:
      out.setdefault(person, []).append(i)
  return out


def has_references(names) -> bool:
  """Whether some person among `names` has two photos or more."""
  return any(len(rows) > 1 for rows in groups(names).values())


class References:
  """The reference photos: their names and originals, (N, H, W, 3) uint8
  or a function of row indices returning them (read when first needed);
  each one's descriptor is computed once, with its own alignment."""

  def __init__(self, names, originals):
    self.names = [str(n) for n in names]
    self._read = (originals if callable(originals)
                  else lambda rows: np.asarray(originals)[rows])
    self._groups = groups(self.names)
    self._row = {n: i for i, n in enumerate(self.names)}
    self._known = {}  # {row: descriptor}

  def own(self, names, images) -> np.ndarray:
    """(K, 128): the descriptors of the photos `names`, which are `images`
    (K, H, W, 3) uint8; those computed before are reused."""
    rows = [self._row.get(str(n)) for n in names]
    new = [j for j, i in enumerate(rows) if i not in self._known]
    out = np.zeros((len(rows), 128), np.float32)
    if new:
      out[new] = descriptors(np.asarray(images)[new])
    for j, i in enumerate(rows):
      if j not in new:
        out[j] = self._known[i]
      elif i is not None:
        self._known[i] = out[j]
    return out

  def others(self, name) -> np.ndarray:
    """(K, 128): the descriptors of the other photos of `name`'s person
    (K = 0 for none)."""
    rows = [i for i in self._groups.get(identity_of(name), ())
            if self.names[i] != str(name)]
    new = [i for i in rows if i not in self._known]
    if new:
      for i, d in zip(new, descriptors(self._read(np.array(new)))):
        self._known[i] = d
    return np.array([self._known[i] for i in rows], np.float32).reshape(-1,
                                                                        128)


def identity_distances(completed, originals, names, references=None):
  """Per image: the mean distance of the completion, and of its original,
  to the other photos of the same person.

  Args:
    completed, originals: (N, H, W, 3) uint8; each completion is aligned
      with its original's landmarks.
    names: (N,) file stems `<identity>_<n>`.
    references: `References` holding the other photos (among them, under
      the same names, these originals); None: the originals themselves
      (the other inputs of the same person).

  Returns:
    {'identity': (N,), 'identity_original': (N,)}, float64, NaN where the
    person has no other photo, and 'face_detected': (N,) float64, 1 where
    HOG found a face on the original (0: the whole image was aligned).
  """
  names = [str(n) for n in names]
  if references is None:
    references = References(names, originals)
  ours, detected = descriptors(completed, align_to=originals,
                               return_detected=True)
  # The originals are reference photos too: each one's descriptor once.
  theirs = references.own(names, originals)
  out = {k: np.full(len(names), np.nan) for k in PER_IMAGE_KEYS}
  out['face_detected'] = detected.astype(np.float64)
  for i, name in enumerate(names):
    others = references.others(name)
    if len(others):
      out['identity'][i] = np.linalg.norm(others - ours[i], axis=1).mean()
      out['identity_original'][i] = np.linalg.norm(others - theirs[i],
                                                   axis=1).mean()
  return out


def summarize(per_image) -> dict:
  """The set's numbers from `identity_distances`'s (or metrics.csv's)
  columns: the mean distance and the rate below 0.6 of the completions
  (`identity_mean`, `identity_rate`) and of their originals
  (`identity_original_*`) over the `identity_count` images with other
  photos; `identity_left_out` without; `identity_no_face`: originals where
  HOG found no face (aligned as a whole)."""
  d = np.asarray(per_image['identity'], np.float64)
  o = np.asarray(per_image['identity_original'], np.float64)
  counted = ~np.isnan(d)
  mean = lambda x: float(x[counted].mean()) if counted.any() else None
  return {'identity_mean': mean(d),
          'identity_rate': mean((d < SAME_PERSON).astype(np.float64)),
          'identity_original_mean': mean(o),
          'identity_original_rate': mean((o < SAME_PERSON).astype(np.float64)),
          'identity_count': int(counted.sum()),
          'identity_left_out': int((~counted).sum()),
          'identity_no_face': int(
              (np.asarray(per_image['face_detected']) == 0).sum())}
