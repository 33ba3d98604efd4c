"""Tests of jaxinpaint.data: sources, preprocessing, deterministic batches."""
import gc
import json
import os
import pathlib
import threading

import numpy as np
from PIL import Image
import pytest

from jaxinpaint import data, errors
from jaxinpaint.data import decoding
from jaxinpaint.training import config_schema

SHARED_DATA = (pathlib.Path(__file__).resolve().parents[1].parent / 'shared' /
               'data')


def _data_config(**overrides):
  c = config_schema.base_config().data
  c.num_threads = 2
  c.prefetch_batches = 2
  c.update(overrides)
  return c


def _batches(it, n):
  return [next(it) for _ in range(n)]


def _to_uint8(x):
  """[-1, 1] float -> exact uint8 (inverse of the pipeline's scaling)."""
  return np.rint((x + 1) * 127.5).astype(np.int64)


def _write_index_images(folder, n, size=4):
  """n PNGs whose red channel is the index: any batch decodes to indices."""
  folder.mkdir(parents=True, exist_ok=True)
  for i in range(n):
    pixels = np.zeros((size, size, 3), np.uint8)
    pixels[..., 0] = i
    pixels[..., 1] = 255 - i
    Image.fromarray(pixels).save(folder / f'{i:03d}.png')
  return folder


def _indices(batch):
  """Image indices of a batch of `_write_index_images` images: (b,)."""
  red = _to_uint8(batch[..., 0])
  assert (red == red[:, :1, :1]).all()  # Uniform images survive exactly.
  return red[:, 0, 0]


# ----------------------------------------------------------------------------
# Folder source and preprocessing.


def test_folder_source_mixed_files(tmp_path):
  rng = np.random.default_rng(0)
  rgb = lambda h, w: rng.integers(0, 256, (h, w, 3), np.uint8)
  Image.fromarray(rgb(16, 16)).save(tmp_path / 'a.png')
  (tmp_path / 'sub').mkdir()
  Image.fromarray(rgb(20, 20)).save(tmp_path / 'sub' / 'b.jpg')
  Image.fromarray(rng.integers(0, 256, (16, 16, 4), np.uint8)).save(
      tmp_path / 'c.png')  # RGBA
  Image.fromarray(rng.integers(0, 256, (16, 16), np.uint8)).save(
      tmp_path / 'd.PNG')  # greyscale, upper-case extension
  Image.fromarray(rgb(16, 24)).save(tmp_path / 'e.jpeg')  # non-square
  (tmp_path / 'notes.txt').write_text('not an image')
  Image.fromarray(rgb(8, 8)).save(tmp_path / '.hidden.png')

  names = [pathlib.Path(p).relative_to(tmp_path).as_posix()
           for p in data.list_image_files(tmp_path)]
  assert names == ['a.png', 'c.png', 'd.PNG', 'e.jpeg', 'sub/b.jpg']
  cfg = _data_config(folder=str(tmp_path))
  assert data.describe_source(cfg) == f'folder {tmp_path} (5 images)'
  with data.make_batch_iterator(cfg, resolution=8, global_batch_size=5,
                                seed=0) as it:
    batch = next(it)
    assert it.next_batch == 1
  assert batch.shape == (5, 8, 8, 3) and batch.dtype == np.float32
  assert batch.min() >= -1 and batch.max() <= 1
  # One epoch of 5: every file exactly once, so the greyscale image is there.
  greys = [x for x in batch if np.array_equal(x[..., 0], x[..., 2])]
  assert len(greys) == 1


@pytest.mark.parametrize('size', [(30, 10), (10, 30), (31, 12)])
def test_center_crop_keeps_the_middle(tmp_path, size):
  w, h = size
  pixels = np.zeros((h, w, 3), np.uint8)
  pixels[...] = (255, 0, 0)  # Red margins must be cropped away...
  side = min(w, h)
  top, left = (h - side) // 2, (w - side) // 2
  pixels[top:top + side, left:left + side] = (0, 255, 0)  # ...green kept.
  Image.fromarray(pixels).save(tmp_path / 'x.png')
  images, names = data.load_images(tmp_path / 'x.png', resolution=5)
  assert names == ['x'] and images.shape == (1, 5, 5, 3)
  np.testing.assert_array_equal(_to_uint8(images[0]),
                                np.broadcast_to([0, 255, 0], (5, 5, 3)))


