"""The ``wheelforge`` console script: invoke's ``Program`` over the same task collection (as fabric ships ``fab``)."""

from __future__ import annotations


def main() -> None:
    from invoke import Program

    from wheelforge import __version__
    from wheelforge.cli.tasks import ns

    Program(namespace=ns, name="wheelforge", binary="wheelforge", version=__version__).run()
