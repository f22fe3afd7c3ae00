"""``python -m nasa_lens``: the ``nasa-lens`` command line."""
import sys

from nasa_lens.cli import main

sys.exit(main())