def test_center_crop_of_a_large_jpeg_uses_the_middle(tmp_path):
  # Goes through PIL's JPEG draft (DCT down-scaling) and a bicubic resize.
  pixels = np.zeros((100, 200, 3), np.uint8)
  pixels[:, 50:150] = (0, 200, 0)
  Image.fromarray(pixels).save(tmp_path / 'wide.jpg', quality=95)
  images, _ = data.load_images([tmp_path / 'wide.jpg'], resolution=16)
  # The draft decodes at 1/4 scale, where the crop's left edge (x = 50) falls
  # between two pixels: the crop may be off by half a drafted pixel, i.e.
  # less than one output pixel, so only the edge columns may mix in black.
  colour = _to_uint8(images[0, :, 1:-1]).reshape(-1, 3)
  assert np.abs(colour - [0, 200, 0]).max() <= 8
  assert _to_uint8(images[0, :, [0, -1], 1]).min() > 100


def test_greyscale_and_rgba_become_rgb(tmp_path):
  Image.new('L', (6, 6), 100).save(tmp_path / 'grey.png')
  Image.new('RGBA', (6, 6), (10, 20, 30, 0)).save(tmp_path / 'rgba.png')
  Image.new('P', (6, 6), 3).save(tmp_path / 'palette.png')
  Image.new('LA', (9, 9), (70, 255)).save(tmp_path / 'la.png')
  Image.fromarray(np.full((6, 6), 40000, np.uint16)).save(
      tmp_path / 'sixteen.png')  # 16-bit greyscale.
  images, names = data.load_images(tmp_path, resolution=6)
  assert names == ['grey', 'la', 'palette', 'rgba', 'sixteen']
  got = _to_uint8(images)[:, 0, 0]
  np.testing.assert_array_equal(got[0], [100, 100, 100])
  np.testing.assert_array_equal(got[1], [70, 70, 70])  # Resized 9 -> 6.
  np.testing.assert_array_equal(got[3], [10, 20, 30])
  np.testing.assert_array_equal(got[4], [round(40000 / 257)] * 3)  # / 65535
  assert images.dtype == np.float32 and images.shape == (5, 6, 6, 3)


def test_greyscale_and_cmyk_jpegs_load(tmp_path):
  Image.new('L', (16, 16), 50).save(tmp_path / 'grey.jpg')
  Image.new('CMYK', (16, 16), (0, 0, 0, 0)).save(tmp_path / 'cmyk.jpg')
  images, names = data.load_images(tmp_path, 8)
  assert names == ['cmyk', 'grey'] and images.shape == (2, 8, 8, 3)
  np.testing.assert_allclose(_to_uint8(images[1]), 50, atol=2)


def test_16bit_and_float_tiffs_are_scaled_by_their_range(tmp_path):
  # One rule for images and masks: 16-bit by 65535, float taken in [0, 1].
  from jaxinpaint.data import masks  # pylint: disable=g-import-not-at-top
  unit = np.array([[0.0, 0.2, 0.49, 0.51, 0.8, 1.0]] * 6, np.float32)
  Image.fromarray(unit).save(tmp_path / 'float.tif')
  Image.fromarray(np.round(unit * 65535).astype(np.uint16)).save(
      tmp_path / 'sixteen.tif')
  Image.fromarray(np.round(unit * 65535).astype(np.int32)).save(
      tmp_path / 'thirty_two.tif')
  for name, mode in (('float', 'F'), ('sixteen', 'I;16'),
                     ('thirty_two', 'I')):
    path = str(tmp_path / f'{name}.tif')
    with Image.open(path) as img:
      assert img.mode == mode  # as Pillow reads them back
    image = decoding.decode_file(path, 6)
    np.testing.assert_array_equal(image[..., 0], np.round(unit * 255), name)
    assert (image == image[..., :1]).all()  # greyscale
    mask = masks.load_mask(path, 6, 6)[0, ..., 0]
    np.testing.assert_array_equal(mask, unit >= 0.5, name)


