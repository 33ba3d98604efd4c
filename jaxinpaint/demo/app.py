"""jaxinpaint-demo: complete images in a browser page (Gradio).

  pip install -e '.[demo]' && jaxinpaint-demo      # open http://127.0.0.1:7860

Upload a photo or pick a shipped example; it is center-cropped and resized
exactly as training data are (`data.load_images`), and the page shows that
crop. Paint the hole on it with the brush, or pick a preset or a mask file
(white = known); the search then streams G(ẑ) and the blended result every
few steps. A second tab is the paper's conditional completion (Fig. 12):
parts of a face taken from a reference face. One completion runs at a time
(Gradio's queue; later visitors see their place in it).

The page's work is done by the plain functions here (`load_crop`,
`page_mask`, `watch_completion`, ...), which the tests call directly too;
`build_app` only wires them to Gradio components.
"""
import argparse
import dataclasses
import functools
import os
import queue
import threading
import time
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from jaxinpaint import data, errors
from jaxinpaint.data import masks
from jaxinpaint.inpaint_job import inputs
from jaxinpaint.models import loading

# accelerator; on a CPU its 16x cheaper preview, so that the page's default
# settings finish in seconds (the page says so).
DEFAULT_MODEL, CPU_MODEL = 'celeba64', 'celeba64_cpu'
DEFAULT_STEPS, DEFAULT_RESTARTS, PREVIEW_EVERY = 100, 1, 10
# The time the defaults take on a 2-core CPU with CPU_MODEL and with
# DEFAULT_MODEL, once compiled (12.8 s and 37.6 s measured with other jobs
# loading the machine; shown on the page).
CPU_DEFAULT_SECONDS, DEFAULT_MODEL_CPU_SECONDS = 13, 38
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
# Inputs: image, crop, hole.


def load_crop(path, resolution: int, what: str = 'the image') -> np.ndarray:
  """An uploaded file → float32 (R, R, 3) in [-1, 1], cropped and resized as
  training data are. errors.PageError (one line) for anything it cannot use."""
  if path is None:
    raise errors.PageError(f'no image: upload {what} or pick an example')
  path = os.fspath(path)
  name = os.path.basename(path)
  try:
    with warnings.catch_warnings():  # the size is checked below
      warnings.simplefilter('ignore', Image.DecompressionBombWarning)
      (w, h), _ = inputs.inspect_image(path)
  except errors.CorruptImageError:
    raise errors.PageError(f'{what} ({name}) is not an image this page can read '
                    '(PNG, JPEG, ...)') from None
  except Image.DecompressionBombError:
    raise errors.PageError(f'{what} ({name}) is far larger than the '
                    f'{MAX_PIXELS / 1e6:.0f} megapixels this page takes: '
                    'scale it down first') from None
  if w * h > MAX_PIXELS:
    raise errors.PageError(f'{what} ({name}) is {w}x{h} ({w * h / 1e6:.0f} '
                    f'megapixels); this page takes up to '
                    f'{MAX_PIXELS / 1e6:.0f}: scale it down first')
  try:
    images, _ = data.load_images([path], resolution)
  except (errors.CorruptImageError, ValueError, OSError) as e:
    raise errors.PageError(f'cannot decode {what} ({name}): it may be truncated or '
                    f'damaged ({str(e).splitlines()[0][-120:]})') from None
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
    raise errors.PageError('hole "mask file": upload a mask image (white = known, '
                    'black = hole)')
  name = os.path.basename(os.fspath(path))
  try:
    (w, h), _ = inputs.inspect_image(path)
  except errors.CorruptImageError:
    raise errors.PageError(f'the mask file ({name}) is not an image') from None
  if (w, h) == (resolution, resolution):
    try:
      return masks.load_mask(os.fspath(path), resolution, resolution)[0]
    except ValueError as e:
      raise errors.PageError(str(e).splitlines()[0]) from None
  size = None
  if image_path is not None:
    size, _ = inputs.inspect_image(image_path)
  if (w, h) != size:
    raise errors.PageError(f'the mask file ({name}) is {w}x{h}: expected the '
                    f"image's size ({size[0]}x{size[1]}) or the model's "
                    f'({resolution}x{resolution})' if size else
                    f'the mask file ({name}) is {w}x{h}: expected '
                    f'{resolution}x{resolution}')
  grey = load_crop(path, resolution, 'the mask file').mean(axis=-1)
  return (grey >= 0.0).astype(np.float32)[..., None]  # >= half of full scale


