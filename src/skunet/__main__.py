"""`python -m skunet ...`: the `skunet` command, for environments where its script is not installed."""

import sys

from skunet.cli import main

sys.exit(main())
