"""CPU-sized: width 8 at 32x32, batch 8. For tests and quick tries."""
from jaxinpaint.training.config_schema import base_config


def get_config():
  c = base_config()
  c.data.folder = '../shared/data/celeba64/train'
  c.data.num_threads = 2
  c.model.resolution = 32
  c.model.width = 8
  c.model.z_dim = 16
  c.train.batch_size = 8
  c.train.n_critic = 2
  c.train.steps = 4
  c.train.log_every = 1
  c.train.checkpoint_every = 2
  c.train.sample_every = 2
  c.train.bn_recalibration_batches = 2
  return c