def test_float_tiff_outside_its_range_is_refused(tmp_path):
  from jaxinpaint.data import masks  # pylint: disable=g-import-not-at-top
  Image.fromarray(np.array([[0, 12.5, 255]] * 3, np.float32)).save(
      tmp_path / 'byte_range.tif')
  Image.fromarray(np.array([[0, np.nan, 1]] * 3, np.float32)).save(
      tmp_path / 'nan.tif')
  for name, fragment in (('byte_range', 'values in [0, 255], outside [0, 1]'),
                         ('nan', 'not finite')):
    path = str(tmp_path / f'{name}.tif')
    for read in (lambda: decoding.decode_file(path, 3),
                 lambda: masks.load_mask(path, 3, 3)):
      with pytest.raises(errors.ImageRangeError) as e:
        read()
      message = str(e.value)
      assert len(message.splitlines()) == 1, message
      assert f'{name}.tif' in message and fragment in message, message
      assert isinstance(e.value, errors.CorruptImageError)


def test_a_cache_of_other_images_is_refused(tmp_path):
  a = _write_index_images(tmp_path / 'A', 4)
  b = _write_index_images(tmp_path / 'B', 4)
  cache = tmp_path / 'A.npy'
  config = _data_config(folder=str(a), cache=str(cache))
  first = data.load_all(config, 4)
  np.testing.assert_array_equal(first[:, 0, 0, 0], [0, 1, 2, 3])
  record = json.loads((tmp_path / 'A.npy.json').read_text())
  assert record['source'] == f'folder {a}' and record['count'] == 4
  assert record['resolution'] == 4
  np.testing.assert_array_equal(data.load_all(config, 4), first)  # reused

  def refused(message, resolution=4, **overrides):
    with pytest.raises(ValueError) as e:
      data.load_all(_data_config(**{'folder': str(a), 'cache': str(cache),
                                    **overrides}), resolution)
    assert str(e.value) == (f'config.data.cache={cache}: {message}; delete '
                            'it (it is rebuilt) or point to another file')

  # Another folder of the same size and names: B's images are not A's.
  refused(f'it was decoded from folder {a}, this run reads folder {b}',
          folder=str(b))
  refused('it was decoded at resolution 4, this run uses 8', resolution=8)
  # An image of A rewritten, or one more: the same folder holds others now.
  pixels = np.full((4, 4, 3), 9, np.uint8)
  Image.fromarray(pixels).save(a / '002.png')
  os.utime(a / '002.png', ns=(1, 1))
  refused(f'folder {a} changed since it was decoded (a file added, removed, '
          'renamed or rewritten: other names, sizes or modification times)')
  Image.fromarray(pixels).save(a / '004.png')
  refused(f'it holds 4 images, folder {a} has 5 now')
  (a / '004.png').unlink()
  # A cache without its record (made by hand, or by an older version).
  (tmp_path / 'A.npy.json').unlink()
  with pytest.raises(ValueError, match=r'no .*A\.npy\.json says what it was '
                     'decoded from'):
    data.load_all(config, 4)


def _save_with_orientation(path, pixels, orientation):
  exif = Image.Exif()
  exif[0x0112] = orientation
  Image.fromarray(pixels).save(path, exif=exif.tobytes(), quality=95)


