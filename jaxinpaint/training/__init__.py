"""Training: the config schema, the jitted step, the loop, the work dir."""
from jaxinpaint import _lazy

__getattr__, __dir__, __all__ = _lazy.exports(__name__, {
    # step
    'TrainState': 'step',
    'make_optimizer': 'step', 'init_state': 'step', 'critic_names': 'step',
    'step_randomness': 'step', 'train_step': 'step',
    'resolve_critic_loop': 'step', 'TrainFunctions': 'step',
    'build_train_functions': 'step', 'sample_images': 'step',
    # progress
    'process_start_time': 'progress',
    # loop
    'warm_start_state': 'loop', 'check_data_size': 'loop',
    'train_and_evaluate': 'loop', 'finalize': 'loop',
})
