"""jaxinpaint: semantic image completion through an adversarial strategy.

The library's main functions are importable from the package itself
(`from jaxinpaint import complete, poisson_blend`); the modules hold the rest.
They load on first use, so `import jaxinpaint` (and a CLI's `--help`) does not
start JAX.
"""
import importlib

_EXPORTS = {
    # completion (paper 3.2-3.3): jitted, batched, vmapped per image
    'complete': 'completion', 'complete_conditional': 'completion',
    'inpainting_loss': 'completion', 'conditional_loss': 'completion',
    'LOSSES': 'completion', 'Options': 'completion',
    'image_keys': 'completion',
    # blending, masks, image operators, metrics
    'poisson_blend': 'poisson', 'harmonic_fill': 'poisson',
    'make_masks': 'masks', 'load_mask': 'masks',
    'masked_gradients': 'image_ops', 'window_weights': 'image_ops',
    'mse': 'metrics', 'psnr': 'metrics', 'ssim': 'metrics',
    # models, finding and loading them, training, many images at once
    'build_models': 'models', 'Model': 'models',
    'load_model': 'loading', 'find_model': 'loading',
    'train_and_evaluate': 'training', 'inpaint_batches': 'batch_completion',
    'evaluate': 'batch_completion',
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
  if name in _EXPORTS:
    module = importlib.import_module(f'{__name__}.{_EXPORTS[name]}')
    return getattr(module, name)
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
