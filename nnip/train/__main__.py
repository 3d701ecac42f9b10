"""``python -m nnip.train TASK ...``: train one task for a time budget (see ``--help``)."""

from __future__ import annotations

import sys

from nnip.train.cli import main

if __name__ == "__main__":
    sys.exit(main())
