"""wheelforge's command line: Invoke tasks that parse flags and call the library.

Nothing here decides how to build; see ``src/wheelforge``.  Imports stay inside the
tasks so ``invoke --list`` and no-op rebuilds start fast.
"""

from __future__ import annotations

import functools

from invoke import Collection, Exit, task


def command(**options):
    """``@task`` with the flag vocabulary (:mod:`wheelforge.cli.vocabulary`): one long name and at most one short
    flag per concept in every task; ``help`` words a flag for this task, never renames it."""

    def decorate(fn):
        import inspect as _inspect

        from wheelforge.cli.vocabulary import FLAGS, Command

        params = [p for p in _inspect.signature(fn).parameters if p != "c"]
        helps = {p: FLAGS[p].help for p in params if p in FLAGS} | options.pop("help", {})
        return task(help=helps, klass=Command, auto_shortflags=False, **options)(edge(fn))

    return decorate


def edge(fn):
    """Turn the library's errors into a two-line message and an exit code, never a traceback."""

    @functools.wraps(fn)
    def wrapper(c, *args, **kwargs):
        from wheelforge.model.errors import WheelforgeError

        try:
            return fn(c, *args, **kwargs)
        except WheelforgeError as err:
            raise Exit(err.render(), code=err.exit_code) from None
        except KeyboardInterrupt:
            raise Exit("interrupted", code=130) from None  # the library says what it left behind when it knows

    return wrapper


def _settings(**flags):
    from wheelforge.cli.commands import settings_from

    return settings_from(flags)


def _split(value):
    return [v for v in (value or "").replace(" ", ",").split(",") if v]


def _echo(verbose: bool):
    """Where ``-v`` sends commands and tool output: stderr, as the build's reporter does."""
    import sys

    from wheelforge.model.report import silent

    return (lambda line: print(line, file=sys.stderr, flush=True)) if verbose else silent


@command()
def toolchain(c, cuda=None, json=False):
    """Show the CUDA toolkit, host compiler, cmake, ninja, compiler caches, driver and GPUs found."""
    from wheelforge.cli.commands import show_toolchain

    show_toolchain(_settings(cuda=cuda), as_json=json)


@command(help={"recipe": "recipe name(s), comma-separated (positional: invoke plan torch)"}, iterable=["with_"])
def plan(c, recipe, version=None, arch=None, cuda=None, json=False, recipes_dir=None, with_=None,
         source=None, no_isolation=False, jobs=None, compiler_cache=None, installer=None, source_name=None):
    """Print the build plan of RECIPE (source, patches, env, commands, wheel name, cache key) without running anything."""
    from wheelforge.cli.commands import show_plan

    show_plan(_settings(arch=arch, cuda=cuda, recipes_dir=recipes_dir, jobs=jobs, compiler_cache=compiler_cache,
                        installer=installer),
              _split(recipe), version=version,
              with_pins=with_ or [], source=source, no_isolation=no_isolation, as_json=json, source_name=source_name)


@command(help={"recipe": "recipe name (positional: invoke fetch torch)"})
def fetch(c, recipe, version=None, offline=False, recipes_dir=None, verbose=False):
    """Download and verify RECIPE's pinned source into the source cache."""
    from wheelforge.cli.commands import fetch_recipe

    fetch_recipe(_settings(recipes_dir=recipes_dir), recipe, version=version, offline=offline, echo=_echo(verbose))


@command(name="check", help={"recipe": "recipe name (positional: invoke patches.check torch)"})
def patches_check(c, recipe, offline=False, recipes_dir=None, verbose=False):
    """Check that every patch of every listed version of RECIPE applies to its pristine source."""
    from wheelforge.cli.commands import check_patches

    check_patches(_settings(recipes_dir=recipes_dir), recipe, offline=offline, echo=_echo(verbose))


@command(help={"recipe": "recipe name(s), comma-separated (positional: invoke build demo-cuda)"}, iterable=["with_"])
def build(c, recipe, version=None, arch=None, cuda=None, jobs=None, no_isolation=False, with_=None, source=None,
          no_verify=False, offline=False, recipes_dir=None, wheelhouse=None, compiler_cache=None,
          allow_arch_mismatch=False, installer=None, replace=False, verbose=False, source_name=None):
    """Build RECIPE's wheel: fetch, patch, compile, audit, store, verify. A key already built is a no-op."""
    from wheelforge.cli.commands import build_recipes

    build_recipes(_settings(arch=arch, cuda=cuda, jobs=jobs, recipes_dir=recipes_dir, wheelhouse=wheelhouse,
                            compiler_cache=compiler_cache, installer=installer),
                  _split(recipe), version=version, no_isolation=no_isolation, with_pins=with_ or [], source=source,
                  verify=not no_verify, offline=offline, allow_arch_mismatch=allow_arch_mismatch, replace=replace, verbose=verbose,
                  source_name=source_name)


@command(help={"recipe": "recipe name(s), comma-separated (default: every recipe)",
               "python": "Python versions to lock for, comma-separated (default: the running one)",
               "cuda": "CUDA versions whose NVIDIA wheels to lock, for recipes with [build] nvidia (comma-separated; default 12.8)"})
def lock(c, recipe=None, python=None, cuda=None, recipes_dir=None):
    """Resolve recipes' build requirements into hashed locks beside them (recipes/locks/); builds install only those files."""
    from wheelforge.cli.commands import lock_recipes

    lock_recipes(_settings(recipes_dir=recipes_dir), _split(recipe), _split(python), _split(cuda) or ["12.8"])


