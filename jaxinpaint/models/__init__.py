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
    'build_models': 'networks', 'LATENT_DISTRIBUTIONS': 'networks',
    'sample_latent': 'networks', 'Model': 'networks',
    'generator_late_layers': 'networks', 'count_params': 'networks',
    'summary': 'networks', 'random_variables': 'networks',
    'recalibrate_batch_stats': 'networks', 'recalibration_key': 'networks',
    'recalibrated_stats': 'networks',
    # loading
    'ASSETS': 'loading', 'DEFAULT_MODEL': 'loading',
    'shipped_model_names': 'loading', 'find_model': 'loading',
    'load_model': 'loading',
})
