"""The paper's model: CelebA 64x64, base width 64, WGAN-GP, batch 64."""
from jaxinpaint.training.config_schema import base_config


def get_config():
  c = base_config()
  c.data.folder = '../shared/data/celeba64/train'
  c.model.resolution = 64
  c.model.width = 64
  return c
