"""CelebA 128x128: one more residual block in G and in D (paper, 3.1)."""
from jaxinpaint.training.config_schema import base_config


def get_config():
  c = base_config()
  c.data.folder = '../shared/data/celeba128/train'
  c.model.resolution = 128
  c.model.width = 64
  return c
