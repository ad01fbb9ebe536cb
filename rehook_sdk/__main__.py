"""
``python -m rehook_sdk``: the ``rehook`` command.
"""

import sys

from ._cli import main

sys.exit(main())
