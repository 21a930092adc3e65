"""Stage 1, the sweep file and its space: what a user wrote, as validated data.

- ``spec``: ``SweepSpec.from_yaml(path)``, the sweep file (bounded YAML, one-line errors).
- ``space``, ``params``, ``conditions``: the typed search space (``SearchSpace``), its
  parameters and their ``when:`` conditions.
- ``sections``: the ``trainable:`` section, typed (the built-in CNN's settings or a user's
  function with its config), validated when the file is read.
- ``load``: user code named ``FILE.py:NAME`` or ``package.module:NAME``.

Nothing here decides what the names mean (``raytune_hpo.plan`` does). May import: the shared
modules (``errors``, ``names``, ``storage``) and ``objectives``.
"""
