"""Build kinds: one strategy per way a project turns into a wheel.

A kind contributes the steps between "patched source at ``{work}/src``" and "one wheel in
``{work}/out``"; the planner puts the common steps around them (fetch, patch before; label,
relocate, audit, store, verify after).  Adding a kind is adding a class here and naming it in
:data:`KINDS`; nothing else branches on the kind.

* ``pep517``: the project builds its own wheel (setuptools, scikit-build-core...):
  ``pip wheel --no-build-isolation`` in a build venv.
* ``cmake``: the project is a plain CMake project whose products are programs and shared
  libraries; a small generated ``pyproject.toml`` lets scikit-build-core configure, build and
  install it into a wheel (see :mod:`wheelforge.model.cmake_wheel`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

from wheelforge.model.plan import WORK, Command, RunStep, Step, WriteFileStep
from wheelforge.model.recipe import Recipe


@dataclass(frozen=True)
class KindContext:
    """What a kind needs to emit its steps, all decided by the planner."""

    recipe: Recipe
    version: str
    full_version: str
    target_python: str  # the interpreter the wheel is for (makes the build venv)
    isolation: bool  # a build venv (True) or the target interpreter's own packages
    installs: tuple[str, ...]  # requirements of the build venv
    uv: str | None  # fill the venv with uv instead of pip
    compiler_cache: str | None  # launcher path, when one is used
    values: Mapping[str, str]  # the recipe placeholders, filled
    lock_file: str | None = None  # the build lock (hashes required), installed before ``installs``

    @property
    def env_dir(self) -> str:
        return f"{WORK}/env"

    @property
    def python(self) -> str:
        """The interpreter that runs the build."""
        return f"{self.env_dir}/bin/python" if self.isolation else self.target_python

    def env_steps(self, extra_installs: Sequence[str] = ()) -> list[Step]:
        """The build venv, filled with the build requirements (none without isolation)."""
        if not self.isolation:
            return []
        installs = [*self.installs, *extra_installs]
        commands: list[Command] = []
        if self.uv:
            # --seed: the compile step runs the venv's own pip (`pip wheel`)
            commands.append(Command((self.uv, "venv", "--seed", "--python", self.target_python, self.env_dir), WORK, "env"))
            pip: tuple[str, ...] = (self.uv, "pip", "install", "--python", self.python)
        else:
            commands.append(Command((self.target_python, "-m", "venv", self.env_dir), WORK, "env"))
            pip = (self.python, "-m", "pip", "install", "--disable-pip-version-check")
        if self.lock_file:
            # exactly the locked files: any other file, or any package the lock does not name, is refused
            commands.append(Command((*pip, "--require-hashes", "--no-deps", "-r", self.lock_file), WORK, "env"))
        if installs:
            commands.append(Command((*pip, *installs), WORK, "env"))
        return [RunStep("env", tuple(commands))]

    def pip_wheel(self, project_dir: str) -> Command:
        return Command((self.python, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--disable-pip-version-check",
                        "-v", "--wheel-dir", f"{WORK}/out", project_dir), project_dir, "compile")


class BuildKind:
    """A strategy: the steps that turn ``{work}/src`` into one wheel in ``{work}/out``."""

    name: ClassVar[str]

    def steps(self, ctx: KindContext) -> list[Step]:
        raise NotImplementedError


class Pep517(BuildKind):
    name = "pep517"

    def steps(self, ctx: KindContext) -> list[Step]:
        src = f"{WORK}/src"
        return [*ctx.env_steps(), RunStep("compile", (ctx.pip_wheel(src),), compiler_cache=ctx.compiler_cache)]


class Cmake(BuildKind):
    """A plain CMake project packaged by scikit-build-core from a generated pyproject (wheelforge.model.cmake_wheel)."""

    name = "cmake"

    def steps(self, ctx: KindContext) -> list[Step]:
        from wheelforge.model.cmake_wheel import spec_for, wheel_pyproject

        pkg = f"{WORK}/pkg"
        spec = spec_for(ctx.recipe, ctx.version, full_version=ctx.full_version, source_dir="../src", values=ctx.values)
        return [
            *ctx.env_steps(),  # the recipe's [build] requires name the backend (locked like any other)
            WriteFileStep("package-project", f"{pkg}/pyproject.toml", wheel_pyproject(spec)),
            RunStep("compile", (ctx.pip_wheel(pkg),), compiler_cache=ctx.compiler_cache),
        ]


KINDS: Mapping[str, BuildKind] = {k.name: k for k in (Pep517(), Cmake())}
