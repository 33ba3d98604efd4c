"""jaxinpaint-demo: complete images in a browser page (Gradio).

  pip install -e '.[demo]' && jaxinpaint-demo      # open http://127.0.0.1:7860

Upload a photo or pick a shipped example; it is center-cropped and resized
exactly as training data are (`data.load_images`), and the page shows that
crop. Paint the hole on it with the brush, or pick a preset or a mask file
(white = known); the search then streams G(ẑ) and the blended result every
few steps. A second tab is the paper's conditional completion (Fig. 12):
parts of a face taken from a reference face. One completion runs at a time
(Gradio's queue; later visitors see their place in it).

This module only wires Gradio components to the page's work: its inputs and
outputs are the plain functions of `demo.page`, the search runs in
`demo.session` (the tests call both directly). `build_app` puts together the
intro, the two tabs' layouts and their event handlers; `main` parses the
flags and serves it.
"""
import argparse
import dataclasses
import tempfile
import time
import types
from pathlib import Path

import numpy as np
from PIL import Image

from jaxinpaint import errors
from jaxinpaint.demo import page
from jaxinpaint.demo import session
from jaxinpaint.inpaint_job import inputs
from jaxinpaint.models import loading

# The shipped model a bare `jaxinpaint-demo` serves: the default model on an
# accelerator; on a CPU its 16x cheaper preview, so that the page's default
# settings finish in seconds (the page says so).
DEFAULT_MODEL, CPU_MODEL = 'celeba64', 'celeba64_cpu'
# The time the defaults take on a 2-core CPU with CPU_MODEL and with
# DEFAULT_MODEL, once compiled (12.8 s and 37.6 s measured with other jobs
# loading the machine; shown on the page).
CPU_DEFAULT_SECONDS, DEFAULT_MODEL_CPU_SECONDS = 13, 38
# Small images shown large stay sharp squares (launch(css=CSS)).
CSS = ('img { image-rendering: pixelated; } '
       '#crop img, #blended img, #generated img, #overlay img '
       '{ width: 256px; height: 256px; object-fit: contain; }')


@dataclasses.dataclass(frozen=True)
class _Choices:
  """What the page's menus and fields offer, and start with."""
  models: list[str]  # the model menu: the shipped models and the default
  faces: list[str]  # the conditional tab's menu: the face models
  model: str  # the model the page starts with
  steps: int  # the Adam steps it starts with
  max_steps: int  # the most a visitor may ask


def build_app(default_model: str, max_steps: int = page.MAX_STEPS):
  """The Gradio Blocks of the page (not launched)."""
  import gradio as gr  # pylint: disable=g-import-not-at-top

  names = loading.shipped_model_names()
  if default_model not in names:
    names = [default_model] + names
  faces = [n for n in names if n.startswith('celeba')] or [default_model]
  choices = _Choices(names, faces, default_model,
                     min(page.DEFAULT_STEPS, max_steps), max_steps)
  run, run_conditional = _run_handlers(gr, max_steps)
  with gr.Blocks(title='jaxinpaint') as app:
    gr.Markdown(_intro(choices.steps))
    with gr.Tab('Complete'):
      _complete_tab(gr, run, choices)
    with gr.Tab('Conditional (parts from a reference)'):
      _conditional_tab(gr, run_conditional, choices)
  return app


def _intro(steps: int) -> str:
  return (
      '## jaxinpaint: semantic image completion\n'
      'A GAN-trained generator fills the hole: Adam searches its latent '
      'space for the image that agrees with the known pixels and their '
      'gradients, then a Poisson blend removes the seam. Defaults '
      f'({steps} steps, {page.DEFAULT_RESTARTS} restart) finish in '
      f'about {CPU_DEFAULT_SECONDS} s on a 2-core CPU with `{CPU_MODEL}` '
      f'and {DEFAULT_MODEL_CPU_SECONDS} s with `{DEFAULT_MODEL}` (better '
      'faces), once compiled: the first run of a model compiles it. One '
      'completion runs at a time: others wait in the queue.')


# ----------------------------------------------------------------------------
# The layout.


