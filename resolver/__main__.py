"""`python -m resolver` runs the `sinkhole` command line."""

import sys

from resolver.cli import main

sys.exit(main())
