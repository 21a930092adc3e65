"""``python -m raytune_hpo.cli``: the ``raytune-hpo`` command."""

import sys

from raytune_hpo.cli.main import main

sys.exit(main())