def _complete_tab(gr, run, choices: _Choices):
  """The 'Complete' tab: the image, its hole and the settings on the left;
  the input the model sees, the streamed views, the loss and the downloads
  on the right."""
  with gr.Row():
    with gr.Column():
      ui = _complete_inputs(gr, choices)
    with gr.Column():
      outputs = _complete_outputs(gr)
  for changed in (ui.upload, ui.model):  # API endpoints prepare, prepare_1
    changed.change(_prepare, [ui.upload, ui.model], [ui.editor, ui.note],
                   api_name='prepare')
  ui.go.click(run, [ui.upload, ui.model, ui.editor, ui.hole, ui.mask_upload,
                    ui.loss, ui.steps, ui.restarts, ui.seed],
              outputs, concurrency_limit=1, concurrency_id='completion',
              api_name='complete')


def _complete_inputs(gr, choices: _Choices) -> types.SimpleNamespace:
  """The 'Complete' tab's input column, its components by name."""
  ui = types.SimpleNamespace()
  ui.upload = gr.File(label='Image (any size: center-cropped and resized as '
                      'training data are)', file_types=['image'],
                      type='filepath', elem_id='upload')
  gr.Examples([[str(p)] for p in
               page.FACE_EXAMPLES[:8] + page.DIGIT_EXAMPLES[:4]],
              inputs=[ui.upload], label='Shipped examples (faces; digits for '
              'the SVHN models)')
  ui.model = gr.Dropdown(choices.models, value=choices.model, label='Model',
                         elem_id='model')
  ui.editor = gr.ImageEditor(
      label='The crop the model sees: paint the hole', type='numpy',
      image_mode='RGBA', sources=[], format='png', layers=False,
      brush=gr.Brush(colors=['#ff00ff'], color_mode='fixed',
                     default_size=16),
      transforms=[], canvas_size=(page.DISPLAY_SIDE, page.DISPLAY_SIDE),
      elem_id='editor')
  ui.note = gr.Markdown('Upload an image or pick an example.',
                        elem_id='note')
  ui.hole = gr.Radio(list(page.HOLE_CHOICES), value='painted', label='Hole',
                     elem_id='hole')
  ui.mask_upload = gr.File(label='Mask file (white = known; for hole "mask '
                           'file")', file_types=['image'], type='filepath',
                           elem_id='mask_file')
  with gr.Row():
    ui.loss = gr.Radio(['paper', 'yeh', 'yeh_gradient'], value='paper',
                       label='Loss (paper; Yeh et al.)', elem_id='loss')
  with gr.Row():
    ui.steps = gr.Number(choices.steps, label='Adam steps', precision=0,
                         minimum=1, maximum=choices.max_steps,
                         elem_id='steps')
    ui.restarts = gr.Number(page.DEFAULT_RESTARTS, label='Restarts',
                            precision=0, minimum=1, maximum=16,
                            elem_id='restarts')
    ui.seed = gr.Number(0, label='Seed', precision=0, minimum=0,
                        elem_id='seed')
  ui.go = gr.Button('Complete', variant='primary', elem_id='run')
  return ui


def _complete_outputs(gr) -> list:
  """The 'Complete' tab's output column, in the order its run yields them:
  crop, G(ẑ), overlay, blended, loss trace, downloads, status."""
  with gr.Row():
    crop = gr.Image(label='Input the model sees (hole grey)', format='png',
                    interactive=False, height=256, elem_id='crop')
    blended = gr.Image(label='Blended result', format='png',
                       interactive=False, height=256, elem_id='blended')
  with gr.Row():
    generated = gr.Image(label='G(ẑ)', format='png', interactive=False,
                         height=256, elem_id='generated')
    overlay = gr.Image(label='Raw overlay (before blending)', format='png',
                       interactive=False, height=256, elem_id='overlay')
  status = gr.Markdown('', elem_id='status')
  trace = gr.LinePlot(x='step', y='loss', label='Loss', height=200,
                      elem_id='trace')
  files = gr.File(label='PNG downloads', file_count='multiple',
                  interactive=False, elem_id='downloads')
  return [crop, generated, overlay, blended, trace, files, status]


