"""Images in: decoding, sources, the training batches, masks and grids."""
from jaxinpaint import _lazy

__getattr__, __dir__, __all__ = _lazy.exports(__name__, {
    # decoding
    'PathLike': 'decoding', 'IMAGE_EXTENSIONS': 'decoding',
    'exif_orientation': 'decoding',
    'upright': 'decoding', 'upright_size': 'decoding',
    'list_image_files': 'decoding',
    # sources
    'open_source': 'sources', 'describe_source': 'sources',
    'load_images': 'sources', 'cache_record': 'sources',
    'listing_record': 'sources',
    'load_all': 'sources',
    # pipeline
    'stream_indices': 'pipeline', 'epoch_permutation': 'pipeline',
    'BatchIterator': 'pipeline', 'make_batch_iterator': 'pipeline',
    'device_batches': 'pipeline',
})
