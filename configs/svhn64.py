"""SVHN (tfds `svhn_cropped`) at 64x64, as in the paper's Tables 1-2."""
from jaxinpaint.config import base_config


def get_config():
  c = base_config()
  c.data.tfds_name = 'svhn_cropped'
  c.data.split = 'train'
  c.model.resolution = 64
  c.model.width = 64
  return c
