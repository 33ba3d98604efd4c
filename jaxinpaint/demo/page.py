"""The demo page's inputs and outputs, as plain functions of arrays and files
(no Gradio): the uploaded image's crop (`load_crop`), the hole the visitor
asked for (`page_mask`, `parts_mask`), the settings (`checked_numbers`) and
the views shown (`to_uint8`, `upscaled`, `with_grey_hole`).

Anything the page cannot use is an `errors.PageError`, one line that the
page shows. The tests call these directly too.
"""
import os
import warnings

import numpy as np
from PIL import Image

from jaxinpaint import data, errors
from jaxinpaint.data import masks
from jaxinpaint.inpaint_job import inputs

DEFAULT_STEPS, DEFAULT_RESTARTS = 100, 1
MAX_STEPS = 2000  # the slider's top; --max-steps lowers or raises it
# Larger uploads are refused before they are decoded (a 10,000 x 10,000
# image is 400 MB of RGBA): far more than a center crop to 64 pixels needs.
MAX_PIXELS = 50_000_000
# The crop is shown, and painted on, at about this size (nearest upscaling).
DISPLAY_SIDE = 256
HOLE_CHOICES = ('painted', 'center', 'three squares', 'random', 'free-form',
                'mask file')
_PRESET_KINDS = {'center': 'center', 'three squares': 'three_squares',
                 'random': 'random', 'free-form': 'free_form'}
PARTS = ('left eye', 'right eye', 'mouth')  # the three squares, in order
FACE_EXAMPLES = sorted((inputs.EXAMPLES / 'faces').glob('*'))
DIGIT_EXAMPLES = sorted((inputs.EXAMPLES / 'digits').glob('*'))
REFERENCE = inputs.EXAMPLES / 'reference.png'


# ----------------------------------------------------------------------------
# The image and its views.


def load_crop(path, resolution: int, what: str = 'the image') -> np.ndarray:
  """An uploaded file → float32 (R, R, 3) in [-1, 1], cropped and resized as
  training data are. errors.PageError (one line) for anything it cannot use."""
  if path is None:
    raise errors.PageError(f'no image: upload {what} or pick an example')
  path = os.fspath(path)
  name = os.path.basename(path)
  too_large = False
  try:
    with warnings.catch_warnings():  # the size is checked below
      warnings.simplefilter('ignore', Image.DecompressionBombWarning)
      (w, h), _ = inputs.inspect_image(path)
  except errors.ImageTooLargeError as e:  # over Pillow's limit
    if e.size is None:
      raise errors.PageError(f'{what} ({name}) is far larger than the '
                             f'{MAX_PIXELS / 1e6:.0f} megapixels this page '
                             'takes: scale it down first') from None
    (w, h), too_large = e.size, True
  except errors.CorruptImageError:
    raise errors.PageError(f'{what} ({name}) is not an image this page can '
                           'read (PNG, JPEG, ...)') from None
  if too_large or w * h > MAX_PIXELS:
    raise errors.PageError(f'{what} ({name}) is {w}x{h} ({w * h / 1e6:.0f} '
                           f'megapixels); this page takes up to '
                           f'{MAX_PIXELS / 1e6:.0f}: scale it down first')
  try:
    images, _ = data.load_images([path], resolution)
  except errors.ImageRangeError as e:  # 16-bit or float values out of range
    raise errors.PageError(f'{what} ({name}) {e.detail}') from None
  except (errors.CorruptImageError, ValueError, OSError) as e:
    raise errors.PageError(f'cannot decode {what} ({name}): it may be '
                           'truncated or damaged '
                           f'({str(e).splitlines()[0][-120:]})') from None
  return images[0]


def to_uint8(image) -> np.ndarray:
  """[-1, 1] float → uint8, the rounding of every PNG jaxinpaint writes."""
  from jaxinpaint.ops import metrics  # pylint: disable=g-import-not-at-top
  return metrics.to_uint8(np.asarray(image, np.float32))


