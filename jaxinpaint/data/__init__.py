"""Images in: decoding, sources, the training batches, masks and grids."""
from jaxinpaint import _lazy

__getattr__, __dir__, __all__ = _lazy.exports(__name__, {
    # sources
    'PathLike': 'sources', 'IMAGE_EXTENSIONS': 'sources',
    'exif_orientation': 'sources',
    'upright': 'sources', 'upright_size': 'sources',
    'list_image_files': 'sources', 'open_source': 'sources',
    'describe_source': 'sources', 'stream_indices': 'sources',
    'epoch_permutation': 'sources', 'BatchIterator': 'sources',
    'make_batch_iterator': 'sources', 'load_images': 'sources',
    'cache_record': 'sources', 'load_all': 'sources',
    'device_batches': 'sources',
})