def _conditional_tab(gr, run_conditional, choices: _Choices):
  """The 'Conditional' tab (the paper's Fig. 12): a face, a reference face
  and the parts to take from it; the crops, G(ẑ) and the result."""
  gr.Markdown('The paper\'s Fig. 12: keep a face, take the chosen parts '
              "from a reference face (the reference's structure, the "
              "face's colours at the seam).")
  with gr.Row():
    with gr.Column():
      face = gr.File(label='Face', file_types=['image'], type='filepath',
                     elem_id='c_face')
      gr.Examples([[str(p)] for p in page.FACE_EXAMPLES[:6]], inputs=[face],
                  label='Shipped faces')
      ref = gr.File(value=str(page.REFERENCE), label='Reference face',
                    file_types=['image'], type='filepath', elem_id='c_ref')
      parts = gr.CheckboxGroup(list(page.PARTS), value=list(page.PARTS),
                               label='Parts from the reference')
      model = gr.Dropdown(choices.faces, value=(
          choices.model if choices.model in choices.faces
          else choices.faces[0]), label='Model')
      with gr.Row():
        steps = gr.Number(choices.steps, label='Adam steps', precision=0,
                          minimum=1, maximum=choices.max_steps)
        seed = gr.Number(0, label='Seed', precision=0, minimum=0)
      go = gr.Button('Complete', variant='primary', elem_id='c_run')
    with gr.Column():
      with gr.Row():
        face_view = gr.Image(label='Face (crop)', format='png',
                             interactive=False)
        ref_view = gr.Image(label='Reference (crop)', format='png',
                            interactive=False)
        keep = gr.Image(label='Kept (grey: from the reference)', format='png',
                        interactive=False)
      with gr.Row():
        generated = gr.Image(label='G(ẑ)', format='png', interactive=False)
        blended = gr.Image(label='Result', format='png', interactive=False)
      status = gr.Markdown('')
  go.click(run_conditional, [face, ref, parts, model, steps, seed],
           [face_view, ref_view, keep, generated, blended, status],
           concurrency_limit=1, concurrency_id='completion',
           api_name='conditional')


# ----------------------------------------------------------------------------
# The event handlers.


def _fail(error):
  """Shows `error` on the page, one line that stays until closed."""
  import gradio as gr  # pylint: disable=g-import-not-at-top
  raise gr.Error(str(error), duration=None) from None


def _resolution_of(model_name) -> int:
  try:
    _, config = loading.find_model(model_name)
  except errors.ArgumentError as e:
    _fail(e.detail)
  return int(config.model.resolution)


def _prepare(path, model_name):
  """The crop the model sees, upscaled, as the editor's background."""
  if path is None:
    return None, 'Upload an image or pick an example.'
  r = _resolution_of(model_name)
  try:
    crop = page.upscaled(page.to_uint8(page.load_crop(path, r)),
                         page.display_factor(r))
  except errors.PageError as e:
    _fail(e)
  return ({'background': crop, 'layers': [], 'composite': crop},
          f'The model sees this {r}x{r} crop (shown {crop.shape[0]} px). '
          'Paint the hole on it, or pick a preset.')


def _run_handlers(gr, max_steps: int):
  """(run, run_conditional): the two tabs' searches, generators that stream
  each `session.Update` to the tab's outputs. Closures made once Gradio is
  imported: Gradio finds the progress bar by a `gr.Progress()` default."""
  models = session.Models()
  downloads = Path(tempfile.mkdtemp(prefix='jaxinpaint-demo-'))

  def run(path, model_name, editor, hole, mask_path, loss, steps, restarts,
          seed, progress=gr.Progress()):
    try:
      model = models.get(model_name)
      r = model.resolution
      image = page.load_crop(path, r)
      layers = (editor or {}).get('layers')
      mask = page.page_mask(hole, r, layers=layers, mask_path=mask_path,
                            image_path=path, seed=int(seed))
      steps, restarts, seed = page.checked_numbers(steps, restarts, seed,
                                                   max_steps)
      masked = page.with_grey_hole(image, mask)
      yield masked, None, None, None, None, None, 'starting the search...'
      start = time.perf_counter()
      for u in session.watch_completion(model, image, mask, loss=loss,
                                        steps=steps, restarts=restarts,
                                        seed=seed):
        progress((u.done, u.steps), desc='Adam steps')
        files = _png_files(u, downloads) if u.final else None
        yield (masked, u.generated, u.overlay, u.blended,
               _loss_frame(u.losses), files, _status(u, start))
    except errors.PageError as e:
      _fail(e)

  def run_conditional(path, ref_path, parts, model_name, steps, seed,
                      progress=gr.Progress()):
    try:
      model = models.get(model_name)
      r = model.resolution
      image = page.load_crop(path, r, 'the face')
      reference = page.load_crop(ref_path, r, 'the reference face')
      keep = page.parts_mask(parts, r)
      steps, _, seed = page.checked_numbers(steps, 1, seed, max_steps)
      inputs_seen = (page.to_uint8(image), page.to_uint8(reference),
                     page.with_grey_hole(image, keep))
      yield (*inputs_seen, None, None, 'starting the search...')
      for u in session.watch_completion(model, image, keep, steps=steps,
                                        restarts=1, seed=seed,
                                        reference=reference):
        progress((u.done, u.steps), desc='Adam steps')
        yield (*inputs_seen, u.generated, u.blended,
               'done' if u.final else f'step {u.done} of {u.steps}')
    except errors.PageError as e:
      _fail(e)

  return run, run_conditional


