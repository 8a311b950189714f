"""``python -m wheelforge``: the same program as the ``wheelforge`` console script."""

from wheelforge.cli.program import main

main()
