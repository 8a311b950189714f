"""Data that ships with wheelforge: recipes, patches, examples and the post-build suite.

Mapped in from the repository's top-level folders at build time (see pyproject.toml and
:mod:`wheelforge.model.bundled`); nothing here is copied by hand.
"""