def _status(u: session.Update, start: float) -> str:
  """The run's status line: its step and loss; at the end, its wall time."""
  if u.final:
    return (f'done: {u.steps} steps, final loss {u.losses[-1]:.4g}, '
            f'{time.perf_counter() - start:.1f} s')
  if not len(u.losses):
    return ''
  return f'step {u.done} of {u.steps}, loss {u.losses[-1]:.4g}'


def _loss_frame(losses):
  """The loss per step, as the LinePlot's table."""
  import pandas as pd  # pylint: disable=g-import-not-at-top
  return pd.DataFrame({'step': np.arange(1, len(losses) + 1),
                       'loss': np.asarray(losses, np.float64)})


def _png_files(u: session.Update, downloads: Path) -> list[str]:
  """The final update's three PNGs, in a folder of this run's own."""
  folder = Path(tempfile.mkdtemp(dir=downloads))
  return [_png_file(image, folder, name) for image, name in (
      (u.blended, 'blended'), (u.overlay, 'raw_overlay'),
      (u.generated, 'generated'))]


def _png_file(image_uint8, folder: Path, name: str) -> str:
  folder.mkdir(parents=True, exist_ok=True)
  path = folder / f'{name}.png'
  Image.fromarray(image_uint8).save(path, format='PNG')
  return str(path)


# ----------------------------------------------------------------------------
# The command line.


def default_checkpoint() -> str:
  import jax  # pylint: disable=g-import-not-at-top
  return CPU_MODEL if jax.default_backend() == 'cpu' else DEFAULT_MODEL


def _flags(argv) -> argparse.Namespace:
  """The command line; a bad port or step limit exits with one line."""
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
  parser.add_argument('--max-steps', type=int, default=page.MAX_STEPS,
                      help=f'the most Adam steps a visitor may ask (default: '
                      f'{page.MAX_STEPS})')
  parser.add_argument('--no-warm-up', action='store_true',
                      help='do not compile the default model before serving')
  args = parser.parse_args(argv)
  if not 1 <= args.max_steps <= inputs.MAX_STEPS:
    cli.fail(f'--max-steps must be from 1 to {inputs.MAX_STEPS}, got '
             f'{args.max_steps}')
  if not 0 <= args.port < 65536:
    cli.fail(f'--port must be from 0 to 65535, got {args.port}')
  return args


def main(argv=None):
  # pylint: disable-next=g-import-not-at-top
  from jaxinpaint import cli
  args = _flags(argv)
  try:
    # pylint: disable-next=g-import-not-at-top,unused-import
    import gradio  # noqa: F401 (only: is it installed?)
  except ImportError:
    cli.fail("Gradio is not installed: pip install 'jaxinpaint[demo]'")
  cli.prepare_host()  # as every CLI
  checkpoint = args.checkpoint or default_checkpoint()
  try:
    loading.find_model(checkpoint)
  except errors.ArgumentError as e:
    cli.fail(e.for_flag('--checkpoint'))
  if not args.no_warm_up:
    print(f'compiling {checkpoint} for the default settings...', flush=True)
    session.warm_up(checkpoint)
  app = build_app(checkpoint, args.max_steps)
  app.queue(default_concurrency_limit=1).launch(
      server_name=args.host, server_port=args.port, show_error=True, css=CSS)


if __name__ == '__main__':
  main()
