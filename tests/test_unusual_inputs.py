"""Unusual but valid inputs to inpaint.py, and runs that were cut short:
one clear note or error, and the run does the right thing."""

import errno
import os
from pathlib import Path

import jax
import numpy as np
import pytest
from PIL import Image

from jaxinpaint import atomic, errors, host_memory
from jaxinpaint.cli import inpaint
from jaxinpaint.completion import api, batched
from jaxinpaint.data import masks
from jaxinpaint.inpaint_job import inputs
from jaxinpaint.models import loading
from test_inpaint_cli import FAST, RES, ckpt, cli, files_under, read_png, write_image  # pylint: disable=unused-import


def test_a_truncated_output_is_completed_again_on_resume(ckpt, tmp_path,
                                                          capsys):
  for i, name in enumerate('abc'):
    write_image(tmp_path / 'in' / f'{name}.png', seed=i)
  out = tmp_path / 'out'
  argv = ['--checkpoint', ckpt, '--input', tmp_path / 'in', '--out', out,
          '--evaluate', '--grid-max', '1', *FAST]
  code, first, _, err = cli(argv, capsys)
  assert code == 0, err
  whole = (out / 'b.png').read_bytes()
  before = read_png(out / 'b.png')
  (out / 'b.png').write_bytes(whole[:len(whole) // 2])  # the disk filled
  code, summary, _, err = cli(argv + ['--resume'], capsys)
  assert code == 0, err
  assert ('note: --resume: the outputs of b are truncated or unreadable; '
          'completing them again') in err
  assert '2 of 3 images are finished' in err
  # Completed alone now, in a padded batch: the same up to float rounding.
  again = read_png(out / 'b.png').astype(int)
  assert np.abs(again - before).max() <= 2
  assert summary['resumed'] == 2
  for key in ('mse', 'psnr', 'ssim', 'hole_mse'):
    assert summary[key] == pytest.approx(first[key], rel=1e-2), key


def test_a_truncated_grid_is_made_again_on_resume(ckpt, tmp_path, capsys):
  for i, name in enumerate('abc'):
    write_image(tmp_path / 'in' / f'{name}.png', seed=i)
  out = tmp_path / 'out'
  argv = ['--checkpoint', ckpt, '--input', tmp_path / 'in', '--out', out,
          '--grid-max', '2', *FAST]
  code, _, _, err = cli(argv, capsys)
  assert code == 0, err
  shape = read_png(out / 'grid.png').shape
  whole = (out / 'grid.png').read_bytes()
  (out / 'grid.png').write_bytes(whole[:len(whole) // 2])  # the disk filled
  code, _, _, err = cli(argv + ['--resume'], capsys)
  assert code == 0, err
  assert ('note: --resume: grid.png is truncated or unreadable; it shows the '
          'G(z) of the first 2 images (--grid-max), which no other file '
          'keeps: completing a, b again') in err
  assert '1 of 3 images are finished' in err  # c only
  assert read_png(out / 'grid.png').shape == shape  # decodes whole again


def test_the_longest_file_name_the_folder_takes_is_completed(ckpt, tmp_path,
                                                             capsys):
  """An output as long as the file system allows: its temporary file
  (`atomic.write`) must fit too, else no run or resume ever writes it."""
  longest = os.pathconf(tmp_path, 'PC_NAME_MAX')
  stem = 'f' * (longest - len('.png'))
  write_image(tmp_path / 'in' / f'{stem}.png')
  out = tmp_path / 'out'
  code, _, _, err = cli(['--checkpoint', ckpt, '--input', tmp_path / 'in',
                         '--out', out, *FAST], capsys)
  assert code == 0, err
  assert files_under(out) == sorted([f'{stem}.png', 'grid.png',
                                     f'raw/{stem}.png'])


def test_atomic_writes_fit_any_name_and_leave_nothing_on_failure(tmp_path):
  path = tmp_path / ('x' * os.pathconf(tmp_path, 'PC_NAME_MAX'))
  atomic.write_text(path, 'first')
  assert path.read_text() == 'first'
  plain = tmp_path / 'plain'
  plain.write_text('')
  # Made like any file (the umask's mode), not as a private temporary.
  assert path.stat().st_mode == plain.stat().st_mode
  plain.unlink()

  for error in (OSError(errno.ENOSPC, 'No space left on device'),
                KeyboardInterrupt()):

    def fails_half_way(tmp, error=error):
      Path(tmp).write_text('half')
      raise error

    with pytest.raises(type(error)):
      atomic.write(path, fails_half_way)
    assert path.read_text() == 'first'
    assert os.listdir(tmp_path) == [path.name]  # no temporary file left


def parse(argv):
  return inpaint.build_parser().parse_args([str(a) for a in argv])


def test_an_out_folder_inside_the_input_folder_is_skipped(ckpt, tmp_path,
                                                           capsys):
  for i, name in enumerate('ab'):
    write_image(tmp_path / 'in' / f'{name}.png', seed=i)
  out = tmp_path / 'in' / 'filled'
  argv = ['--checkpoint', ckpt, '--input', tmp_path / 'in', '--out', out,
          *FAST]
  code, _, _, err = cli(argv, capsys)
  assert code == 0, err
  code, _, _, err = cli(argv + ['--resume'], capsys)
  assert code == 0, err
  assert f'note: --input {tmp_path / "in"}: skipping {out}/ inside it' in err
  assert '2 of 2 images are finished' in err
  assert files_under(out) == ['a.png', 'b.png', 'grid.png', 'raw/a.png',
                              'raw/b.png']


def test_gif_webp_tiff_inputs_are_read_and_other_files_counted(
    ckpt, tmp_path, capsys):
  # Few colours: GIF's palette and lossless WebP keep them exactly.
  blocks = np.kron(np.arange(16, dtype=np.uint8).reshape(4, 4) * 16,
                   np.ones((RES // 4, RES // 4), np.uint8))
  pixels = np.stack([blocks, 255 - blocks, blocks // 2], -1)
  folder = tmp_path / 'in'
  folder.mkdir()
  for ext, kwargs in (('png', {}), ('gif', {}), ('webp', {'lossless': True}),
                      ('tif', {}), ('tiff', {}), ('bmp', {})):
    Image.fromarray(pixels).save(folder / f'face_{ext}.{ext}', **kwargs)
  (folder / 'notes.txt').write_text('not an image')
  (folder / 'list.csv').write_text('a,b')
  images, names = inputs.load_inputs(str(folder), RES)
  assert names == ['face_bmp', 'face_gif', 'face_png', 'face_tif',
                   'face_tiff', 'face_webp']
  expected = pixels.astype(np.float32) / 127.5 - 1
  for image in images.read(np.arange(len(images))):
    np.testing.assert_array_equal(image, expected)
  err = capsys.readouterr().err
  assert (f'note: --input {folder}: skipped 2 files that are not an image '
          '(list.csv, notes.txt; images are ') in err


def test_empty_paths_are_refused(ckpt, tmp_path, capsys):
  for flag in ('--input', '--out', '--mask', '--reference', '--checkpoint'):
    code, _, _, err = cli(['--out', tmp_path / 'out', flag, ''], capsys)
    assert code == 2
    assert err.strip().splitlines() == [
        f'error: {flag} is empty; expected a path'
        + (' or one of center, three_squares, random, free_form'
           if flag == '--mask' else '')], err
  assert not (tmp_path / 'out').exists()


def test_a_mostly_hole_mask_warns_that_it_may_be_inverted(ckpt, tmp_path,
                                                            capsys):
  write_image(tmp_path / 'in' / 'a.png')
  inverted = np.zeros((RES, RES), np.uint8)
  inverted[:6, :] = 255  # 6 of 64 rows known: 91% hole
  Image.fromarray(inverted).save(tmp_path / 'mask.png')
  checked = inpaint.prepare(parse(
      ['--checkpoint', ckpt, '--input', tmp_path / 'in', '--mask',
       tmp_path / 'mask.png', '--out', tmp_path / 'out']))
  checked.lock.release()  # `run` would release the lock on --out
  assert ('warning: the mask is 91% hole: in mask files white = known and '
          'black = hole; is the mask inverted?') in capsys.readouterr().err
  # The paper's center mask (25% hole) gives no such warning.
  inpaint.prepare(parse(['--checkpoint', ckpt, '--input', tmp_path / 'in',
                             '--out', tmp_path / 'out'])).lock.release()
  assert 'inverted' not in capsys.readouterr().err


def test_a_white_mask_with_alpha_uses_its_alpha(tmp_path):
  alpha = np.full((RES, RES), 255, np.uint8)
  alpha[16:48, 8:40] = 0  # the transparent hole
  rgba = np.dstack([np.full((RES, RES, 3), 255, np.uint8), alpha])
  Image.fromarray(rgba, 'RGBA').save(tmp_path / 'alpha.png')
  mask = masks.load_mask(str(tmp_path / 'alpha.png'), RES, RES)
  np.testing.assert_array_equal(mask[0, :, :, 0], (alpha >= 128).astype(
      np.float32))
  # Colour drawn on an opaque layer keeps the luminance rule.
  rgba[..., :3] = 0
  rgba[:, :RES // 2, :3] = 255
  rgba[..., 3] = 255
  Image.fromarray(rgba, 'RGBA').save(tmp_path / 'colour.png')
  mask = masks.load_mask(str(tmp_path / 'colour.png'), RES, RES)
  assert mask[0, :, :RES // 2].all() and not mask[0, :, RES // 2:].any()


def test_a_search_too_large_for_the_device_is_refused_before_compiling(
    ckpt, tmp_path, capsys, monkeypatch):
  for i in range(8):
    write_image(tmp_path / 'in' / f'{i}.png', seed=i)
  model = loading.load_model(ckpt)
  per_latent = (batched.SEARCH_MEMORY_FACTOR
                * batched.activation_bytes(model))
  params = batched.search_memory(model, 1, 1) - per_latent
  assert (batched.search_memory(model, 8, 10)
          == 80 * per_latent + params)
  # A device with room for 50 latents.
  monkeypatch.setattr(host_memory, 'free_memory',
                      lambda device: 50 * per_latent + params)
  monkeypatch.setattr(api, 'complete', None)  # must not be reached
  argv = ['--checkpoint', ckpt, '--input', tmp_path / 'in', '--out',
          tmp_path / 'out', '--steps', '2']
  code, _, _, err = cli(argv + ['--restarts', '100000', '--batch-size', '2'],
                        capsys)
  assert code == 2
  line = err.strip().splitlines()[-1]
  assert line.startswith('error: --restarts: 100000 latents per image need '
                         'about ')
  assert line.endswith('use at most 50')
  code, _, _, err = cli(argv + ['--restarts', '10', '--batch-size', '8'],
                        capsys)
  assert code == 2
  line = err.strip().splitlines()[-1]
  assert line.startswith('error: --batch-size: 8 images x 10 restarts need '
                         'about ')
  assert line.endswith('use at most 4, or fewer restarts')
  assert not (tmp_path / 'out').exists()  # nothing written, run.json neither
  # From Python the same check names the arguments, not the flags.
  with pytest.raises(errors.ArgumentError) as e:
    batched.check_search_memory(model, 8, 10, jax.devices()[:1])
  assert e.value.argument == 'batch_size'
  assert str(e.value).startswith('batch_size: 8 images x 10 restarts need')


def test_a_refused_search_leaves_the_outputs_of_an_earlier_run_alone(
    ckpt, tmp_path, capsys, monkeypatch):
  """The memory check refuses before anything in OUT changes: the earlier
  run's metrics and run.json stay, and it still resumes."""
  for i, name in enumerate('ab'):
    write_image(tmp_path / 'in' / f'{name}.png', seed=i)
  out = tmp_path / 'out'
  argv = ['--checkpoint', ckpt, '--input', tmp_path / 'in', '--out', out,
          '--evaluate', *FAST]
  code, _, _, err = cli(argv, capsys)
  assert code == 0, err
  before = {f: (out / f).read_bytes() for f in (*files_under(out),
                                                 'run.json')}
  assert 'metrics.csv' in before and 'summary.json' in before
  with monkeypatch.context() as patch:
    patch.setattr(host_memory, 'free_memory', lambda device: 1)  # no room
    code, _, _, err = cli(['--checkpoint', ckpt, '--input', tmp_path / 'in',
                           '--out', out, '--overwrite', '--restarts',
                           '100000', '--steps', '3', '--batch-size', '2'],
                          capsys)
  assert code == 2 and 'error: --restarts: 100000 latents' in err
  assert {f: (out / f).read_bytes() for f in before} == before
  assert files_under(out) == sorted(set(before) - {'run.json'})
  code, summary, _, err = cli(argv + ['--resume'], capsys)
  assert code == 0, err
  assert summary['resumed'] == 2


def test_resume_without_evaluate_removes_the_stale_metrics(ckpt, tmp_path,
                                                            capsys):
  for i, name in enumerate('abc'):
    write_image(tmp_path / 'in' / f'{name}.png', seed=i)
  out = tmp_path / 'out'
  argv = ['--checkpoint', ckpt, '--input', tmp_path / 'in', '--out', out,
          '--grid-max', '1', *FAST]
  code, _, _, err = cli(argv + ['--evaluate'], capsys)
  assert code == 0, err
  (out / 'c.png').unlink()
  code, _, _, err = cli(argv + ['--resume'], capsys)
  assert code == 0, err
  assert ('note: removed metrics.csv and summary.json of an earlier run with '
          '--evaluate') in err
  assert files_under(out) == ['a.png', 'b.png', 'c.png', 'grid.png',
                              'raw/a.png', 'raw/b.png', 'raw/c.png']
  # With nothing left to complete, the metrics still describe the images.
  code, _, _, err = cli(argv + ['--evaluate', '--resume'], capsys)
  assert code == 0, err
  code, _, _, err = cli(argv + ['--resume'], capsys)
  assert code == 0 and 'removed' not in err
  assert (out / 'metrics.csv').is_file() and (out / 'summary.json').is_file()