def page_mask(hole: str, resolution: int, *, layers=None, mask_path=None,
              image_path=None, seed: int = 0) -> np.ndarray:
  """The (R, R, 1) mask (1 = known) the page's hole settings give; errors.PageError
  for a mask without a hole or without a known pixel."""
  if hole == 'painted':
    mask = painted_mask(layers, resolution)
    if mask.all():
      raise errors.PageError('no hole painted: paint over what should go with the '
                      'brush, or pick a preset hole')
  elif hole == 'mask file':
    mask = mask_file(mask_path, resolution, image_path)
  elif hole in _PRESET_KINDS:
    mask = masks.make_masks(_PRESET_KINDS[hole], 1, resolution, resolution,
                            seed)[0]
  else:
    raise errors.PageError(f'hole {hole!r}: expected one of {", ".join(HOLE_CHOICES)}')
  if mask.all():
    raise errors.PageError('the mask has no hole: nothing to complete')
  if not mask.any():
    raise errors.PageError('the mask covers the whole image: nothing is left to '
                    'complete it from')
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
# Models and the search.


class Models:
  """Loaded models by name (a shipped name or a path), loaded once."""

  def __init__(self):
    self._models, self._lock = {}, threading.Lock()

  def get(self, name):
    with self._lock:
      if name not in self._models:
        try:
          self._models[name] = loading.load_model(name)
        except errors.ArgumentError as e:
          raise errors.PageError(e.detail) from None
      return self._models[name]


@dataclasses.dataclass
class Update:
  """One view of a running (or finished) search, for the page."""
  done: int  # Adam steps finished
  steps: int
  generated: np.ndarray  # G(ẑ) uint8 (R, R, 3), the best restart now
  overlay: np.ndarray  # M·y + (1 − M)·G(ẑ), uint8
  blended: np.ndarray  # Poisson-blended, uint8
  losses: np.ndarray  # the best restart's loss per step so far
  final: bool = False


@functools.cache
def _blend_jit():
  import jax  # pylint: disable=g-import-not-at-top
  from jaxinpaint.ops import poisson  # pylint: disable=g-import-not-at-top
  return jax.jit(lambda y, guide, mask: poisson.poisson_blend(y, guide,
                                                               mask)[0])


def _preview(model, y, mask, z):
  """(G(z), overlay, blended) float of the latents z (1, z_dim)."""
  from jaxinpaint import completion  # pylint: disable=g-import-not-at-top
  generated = np.asarray(completion.generate(model, z))
  overlay = np.where(mask > 0.5, y, generated)
  return generated, overlay, np.asarray(_blend_jit()(y, generated, mask))


