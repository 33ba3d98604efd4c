"""Completion (paper 3.2-3.3): the latent search and its objectives.

`objectives` holds the losses (eq. 5-8, 10-15), `search` the options and
the latent search, `tuning` pivotal tuning after it, `api` the entry points
(`complete`, ...), `batched` the completion of many images in fixed-size
batches.
"""
from jaxinpaint import _lazy

__getattr__, __dir__, __all__ = _lazy.exports(__name__, {
    # objectives
    'LossSpec': 'objectives', 'LOSSES': 'objectives', 'get_loss': 'objectives',
    'global_critic_prior': 'objectives', 'weighted_l1': 'objectives',
    'inpainting_loss': 'objectives', 'ConditionalSpec': 'objectives',
    'conditional_loss': 'objectives',
    # search
    'Options': 'search', 'Tuning': 'search', 'Z_CONSTRAINTS': 'search',
    'check_options': 'search', 'check_constraint': 'search',
    'constrain_latent': 'search',
    'constrain_start': 'search', 'initial_latents': 'search',
    'uses_host_loop': 'search',
    # tuning
    'TUNE_LAYERS': 'tuning', 'check_tuning': 'tuning',
    'tuned_layer_names': 'tuning', 'tuning_bytes_per_image': 'tuning',
    'locality_latents': 'tuning',
    # api
    'complete': 'api', 'complete_conditional': 'api', 'generate': 'api',
    'fill_from_latents': 'api', 'tune_generators': 'api',
    'with_dtype': 'api', 'image_keys': 'api',
    # batched
    'RESULT_KEYS': 'batched',
    'SEARCH_MEMORY_FACTOR': 'batched',
    'activation_bytes': 'batched', 'search_memory': 'batched',
    'check_search_memory': 'batched', 'rows_reader': 'batched',
    'inpaint_batches': 'batched', 'evaluate': 'batched',
})
