"""The networks, the model handle, checkpoints and loading."""
from jaxinpaint import _lazy

__getattr__, __dir__, __all__ = _lazy.exports(__name__, {
    # networks
    'Dtype': 'networks', 'generator_widths': 'networks',
    'critic_widths': 'networks', 'upsample': 'networks',
    'downsample': 'networks', 'batch_norm': 'networks',
    'box_filtered_kernel': 'networks', 'UpsampleConv': 'networks',
    'ConvMeanPool': 'networks', 'UpBlock': 'networks', 'DownBlock': 'networks',
    'Generator': 'networks', 'Critic': 'networks', 'PatchCritic': 'networks',
    'DCGANGenerator': 'networks', 'DCGANDiscriminator': 'networks',
    'build_models': 'networks',
    # model
    'LATENT_DISTRIBUTIONS': 'model', 'sample_latent': 'model',
    'Model': 'model', 'generator_late_layers': 'model',
    'count_params': 'model', 'summary': 'model', 'random_variables': 'model',
    'recalibrate_batch_stats': 'model', 'recalibration_key': 'model',
    'recalibrated_stats': 'model',
    # loading
    'ASSETS': 'loading', 'DEFAULT_MODEL': 'loading',
    'shipped_model_names': 'loading', 'find_model': 'loading',
    'load_model': 'loading',
})
