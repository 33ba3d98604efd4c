"""The browser demo (Gradio), `jaxinpaint-demo`:

  page      the page's inputs and outputs as plain functions (the crop, the
            hole, the settings, the views), no Gradio
  session   the search session: models, a watched completion run and its
            previews, cancellation, the warm-up
  app       the Gradio wiring (layout, event handlers) and the command line
"""
from jaxinpaint import _lazy

__getattr__, __dir__, __all__ = _lazy.exports(__name__, {
    # page
    'MAX_STEPS': 'page', 'MAX_PIXELS': 'page', 'DISPLAY_SIDE': 'page',
    'HOLE_CHOICES': 'page', 'PARTS': 'page', 'FACE_EXAMPLES': 'page',
    'DIGIT_EXAMPLES': 'page', 'REFERENCE': 'page',
    'load_crop': 'page', 'to_uint8': 'page', 'display_factor': 'page',
    'upscaled': 'page', 'with_grey_hole': 'page', 'painted_mask': 'page',
    'mask_file': 'page', 'page_mask': 'page', 'parts_mask': 'page',
    'checked_numbers': 'page',
    # session
    'Models': 'session', 'Update': 'session',
    'watch_completion': 'session', 'warm_up': 'session',
    # app
    'build_app': 'app', 'CSS': 'app', 'default_checkpoint': 'app',
    'main': 'app',
})