def test_exif_orientation_is_applied_everywhere_images_are_read(tmp_path):
  from jaxinpaint.inpaint_job import inputs
  # Stored 48 wide x 32 high: dark left third, bright right, a red top
  from jaxinpaint.data import masks
  # band. Orientation 6: a viewer turns it 90 degrees clockwise, 32 x 48.
  stored = np.full((32, 48, 3), 40, np.uint8)
  stored[:, 16:] = 220
  stored[:4, :, 0] = 255
  path = tmp_path / 'sideways.jpg'
  _save_with_orientation(path, stored, 6)
  with Image.open(path) as img:
    decoded = np.asarray(img.convert('RGB'))  # the pixels as stored
  upright = np.rot90(decoded, k=-1)  # clockwise: (48, 32, 3)
  # Training data (and completion inputs): turned, then the middle square.
  np.testing.assert_array_equal(decoding.decode_file(str(path), 32),
                                upright[8:40])
  images, _ = data.load_images(path, 32)
  np.testing.assert_array_equal(_to_uint8(images[0]), upright[8:40])

  # inpaint.py inputs must already have the model's size: the upright one.
  square = tmp_path / 'square.jpg'
  _save_with_orientation(square, stored[:, :32], 6)
  assert inputs.inspect_image(square)[0] == (32, 32)
  assert inputs.inspect_image(path)[0] == (32, 48)  # width x height upright
  with Image.open(square) as img:
    expected = np.rot90(np.asarray(img.convert('RGB')), k=-1)
  got, _ = inputs.load_image_files([str(square)], 32)
  np.testing.assert_array_equal(_to_uint8(got[0]), expected)

  # Masks (PNG with an eXIf chunk): stored 16 wide x 8 high, hole on the
  # left half; upright 8 x 16 with the hole on the top half.
  mask_pixels = np.full((8, 16, 3), 255, np.uint8)
  mask_pixels[:, :8] = 0
  mask_path = tmp_path / 'mask.png'
  _save_with_orientation(mask_path, mask_pixels, 6)
  mask = masks.load_mask(str(mask_path), 16, 8)[0, ..., 0]
  np.testing.assert_array_equal(mask, np.rot90(mask_pixels[..., 0] / 255,
                                               k=-1))
  assert mask[:8].sum() == 0 and mask[8:].min() == 1


def test_float_range_is_closed():
  x = decoding.to_float(np.array([0, 1, 127, 128, 254, 255], np.uint8))
  assert x[0] == -1 and x[-1] == 1 and np.all(np.diff(x) > 0)


# ----------------------------------------------------------------------------
# Deterministic batches, resume, epochs, processes.


def test_same_seed_same_batches_and_resume(tmp_path):
  cfg = _data_config(folder=str(_write_index_images(tmp_path, 23)))
  with data.make_batch_iterator(cfg, 4, 4, seed=7) as it:
    run = _batches(it, 14)
  with data.make_batch_iterator(cfg, 4, 4, seed=7) as it:
    again = _batches(it, 14)
  with data.make_batch_iterator(cfg, 4, 4, seed=8) as it:
    other = _batches(it, 14)
  np.testing.assert_array_equal(np.stack(run), np.stack(again))
  assert not np.array_equal(np.stack(run), np.stack(other))
  for k in (1, 5, 6, 11):  # 6: the batch that straddles epochs 0 and 1.
    with data.make_batch_iterator(cfg, 4, 4, seed=7, start_batch=k) as it:
      assert it.next_batch == k
      resumed = _batches(it, 3)
      assert it.next_batch == k + 3
    np.testing.assert_array_equal(np.stack(resumed), np.stack(run[k:k + 3]))


def test_each_epoch_covers_every_image_once(tmp_path):
  n, batch_size = 23, 4  # n not a multiple of the batch size.
  cfg = _data_config(folder=str(_write_index_images(tmp_path, n)))
  with data.make_batch_iterator(cfg, 4, batch_size, seed=3) as it:
    stream = np.concatenate([_indices(b) for b in _batches(it, 18)])
  epochs = [stream[e * n:(e + 1) * n] for e in range(3)]
  for epoch in epochs:
    np.testing.assert_array_equal(np.sort(epoch), np.arange(n))
  assert not np.array_equal(epochs[0], epochs[1])  # Reshuffled each epoch.
  np.testing.assert_array_equal(
      stream, data.stream_indices(n, 3, np.arange(len(stream))))


