"""jaxinpaint: semantic image completion through an adversarial strategy.

The library's main functions are importable from the package itself
(`from jaxinpaint import complete, poisson_blend`); the role folders hold the
rest (docs/design.md): `ops/` (image operators, Poisson blending, metrics),
`models/`, `data/`, `completion/`, `training/`, `evaluation/`,
`inpaint_job/`, `cli/`, `demo/`. Names load on first use, so `import
jaxinpaint` (and a CLI's `--help`) does not start JAX.
"""
from jaxinpaint import _lazy

__getattr__, __dir__, __all__ = _lazy.exports(__name__, {
    # completion (paper 3.2-3.3): jitted, batched, vmapped per image
    'complete': 'completion', 'complete_conditional': 'completion',
    'generate': 'completion', 'inpainting_loss': 'completion',
    'conditional_loss': 'completion', 'LOSSES': 'completion',
    'LossSpec': 'completion', 'ConditionalSpec': 'completion',
    'Options': 'completion', 'Tuning': 'completion',
    'image_keys': 'completion',
    'inpaint_batches': 'completion', 'evaluate': 'completion',
    # blending, masks, image operators, metrics
    'poisson_blend': 'ops.poisson', 'harmonic_fill': 'ops.poisson',
    'make_masks': 'data.masks', 'load_mask': 'data.masks',
    'masked_gradients': 'ops.image_ops', 'window_weights': 'ops.image_ops',
    'mse': 'ops.metrics', 'psnr': 'ops.metrics', 'ssim': 'ops.metrics',
    # models, finding and loading them, training
    'build_models': 'models', 'Model': 'models',
    'load_model': 'models', 'find_model': 'models',
    'train_and_evaluate': 'training',
})
