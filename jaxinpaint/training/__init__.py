"""Training: the config schema, the jitted step, the loop, the work dir."""
from jaxinpaint import _lazy

__getattr__, __dir__, __all__ = _lazy.exports(__name__, {
    # loop
    'TrainState': 'loop',
    'make_optimizer': 'loop', 'init_state': 'loop', 'critic_names': 'loop',
    'step_randomness': 'loop', 'train_step': 'loop',
    'resolve_critic_loop': 'loop', 'TrainFunctions': 'loop',
    'build_train_functions': 'loop', 'sample_images': 'loop',
    'process_start_time': 'loop', 'warm_start_state': 'loop',
    'free_memory': 'loop', 'check_data_size': 'loop',
    'train_and_evaluate': 'loop',
    'finalize': 'loop',
})