def watch_completion(model, image, mask, *, loss: str = 'paper', steps: int,
                     restarts: int, seed: int, every: int = PREVIEW_EVERY,
                     reference=None, cancel: threading.Event | None = None):
  """Runs the search of one image in a thread; yields an `Update` every
  `every` steps (G(ẑ) of the restart with the lowest loss so far, its
  overlay and blend) and a final one: `complete`'s own result.

  image, mask: (R, R, 3) in [-1, 1], (R, R, 1) 1 = known. With `reference`
  (R, R, 3): conditional completion, mask 1 = keep from `image`.
  """
  # pylint: disable-next=g-import-not-at-top
  from jaxinpaint import completion
  y, m = image[None], mask[None]
  options = completion.Options(steps=steps, restarts=restarts)
  keys = completion.image_keys(seed, [0])
  events = queue.Queue()
  trace = []
  cancel = cancel or threading.Event()

  def on_steps(done, z, losses):
    if cancel.is_set():
      raise errors.Cancelled()
    losses = np.asarray(losses)[0]
    best = int(np.argmin(losses))
    trace.append((done, float(losses[best])))
    events.put(('step', done, np.asarray(z)[0, best][None]))

  def work():
    try:
      if reference is None:
        out = completion.complete(model, y, m, keys,
                                  spec=completion.get_loss(loss),
                                  options=options, on_steps=on_steps,
                                  every=every)
      else:
        out = completion.complete_conditional(
            model, y, reference[None], m, keys, options=options,
            on_steps=on_steps, every=every)
      events.put(('done', {k: np.asarray(v) for k, v in out.items()
                           if v is not None}))
    except errors.Cancelled:
      events.put(('cancelled', None))
    except Exception as e:  # pylint: disable=broad-except
      events.put(('error', e))

  thread = threading.Thread(target=work, daemon=True, name='completion')
  thread.start()
  try:
    while True:
      kind, *payload = events.get()
      if kind == 'step':
        done, z = payload
        if done == steps:
          continue  # the final update follows, with the search's own ẑ
        views = _preview(model, y, m, z)
        yield Update(done, steps, *(to_uint8(v[0]) for v in views),
                     losses=_trace_so_far(trace, done))
      elif kind == 'done':
        out = payload[0]
        yield Update(steps, steps, to_uint8(out['generated'][0]),
                     to_uint8(out['overlay'][0]), to_uint8(out['blended'][0]),
                     losses=np.asarray(out['loss_trace'][0], np.float64),
                     final=True)
        return
      elif kind == 'error':
        raise payload[0]
      else:
        return
  finally:
    cancel.set()  # a closed generator (the visitor left) stops the search


def _trace_so_far(trace, done):
  return np.asarray([l for s, l in trace if s <= done], np.float64)


# ----------------------------------------------------------------------------
# The page.


def _png_file(image_uint8, folder: Path, name: str) -> str:
  folder.mkdir(parents=True, exist_ok=True)
  path = folder / f'{name}.png'
  Image.fromarray(image_uint8).save(path, format='PNG')
  return str(path)


