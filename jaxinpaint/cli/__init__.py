"""What the command lines share; each CLI is a module here."""
from jaxinpaint import _lazy

__getattr__, __dir__, __all__ = _lazy.exports(__name__, {
    # common
    'USAGE': 'common', 'FAILURE': 'common', 'INTERRUPTED': 'common',
    'TERMINATED': 'common',
    'sigterm_raises': 'common', 'interrupt_code': 'common',
    'USER_ERRORS': 'common', 'fail': 'common', 'run_checked': 'common',
    'parse_flags': 'common', 'prepare_host': 'common',
})
