"""Completion (paper 3.2-3.3): the latent search and its objectives."""
from jaxinpaint import _lazy

__getattr__, __dir__, __all__ = _lazy.exports(__name__, {
    # search
    'LossSpec': 'search', 'LOSSES': 'search', 'get_loss': 'search',
    'Options': 'search', 'Z_CONSTRAINTS': 'search',
    'check_constraint': 'search', 'constrain_latent': 'search',
    'constrain_start': 'search', 'global_critic_prior': 'search',
    'weighted_l1': 'search', 'inpainting_loss': 'search',
    'ConditionalSpec': 'search', 'conditional_loss': 'search',
    'initial_latents': 'search', 'uses_host_loop': 'search',
    'TUNE_LAYERS': 'search', 'check_tuning': 'search',
    'tuned_layer_names': 'search', 'tuning_bytes_per_image': 'search',
    'locality_latents': 'search', 'complete': 'search',
    'tune_generators': 'search', 'fill_from_latents': 'search',
    'complete_conditional': 'search', 'with_dtype': 'search',
    'generate': 'search', 'image_keys': 'search',
    # batched
    'RESULT_KEYS': 'batched',
    'SEARCH_MEMORY_FACTOR': 'batched',
    'activation_bytes': 'batched', 'search_memory': 'batched',
    'check_search_memory': 'batched', 'rows_reader': 'batched',
    'inpaint_batches': 'batched', 'evaluate': 'batched',
})
