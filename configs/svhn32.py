"""SVHN cropped digits at their own 32x32 (a quarter of svhn64's compute)."""
from jaxinpaint.training.config_schema import base_config


def get_config():
  c = base_config()
  c.data.folder = '../shared/data/svhn/train'
  c.model.resolution = 32
  c.model.width = 64
  return c
