"""The checkout's entry point for ``invoke``: the same tasks the installed ``wheelforge`` command runs.

The tasks themselves live in :mod:`wheelforge.cli.tasks` so an installed wheelforge (pip, pipx)
carries them; ``python -m invoke --list`` here and ``wheelforge --list`` show the same list.
"""

from wheelforge.cli.tasks import ns  # noqa: F401
