"""The browser demo (Gradio)."""
from jaxinpaint import _lazy

__getattr__, __dir__, __all__ = _lazy.exports(__name__, {
    # app
    'MAX_STEPS': 'app', 'MAX_PIXELS': 'app', 'DISPLAY_SIDE': 'app',
    'HOLE_CHOICES': 'app', 'PARTS': 'app', 'FACE_EXAMPLES': 'app',
    'DIGIT_EXAMPLES': 'app', 'REFERENCE': 'app', 
    'load_crop': 'app', 'to_uint8': 'app', 'display_factor': 'app',
    'upscaled': 'app', 'with_grey_hole': 'app', 'painted_mask': 'app',
    'mask_file': 'app', 'page_mask': 'app', 'parts_mask': 'app',
    'Models': 'app', 'Update': 'app', 
    'watch_completion': 'app', 'build_app': 'app', 'CSS': 'app',
    'default_checkpoint': 'app', 'warm_up': 'app', 'main': 'app',
})
