"""The Yeh et al. baseline: DCGAN, z ~ U(-1, 1) of size 100, GAN loss."""
from jaxinpaint.training.config_schema import base_config


def get_config():
  c = base_config()
  c.data.folder = '../shared/data/celeba64/train'
  c.model.arch = 'dcgan'
  c.model.resolution = 64
  c.model.width = 64
  c.model.z_dim = 100
  c.train.loss = 'gan'
  c.train.n_critic = 1
  c.train.learning_rate = 2e-4
  c.train.b1 = 0.5
  c.train.b2 = 0.999
  return c
