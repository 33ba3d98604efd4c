"""Fills the holes of images with a trained model (semantic image completion).

  python inpaint.py --checkpoint runs/celeba64 --input photos/ --mask masks/
  python inpaint.py --checkpoint runs/celeba64 --evaluate --limit 64 \
      --input ../shared/data/celeba64/test --mask three_squares

Masks: white = known, black = hole. See `python inpaint.py --help`.
"""
from jaxinpaint.cli.inpaint import main

if __name__ == '__main__':
  main()
