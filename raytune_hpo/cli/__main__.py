"""``python -m raytune_hpo.cli``: the ``raytune-hpo`` command."""

import sys

from raytune_hpo.cli.commands import main

sys.exit(main())