def display_factor(resolution: int) -> int:
  return max(1, DISPLAY_SIDE // resolution)


def upscaled(image_uint8, factor: int) -> np.ndarray:
  """Nearest upscaling: each model pixel a visible square."""
  return np.asarray(image_uint8).repeat(factor, 0).repeat(factor, 1)


def with_grey_hole(image, mask) -> np.ndarray:
  """uint8 view of the input the model sees: holes grey."""
  return to_uint8(np.where(mask > 0.5, image, 0.0))


# ----------------------------------------------------------------------------
# The hole.


def painted_mask(layers, resolution: int) -> np.ndarray:
  """(R, R, 1) mask, 0 where any brush layer covers any part of a model
  pixel. layers: RGBA (or RGB) arrays of the editor, any size (they are
  scaled to R x R, a box filter, so a brush touching a pixel makes it a
  hole)."""
  covered = np.zeros((resolution, resolution), bool)
  for layer in layers or ():
    layer = np.asarray(layer)
    if layer.ndim != 3 or layer.shape[-1] not in (2, 4):
      continue  # no alpha: not a brush layer
    # Float ('F'): a box average of a faint edge stays above 0.
    alpha = Image.fromarray(layer[..., -1].astype(np.float32))
    small = np.asarray(alpha.resize((resolution, resolution),
                                    Image.Resampling.BOX))
    covered |= small > 0
  return (~covered).astype(np.float32)[..., None]


def mask_file(path, resolution: int, image_path) -> np.ndarray:
  """A mask file (white = known): R x R as is, or of the image's own size,
  then cropped and resized with it (the same geometry as the image)."""
  if path is None:
    raise errors.PageError('hole "mask file": upload a mask image (white = '
                           'known, black = hole)')
  name = os.path.basename(os.fspath(path))
  try:
    (w, h), _ = inputs.inspect_image(path)
  except errors.ImageTooLargeError as e:
    raise errors.PageError(f'the mask file ({name}) {e.detail}') from None
  except errors.CorruptImageError:
    raise errors.PageError(f'the mask file ({name}) is not an image') from None
  if (w, h) == (resolution, resolution):
    try:
      return masks.load_mask(os.fspath(path), resolution, resolution)[0]
    except errors.ImageRangeError as e:
      raise errors.PageError(f'the mask file ({name}) {e.detail}') from None
    except ValueError as e:
      raise errors.PageError(str(e).splitlines()[0]) from None
  size = None
  if image_path is not None:
    size, _ = inputs.inspect_image(image_path)
  if (w, h) != size:
    raise errors.PageError(f'the mask file ({name}) is {w}x{h}: expected the '
                           f"image's size ({size[0]}x{size[1]}) or the "
                           f"model's ({resolution}x{resolution})" if size else
                           f'the mask file ({name}) is {w}x{h}: expected '
                           f'{resolution}x{resolution}')
  grey = load_crop(path, resolution, 'the mask file').mean(axis=-1)
  return (grey >= 0.0).astype(np.float32)[..., None]  # >= half of full scale


def page_mask(hole: str, resolution: int, *, layers=None, mask_path=None,
              image_path=None, seed: int = 0) -> np.ndarray:
  """The (R, R, 1) mask (1 = known) the page's hole settings give;
  errors.PageError for a mask without a hole or without a known pixel."""
  if hole == 'painted':
    mask = painted_mask(layers, resolution)
    if mask.all():
      raise errors.PageError('no hole painted: paint over what should go with '
                             'the brush, or pick a preset hole')
  elif hole == 'mask file':
    mask = mask_file(mask_path, resolution, image_path)
  elif hole in _PRESET_KINDS:
    mask = masks.make_masks(_PRESET_KINDS[hole], 1, resolution, resolution,
                            seed)[0]
  else:
    raise errors.PageError(f'hole {hole!r}: expected one of '
                           f'{", ".join(HOLE_CHOICES)}')
  if mask.all():
    raise errors.PageError('the mask has no hole: nothing to complete')
  if not mask.any():
    raise errors.PageError('the mask covers the whole image: nothing is left '
                           'to complete it from')
  return mask


def parts_mask(parts, resolution: int) -> np.ndarray:
  """Conditional completion's mask: 1 = keep from the image, 0 = the parts
  (squares of `masks.three_squares_coordinates`) taken from the reference."""
  unknown = [p for p in parts if p not in PARTS]
  if unknown or not parts:
    raise errors.PageError(f'parts: pick one or more of {", ".join(PARTS)}')
  keep = np.ones((resolution, resolution, 1), np.float32)
  boxes = masks.three_squares_coordinates(resolution, resolution)
  for part in parts:
    r0, r1, c0, c1 = boxes[PARTS.index(part)]
    keep[r0:r1, c0:c1] = 0.0
  return keep


# ----------------------------------------------------------------------------
# The settings.


def checked_numbers(steps, restarts, seed, max_steps):
  """(steps, restarts, seed) as ints, from the page's number fields (floats,
  or None when emptied); errors.PageError for one out of range or not whole."""
  values = {}
  for name, value, low, high in (('steps', steps, 1, max_steps),
                                 ('restarts', restarts, 1, 16),
                                 ('seed', seed, 0, inputs.SEED_LIMIT - 1)):
    if value is None or not low <= value <= high or value != int(value):
      raise errors.PageError(f'{name}: expected a whole number from {low} to '
                             f'{high}, got {value}')
    values[name] = int(value)
  return values['steps'], values['restarts'], values['seed']