@pytest.mark.parametrize('process_count', [2, 3])
def test_process_slices_make_the_global_batch(tmp_path, process_count):
  cfg = _data_config(folder=str(_write_index_images(tmp_path, 17)))
  with data.make_batch_iterator(cfg, 4, 6, seed=1, start_batch=2) as it:
    single = _batches(it, 4)
  parts = []
  for p in range(process_count):
    with data.make_batch_iterator(cfg, 4, 6, seed=1, start_batch=2,
                                  process_index=p,
                                  process_count=process_count) as it:
      parts.append(_batches(it, 4))
      assert parts[-1][0].shape == (6 // process_count, 4, 4, 3)
  for k in range(4):
    np.testing.assert_array_equal(
        np.concatenate([part[k] for part in parts]), single[k])


def test_bad_batch_arguments(tmp_path):
  cfg = _data_config(folder=str(_write_index_images(tmp_path, 3)))
  with pytest.raises(ValueError, match='divisible'):
    data.make_batch_iterator(cfg, 4, 6, seed=0, process_count=4)
  with pytest.raises(ValueError, match='process_index'):
    data.make_batch_iterator(cfg, 4, 6, seed=0, process_index=2,
                             process_count=2)
  with pytest.raises(ValueError, match='start_batch'):
    data.make_batch_iterator(cfg, 4, 6, seed=0, start_batch=-1)


def test_close_joins_threads(tmp_path):
  cfg = _data_config(folder=str(_write_index_images(tmp_path, 5)),
                     num_threads=3, prefetch_batches=4)
  it = data.make_batch_iterator(cfg, 4, 2, seed=0)
  next(it)
  it.close()
  it.close()  # Idempotent.
  assert not [t for t in threading.enumerate()
              if t.name.startswith('jaxinpaint-data')]
  with pytest.raises(StopIteration):
    next(it)


def test_dropped_iterator_stops_its_threads(tmp_path):
  cfg = _data_config(folder=str(_write_index_images(tmp_path, 5)))
  it = data.make_batch_iterator(cfg, 4, 2, seed=0)
  next(it)
  del it
  gc.collect()
  for t in threading.enumerate():
    if t.name.startswith('jaxinpaint-data'):
      t.join(timeout=10)
      assert not t.is_alive()


# ----------------------------------------------------------------------------
# npz and tfds sources.


def test_npz_source(tmp_path):
  images = np.random.default_rng(0).integers(0, 256, (10, 12, 16, 3),
                                             np.uint8)
  np.savez(tmp_path / 'a.npz', images=images, labels=np.arange(10))
  cfg = _data_config(npz=str(tmp_path / 'a.npz'))
  assert data.describe_source(cfg) == (
      f'npz {tmp_path / "a.npz"} (10 images, 12x16)')
  with data.make_batch_iterator(cfg, 12, 10, seed=0) as it:
    batch = next(it)
  # At the source's size the crop is exact: one epoch = all images.
  cropped = images[:, :, 2:14]
  got = _to_uint8(batch)
  assert sorted(map(bytes, got.astype(np.uint8))) == sorted(map(bytes, cropped))
  with data.make_batch_iterator(cfg, 8, 4, seed=0) as it:
    assert next(it).shape == (4, 8, 8, 3)

  np.savez(tmp_path / 'single.npz', x=images)
  cfg = _data_config(npz=str(tmp_path / 'single.npz'))
  with data.make_batch_iterator(cfg, 8, 4, seed=0) as it:
    assert next(it).shape == (4, 8, 8, 3)

  np.savez(tmp_path / 'two.npz', x=images, y=images)
  with pytest.raises(ValueError, match="'images'"):
    data.describe_source(_data_config(npz=str(tmp_path / 'two.npz')))
  np.savez(tmp_path / 'float.npz', images=images.astype(np.float32))
  with pytest.raises(ValueError, match='uint8'):
    data.describe_source(_data_config(npz=str(tmp_path / 'float.npz')))
  with pytest.raises(ValueError, match='missing.npz'):
    data.describe_source(_data_config(npz=str(tmp_path / 'missing.npz')))


@pytest.mark.parametrize('name,resolution', [('svhn_cropped', 32),
                                             ('celeb_a', 16)])
def test_tfds_source_on_mock_data(name, resolution):
  tfds = pytest.importorskip('tensorflow_datasets')
  # mock_data replaces the reads with random examples that follow the
  # dataset's features; tfds.data_source needs no TensorFlow for that.
  with tfds.testing.mock_data(num_examples=10):
    cfg = _data_config(tfds_name=name, split='train')
    assert data.describe_source(cfg) == f'tfds {name}:train (10 images)'
    with data.make_batch_iterator(cfg, resolution, 6, seed=0) as it:
      batches = _batches(it, 3)
    with data.make_batch_iterator(cfg, resolution, 6, seed=0,
                                  start_batch=2) as it:
      resumed = next(it)
  assert batches[0].shape == (6, resolution, resolution, 3)
  assert batches[0].dtype == np.float32
  assert all(b.min() >= -1 and b.max() <= 1 for b in batches)
  np.testing.assert_array_equal(resumed, batches[2])


# ----------------------------------------------------------------------------
# Errors.


def test_source_selection_errors(tmp_path):
  with pytest.raises(ValueError, match=r'config\.data\.folder.*none is set'):
    data.make_batch_iterator(_data_config(), 8, 4, seed=0)
  with pytest.raises(ValueError, match=r'got config\.data\.folder=.* and '
                     r'config\.data\.npz='):
    data.describe_source(_data_config(folder=str(tmp_path), npz='x.npz'))


def test_missing_and_empty_folders(tmp_path):
  missing = tmp_path / 'nope'
  with pytest.raises(ValueError, match='nope.*does not exist'):
    data.make_batch_iterator(_data_config(folder=str(missing)), 8, 4, seed=0)
  (tmp_path / 'empty' / 'sub').mkdir(parents=True)
  (tmp_path / 'empty' / 'readme.txt').write_text('x')
  with pytest.raises(ValueError, match='empty.*contains no images'):
    data.describe_source(_data_config(folder=str(tmp_path / 'empty')))


def _folder_with_a_corrupt_file(tmp_path):
  folder = _write_index_images(tmp_path / 'images', 4)
  (folder / 'x.jpg').write_bytes(b'definitely not a jpeg' * 10)
  return folder


def test_corrupt_file_is_named(tmp_path):
  folder = _folder_with_a_corrupt_file(tmp_path)
  with data.make_batch_iterator(_data_config(folder=str(folder)), 4, 5,
                                seed=0) as it:
    with pytest.raises(errors.CorruptImageError, match=r'x\.jpg'):
      next(it)
  with pytest.raises(errors.CorruptImageError, match=r'x\.jpg'):
    data.load_images(folder, 4)
  assert issubclass(errors.CorruptImageError, ValueError)


def test_truncated_jpeg_is_corrupt(tmp_path):
  Image.new('RGB', (64, 64), (1, 2, 3)).save(tmp_path / 'full.jpg')
  raw = (tmp_path / 'full.jpg').read_bytes()
  (tmp_path / 'cut.jpg').write_bytes(raw[:len(raw) // 2])
  with pytest.raises(errors.CorruptImageError, match=r'cut\.jpg'):
    data.load_images([tmp_path / 'cut.jpg'], 8)


def test_skip_corrupt_counts_and_replaces(tmp_path):
  folder = _folder_with_a_corrupt_file(tmp_path)
  cfg = _data_config(folder=str(folder), skip_corrupt=True)
  with data.make_batch_iterator(cfg, 4, 5, seed=0) as it:
    batch = next(it)
    assert it.num_skipped == 1
    next(it)
    assert it.num_skipped == 1  # Distinct files, not occurrences.
  assert batch.shape == (5, 4, 4, 3)
  # x.jpg sorts last: its deterministic replacement wraps around to 000.png.
  np.testing.assert_array_equal(np.sort(_indices(batch)), [0, 0, 1, 2, 3])


def test_skip_corrupt_with_nothing_readable(tmp_path):
  (tmp_path / 'a.png').write_bytes(b'garbage')
  (tmp_path / 'b.jpg').write_bytes(b'\xff\xd8 garbage')
  cfg = _data_config(folder=str(tmp_path), skip_corrupt=True)
  with data.make_batch_iterator(cfg, 4, 2, seed=0) as it:
    with pytest.raises(ValueError, match='no image could be read'):
      next(it)


# ----------------------------------------------------------------------------
# The real data (skipped in a clone without ../shared/data).


def test_real_celeba64_batch():
  folder = SHARED_DATA / 'celeba64' / 'train'
  if not folder.is_dir():
    pytest.skip(f'no shared data at {folder}')
  cfg = _data_config(folder=str(folder))
  with data.make_batch_iterator(cfg, 32, 64, seed=0) as it:
    batch = next(it)
  assert batch.shape == (64, 32, 32, 3) and batch.dtype == np.float32
  assert batch.min() >= -1 and batch.max() <= 1
  assert batch.std() > 0.1  # Real faces, not a constant.
