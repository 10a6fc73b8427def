"""``python -m kaggle_kit.cli``: the same as the ``kaggle-kit`` command."""

import sys

from kaggle_kit.cli.main import main

sys.exit(main())