def build_app(default_model: str, max_steps: int = MAX_STEPS):
  """The Gradio Blocks of the page (not launched)."""
  import gradio as gr  # pylint: disable=g-import-not-at-top
  import pandas as pd  # pylint: disable=g-import-not-at-top  (Gradio's own)
  import tempfile  # pylint: disable=g-import-not-at-top

  models = Models()
  names = loading.shipped_model_names()
  if default_model not in names:
    names = [default_model] + names
  faces = [n for n in names if n.startswith('celeba')] or [default_model]
  downloads = Path(tempfile.mkdtemp(prefix='jaxinpaint-demo-'))
  steps_default = min(DEFAULT_STEPS, max_steps)

  def fail(e):
    raise gr.Error(str(e), duration=None) from None

  def resolution_of(name):
    try:
      _, config = loading.find_model(name)
    except errors.ArgumentError as e:
      fail(e.detail)
    return int(config.model.resolution)

  def prepare(path, model_name):
    """The crop the model sees, upscaled, as the editor's background."""
    if path is None:
      return None, 'Upload an image or pick an example.'
    r = resolution_of(model_name)
    try:
      crop = upscaled(to_uint8(load_crop(path, r)), display_factor(r))
    except errors.PageError as e:
      fail(e)
    return ({'background': crop, 'layers': [], 'composite': crop},
            f'The model sees this {r}x{r} crop (shown {crop.shape[0]} px). '
            'Paint the hole on it, or pick a preset.')

  def loss_frame(losses):
    return pd.DataFrame({'step': np.arange(1, len(losses) + 1),
                         'loss': np.asarray(losses, np.float64)})

  def run(path, model_name, editor, hole, mask_path, loss, steps, restarts,
          seed, progress=gr.Progress()):
    try:
      model = models.get(model_name)
      r = model.resolution
      image = load_crop(path, r)
      layers = (editor or {}).get('layers')
      mask = page_mask(hole, r, layers=layers, mask_path=mask_path,
                       image_path=path, seed=int(seed))
      steps, restarts, seed = _checked_numbers(steps, restarts, seed,
                                               max_steps)
      masked = with_grey_hole(image, mask)
      yield masked, None, None, None, None, None, 'starting the search...'
      start = time.perf_counter()
      for u in watch_completion(model, image, mask, loss=loss, steps=steps,
                                restarts=restarts, seed=seed):
        progress((u.done, u.steps), desc='Adam steps')
        files = None
        if u.final:
          folder = Path(tempfile.mkdtemp(dir=downloads))  # one per run
          files = [_png_file(img, folder, n) for img, n in (
              (u.blended, 'blended'), (u.overlay, 'raw_overlay'),
              (u.generated, 'generated'))]
        status = (f'step {u.done} of {u.steps}, loss '
                  f'{u.losses[-1]:.4g}' if len(u.losses) else '')
        if u.final:
          status = (f'done: {u.steps} steps, final loss {u.losses[-1]:.4g}, '
                    f'{time.perf_counter() - start:.1f} s')
        yield (masked, u.generated, u.overlay, u.blended,
               loss_frame(u.losses), files, status)
    except errors.PageError as e:
      fail(e)

  def run_conditional(path, ref_path, parts, model_name, steps, seed,
                      progress=gr.Progress()):
    try:
      model = models.get(model_name)
      r = model.resolution
      image = load_crop(path, r, 'the face')
      reference = load_crop(ref_path, r, 'the reference face')
      keep = parts_mask(parts, r)
      steps, _, seed = _checked_numbers(steps, 1, seed, max_steps)
      yield (to_uint8(image), to_uint8(reference), with_grey_hole(image, keep),
             None, None, 'starting the search...')
      for u in watch_completion(model, image, keep, steps=steps, restarts=1,
                                seed=seed, reference=reference):
        progress((u.done, u.steps), desc='Adam steps')
        yield (to_uint8(image), to_uint8(reference),
               with_grey_hole(image, keep), u.generated, u.blended,
               ('done' if u.final else f'step {u.done} of {u.steps}'))
    except errors.PageError as e:
      fail(e)

  with gr.Blocks(title='jaxinpaint') as app:
    gr.Markdown(
        '## jaxinpaint: semantic image completion\n'
        'A GAN-trained generator fills the hole: Adam searches its latent '
        'space for the image that agrees with the known pixels and their '
        'gradients, then a Poisson blend removes the seam. Defaults '
        f'({steps_default} steps, {DEFAULT_RESTARTS} restart) finish in '
        f'about {CPU_DEFAULT_SECONDS} s on a 2-core CPU with `{CPU_MODEL}` '
        f'and {DEFAULT_MODEL_CPU_SECONDS} s with `{DEFAULT_MODEL}` (better '
        'faces), once compiled: the first run of a model compiles it. One '
        'completion runs at a time: others wait in the queue.')
    with gr.Tab('Complete'):
      with gr.Row():
        with gr.Column():
          upload = gr.File(label='Image (any size: center-cropped and '
                           'resized as training data are)',
                           file_types=['image'], type='filepath',
                           elem_id='upload')
          gr.Examples([[str(p)] for p in FACE_EXAMPLES[:8] + DIGIT_EXAMPLES[:4]],
                      inputs=[upload], label='Shipped examples (faces; '
                      'digits for the SVHN models)')
          model = gr.Dropdown(names, value=default_model, label='Model',
                              elem_id='model')
          editor = gr.ImageEditor(
              label='The crop the model sees: paint the hole', type='numpy',
              image_mode='RGBA', sources=[], format='png', layers=False,
              brush=gr.Brush(colors=['#ff00ff'], color_mode='fixed',
                             default_size=16),
              transforms=[], canvas_size=(DISPLAY_SIDE, DISPLAY_SIDE),
              elem_id='editor')
          note = gr.Markdown('Upload an image or pick an example.',
                             elem_id='note')
          hole = gr.Radio(list(HOLE_CHOICES), value='painted', label='Hole',
                          elem_id='hole')
          mask_upload = gr.File(label='Mask file (white = known; for hole '
                                '"mask file")', file_types=['image'],
                                type='filepath', elem_id='mask_file')
          with gr.Row():
            loss = gr.Radio(['paper', 'yeh', 'yeh_gradient'], value='paper',
                            label='Loss (paper; Yeh et al.)', elem_id='loss')
          with gr.Row():
            steps = gr.Number(steps_default, label='Adam steps',
                              precision=0, minimum=1, maximum=max_steps,
                              elem_id='steps')
            restarts = gr.Number(DEFAULT_RESTARTS, label='Restarts',
                                 precision=0, minimum=1, maximum=16,
                                 elem_id='restarts')
            seed = gr.Number(0, label='Seed', precision=0, minimum=0,
                             elem_id='seed')
          go = gr.Button('Complete', variant='primary', elem_id='run')
        with gr.Column():
          with gr.Row():
            crop = gr.Image(label='Input the model sees (hole grey)',
                            format='png', interactive=False, height=256,
                            elem_id='crop')
            blended = gr.Image(label='Blended result', format='png',
                               interactive=False, height=256,
                               elem_id='blended')
          with gr.Row():
            generated = gr.Image(label='G(ẑ)', format='png',
                                 interactive=False, height=256,
                                 elem_id='generated')
            overlay = gr.Image(label='Raw overlay (before blending)',
                               format='png', interactive=False, height=256,
                               elem_id='overlay')
          status = gr.Markdown('', elem_id='status')
          trace = gr.LinePlot(x='step', y='loss', label='Loss',
                              height=200, elem_id='trace')
          files = gr.File(label='PNG downloads', file_count='multiple',
                          interactive=False, elem_id='downloads')
      upload.change(prepare, [upload, model], [editor, note])
      model.change(prepare, [upload, model], [editor, note])
      go.click(run, [upload, model, editor, hole, mask_upload, loss, steps,
                     restarts, seed],
               [crop, generated, overlay, blended, trace, files, status],
               concurrency_limit=1, concurrency_id='completion',
               api_name='complete')
    with gr.Tab('Conditional (parts from a reference)'):
      gr.Markdown('The paper\'s Fig. 12: keep a face, take the chosen parts '
                  "from a reference face (the reference's structure, the "
                  "face's colours at the seam).")
      with gr.Row():
        with gr.Column():
          c_face = gr.File(label='Face', file_types=['image'],
                           type='filepath', elem_id='c_face')
          gr.Examples([[str(p)] for p in FACE_EXAMPLES[:6]], inputs=[c_face],
                      label='Shipped faces')
          c_ref = gr.File(value=str(REFERENCE), label='Reference face',
                          file_types=['image'], type='filepath',
                          elem_id='c_ref')
          c_parts = gr.CheckboxGroup(list(PARTS), value=list(PARTS),
                                     label='Parts from the reference')
          c_model = gr.Dropdown(faces, value=(default_model if default_model
                                              in faces else faces[0]),
                                label='Model')
          with gr.Row():
            c_steps = gr.Number(steps_default, label='Adam steps',
                                precision=0, minimum=1, maximum=max_steps)
            c_seed = gr.Number(0, label='Seed', precision=0, minimum=0)
          c_go = gr.Button('Complete', variant='primary', elem_id='c_run')
        with gr.Column():
          with gr.Row():
            c_in = gr.Image(label='Face (crop)', format='png',
                            interactive=False)
            c_ref_view = gr.Image(label='Reference (crop)', format='png',
                                  interactive=False)
            c_keep = gr.Image(label='Kept (grey: from the reference)',
                              format='png', interactive=False)
          with gr.Row():
            c_generated = gr.Image(label='G(ẑ)', format='png',
                                   interactive=False)
            c_blended = gr.Image(label='Result', format='png',
                                 interactive=False)
          c_status = gr.Markdown('')
      c_go.click(run_conditional, [c_face, c_ref, c_parts, c_model, c_steps,
                                   c_seed],
                 [c_in, c_ref_view, c_keep, c_generated, c_blended, c_status],
                 concurrency_limit=1, concurrency_id='completion',
                 api_name='conditional')
  return app


