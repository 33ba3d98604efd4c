"""CIFAR-10 at 32x32: the stand-in for SVHN that this project can train."""
from jaxinpaint.training.config_schema import base_config


def get_config():
  c = base_config()
  c.data.folder = '../shared/data/cifar10/train'
  c.model.resolution = 32
  c.model.width = 64
  return c