@command(help={"path": "a wheel, a .so, or a folder (positional: invoke inspect dist/x.whl)"})
def inspect(c, path, arch=None, json=False):
    """Static audit of PATH: list the SASS/PTX in every CUDA binary and check the requested archs."""
    from wheelforge.cli.commands import inspect_path

    inspect_path(_settings(arch=arch), path, as_json=json)


@command(help={"python": "interpreter whose environment to check (default: this one); its packages are read, not imported",
               "arch": "judge for these compute capabilities instead of the GPUs found: 12.0, '9.0;12.0'"})
def doctor(c, python=None, arch=None, driver=None, json=False, recipes_dir=None):
    """Which installed CUDA packages will fail on this machine's GPUs (no kernel, driver too old, torch mismatch), and the fix."""
    from wheelforge.cli.commands import run_doctor

    run_doctor(_settings(recipes_dir=recipes_dir), python=python, arch=arch, driver=driver, as_json=json)


@command(help={"recipe": "a recipe name (its newest wheelhouse entry) or a wheel path (positional: invoke verify demo-cuda)",
               "system_site_packages": "let the test venv see the interpreter's packages (a machine whose torch can't be reinstalled offline)",
               "offline": "install nothing from package indexes (wheelhouse and local wheels only)"},
         iterable=["find_links"])
def verify(c, recipe, arch=None, cuda=None, version=None, wheelhouse=None, recipes_dir=None, allow_arch_mismatch=False,
           system_site_packages=False, offline=False, find_links=None, verbose=False):
    """Run the post-build test suite for RECIPE's wheel (or a wheel file) in a fresh venv; write verify.json beside it."""
    from wheelforge.cli.commands import verify_target

    verify_target(_settings(arch=arch, cuda=cuda, wheelhouse=wheelhouse, recipes_dir=recipes_dir), recipe,
                  version=version, allow_arch_mismatch=allow_arch_mismatch, system_site_packages=system_site_packages,
                  offline=offline, find_links=find_links or [], echo=_echo(verbose))


@command(help={"arch": "with --print-config: pin the builds for these archs first (default 12.0)"}, iterable=["pin"])
def index(c, wheelhouse=None, print_config=False, base_url="http://127.0.0.1:8080", pin=None, rehash=False, variants=False,
          arch=None, include_unverified=False):
    """Write the static Simple Repository API tree (PEP 503/691/658) from the wheelhouse: verified wheels only, by default."""
    from wheelforge.cli.commands import write_index

    write_index(_settings(wheelhouse=wheelhouse, arch=arch), print_config=print_config, base_url=base_url, pins=pin or [],
                rehash=rehash, variants=variants, include_unverified=include_unverified)


@command()
def serve(c, wheelhouse=None, host="127.0.0.1", port=8080, workers=1):
    """Serve the wheelhouse's index and its page for people, read-only."""
    from wheelforge.cli.commands import serve_index

    serve_index(_settings(wheelhouse=wheelhouse), host=host, port=int(port), workers=int(workers))


@command(help={"repository_url": "upload URL of the remote index (positional: invoke publish https://pypi.internal/)",
               "path": "upload only this wheel or entry folder (repeatable; default: the whole wheelhouse)",
               "index_url": "the remote's simple/ URL, read for files already there (default <repository-url>/simple/)",
               "recipe": "upload only the wheelhouse entries of these recipes (comma-separated)"},
         iterable=["path"])
def publish(c, repository_url, wheelhouse=None, path=None, index_url=None, sidecar_dir=None, recipe=None):
    """Upload wheels (twine-compatible) to REPOSITORY_URL with their provenance/report sidecars; never overwrites a file."""
    from wheelforge.cli.commands import publish_wheels

    publish_wheels(_settings(wheelhouse=wheelhouse), repository_url, paths=path or [], simple_url=index_url,
                   sidecar_dir=sidecar_dir, recipes=_split(recipe))


@command(name="matrix", help={"recipe": "recipes, comma-separated (default: all)",
                              "python": "Python versions, comma-separated (default 3.10,3.11,3.12,3.13)"})
def farm_matrix(c, recipe=None, python=None, arch=None, cuda=None, recipes_dir=None, json=False):
    """The build matrix in GitHub Actions' fromJSON shape, in dependency order."""
    from wheelforge.cli.commands import show_matrix

    show_matrix(_settings(arch=arch, cuda=cuda, recipes_dir=recipes_dir), _split(recipe), _split(python), as_json=json)


@command(name="status", help={"recipe": "recipes, comma-separated (default: all)",
                              "python": "Python versions, comma-separated (default 3.10,3.11,3.12,3.13)",
                              "index_url": "the simple/ URL of the farm's index, checked instead of the wheelhouse"})
def farm_status(c, recipe=None, python=None, arch=None, cuda=None, recipes_dir=None, wheelhouse=None, index_url=None,
                json=False):
    """Which matrix wheels exist in the store, which are missing, which failed last (with log links)."""
    from wheelforge.cli.commands import show_farm_status

    show_farm_status(_settings(arch=arch, cuda=cuda, recipes_dir=recipes_dir, wheelhouse=wheelhouse),
                     _split(recipe), _split(python), index_url=index_url, as_json=json)


ns = Collection(doctor, toolchain, plan, lock, fetch, build, inspect, verify, index, serve, publish)
ns.add_collection(Collection("patches", patches_check))
ns.add_collection(Collection("farm", farm_matrix, farm_status))