# Small images shown large stay sharp squares (launch(css=CSS)).
CSS = ('img { image-rendering: pixelated; } '
       '#crop img, #blended img, #generated img, #overlay img '
       '{ width: 256px; height: 256px; object-fit: contain; }')


def _checked_numbers(steps, restarts, seed, max_steps):
  values = {}
  for name, value, low, high in (('steps', steps, 1, max_steps),
                                 ('restarts', restarts, 1, 16),
                                 ('seed', seed, 0, inputs.SEED_LIMIT - 1)):
    if value is None or not low <= value <= high or value != int(value):
      raise errors.PageError(f'{name}: expected a whole number from {low} to {high}'
                      f', got {value}')
    values[name] = int(value)
  return values['steps'], values['restarts'], values['seed']


def default_checkpoint() -> str:
  import jax  # pylint: disable=g-import-not-at-top
  return CPU_MODEL if jax.default_backend() == 'cpu' else DEFAULT_MODEL


def warm_up(models_name: str):
  """Compiles the default settings' programs (the search, its previews, the
  blend) before the first visitor."""
  model = loading.load_model(models_name)
  r = model.resolution
  image = np.zeros((r, r, 3), np.float32)
  for _ in watch_completion(model, image, masks.center_mask(1, r, r)[0],
                            steps=PREVIEW_EVERY + 1,
                            restarts=DEFAULT_RESTARTS, seed=0):
    pass


