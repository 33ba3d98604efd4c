"""SVHN cropped digits at 64x64, the paper's setting (Tables 1-2).

The 32x32 crops of ../shared/data/svhn/train are resized to 64x64 by the
loader. The tfds split is an option: --config.data.folder=
--config.data.tfds_name=svhn_cropped (prepared with `tfds build`).
"""
from jaxinpaint.training.config_schema import base_config


def get_config():
  c = base_config()
  c.data.folder = '../shared/data/svhn/train'
  c.model.resolution = 64
  c.model.width = 64
  return c
