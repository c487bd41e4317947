"""`python -m resolver` runs the `sinkhole` command line."""

import sys

from resolver.service.cli import main

sys.exit(main())