def main(argv=None):
  # pylint: disable-next=g-import-not-at-top
  from jaxinpaint import cli
  parser = argparse.ArgumentParser(
      prog='jaxinpaint-demo',
      description='A browser page to complete images with a jaxinpaint '
      'model (Gradio).')
  parser.add_argument('--host', default='127.0.0.1',
                      help='address to bind (default: 127.0.0.1, this '
                      'machine only; 0.0.0.0 serves the network)')
  parser.add_argument('--port', type=int, default=7860)
  parser.add_argument('--checkpoint', default=None,
                      help='the model the page starts with: a shipped name or '
                      f'a directory (default: {DEFAULT_MODEL}, or its CPU '
                      f'preview {CPU_MODEL} when JAX runs on a CPU)')
  parser.add_argument('--max-steps', type=int, default=MAX_STEPS,
                      help=f'the most Adam steps a visitor may ask (default: '
                      f'{MAX_STEPS})')
  parser.add_argument('--no-warm-up', action='store_true',
                      help='do not compile the default model before serving')
  args = parser.parse_args(argv)
  if not 1 <= args.max_steps <= inputs.MAX_STEPS:
    cli.fail(f'--max-steps must be from 1 to {inputs.MAX_STEPS}, got '
             f'{args.max_steps}')
  if not 0 <= args.port < 65536:
    cli.fail(f'--port must be from 0 to 65535, got {args.port}')
  try:
    import gradio  # pylint: disable=g-import-not-at-top,unused-import
  except ImportError:
    cli.fail("Gradio is not installed: pip install 'jaxinpaint[demo]'")
  from jaxinpaint import host_memory  # pylint: disable=g-import-not-at-top
  host_memory.reuse_freed_memory()  # as every CLI on a CPU
  checkpoint = args.checkpoint or default_checkpoint()
  try:
    loading.find_model(checkpoint)
  except errors.ArgumentError as e:
    cli.fail(e.for_flag('--checkpoint'))
  if not args.no_warm_up:
    print(f'compiling {checkpoint} for the default settings...', flush=True)
    warm_up(checkpoint)
  app = build_app(checkpoint, args.max_steps)
  app.queue(default_concurrency_limit=1).launch(
      server_name=args.host, server_port=args.port, show_error=True, css=CSS)


if __name__ == '__main__':
  main()
