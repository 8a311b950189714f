"""wheelforge's command line: Invoke tasks that parse flags and call the library.

Nothing here decides how to build; see ``src/wheelforge``.  Imports stay inside the
tasks so ``invoke --list`` and no-op rebuilds start fast.
"""

from __future__ import annotations

import functools

from invoke import Collection, Exit, task

COMMON = {
    "compiler_cache": "auto (default), sccache, ccache or none",
    "installer": "what fills the build venv: pip (default; reads pip.conf and PIP_*) or uv (faster; reads UV_* only)",
    "jobs": "parallel compile jobs (default: from free memory and cores)",
    "arch": "CUDA archs: 12.0, 120, sm_120, 12.0a, 12.0+PTX; lists with ; , or spaces (default 12.0)",
    "cuda": "CUDA version of the toolkit: 12.8 (default), 13.0, ... or auto",
    "version": "upstream version of the recipe (default: the recipe's default_version)",
    "recipes_dir": "extra folder of recipe TOML files (also WHEELFORGE_RECIPE_PATH)",
    "wheelhouse": "wheelhouse folder (default ./wheelhouse, or WHEELFORGE_WHEELHOUSE)",
    "json": "print JSON instead of a table",
    "with_": "build against a pinned upstream release, e.g. torch==2.15.0 (repeatable)",
    "source": "build this local checkout instead of the pinned source",
    "source_name": "build the version's other pinned source of this name ([versions.X.sources.NAME] in the recipe)",
    "no_isolation": "use the current interpreter's packages instead of a build venv",
    "offline": "use only the source cache",
}


def command(**options):
    """``@task`` with the shared flag help, keeping only help for flags the task has."""

    def decorate(fn):
        import inspect as _inspect

        params = set(_inspect.signature(fn).parameters)
        helps = {k: v for k, v in {**COMMON, **options.pop("help", {})}.items() if k in params}
        return task(help=helps, **options)(edge(fn))

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


@command(help={})
def toolchain(c, cuda=None, json=False):
    """Show the CUDA toolkit, host compiler, cmake, ninja, compiler caches, driver and GPUs found."""
    from wheelforge.cli.commands import show_toolchain

    show_toolchain(_settings(cuda=cuda), as_json=json)


@command(help={"recipe": "recipe name(s), comma-separated"}, iterable=["with_"])
def plan(c, recipe, version=None, arch=None, cuda=None, json=False, recipes_dir=None, with_=None,
         source=None, no_isolation=False, jobs=None, compiler_cache=None, installer=None, source_name=None):
    """Print the build plan (source, patches, env, commands, wheel name, cache key) without running anything."""
    from wheelforge.cli.commands import show_plan

    show_plan(_settings(arch=arch, cuda=cuda, recipes_dir=recipes_dir, jobs=jobs, compiler_cache=compiler_cache,
                        installer=installer),
              _split(recipe), version=version,
              with_pins=with_ or [], source=source, no_isolation=no_isolation, as_json=json, source_name=source_name)


@command(help={"recipe": "recipe name", "offline": "use only the source cache"})
def fetch(c, recipe, version=None, offline=False, recipes_dir=None):
    """Download and verify a recipe's pinned source into the source cache."""
    from wheelforge.cli.commands import fetch_recipe

    fetch_recipe(_settings(recipes_dir=recipes_dir), recipe, version=version, offline=offline)


@command(name="check", help={"recipe": "recipe name", "offline": "use only the source cache"})
def patches_check(c, recipe, offline=False, recipes_dir=None):
    """Check that every patch of every listed version applies to its pristine source."""
    from wheelforge.cli.commands import check_patches

    check_patches(_settings(recipes_dir=recipes_dir), recipe, offline=offline)


@command(help={"recipe": "recipe name(s), comma-separated",
            "jobs": "parallel compile jobs (default: from free memory and cores)",
            "no_verify": "skip the post-build test suite (the static audit still runs)",
            "allow_arch_mismatch": "let verify run GPU tests on a GPU the wheel does not cover",
            "replace": "a different wheel under a file name the wheelhouse holds: store it with the next build number, yank the old",
            "verbose": "show every command and its output (the build log has them always)"},
      iterable=["with_"])
def build(c, recipe, version=None, arch=None, cuda=None, jobs=None, no_isolation=False, with_=None, source=None,
          no_verify=False, offline=False, recipes_dir=None, wheelhouse=None, compiler_cache=None,
          allow_arch_mismatch=False, installer=None, replace=False, verbose=False, source_name=None):
    """Build wheels: fetch, patch, compile, audit, store, verify. A key already built is a no-op."""
    from wheelforge.cli.commands import build_recipes

    build_recipes(_settings(arch=arch, cuda=cuda, jobs=jobs, recipes_dir=recipes_dir, wheelhouse=wheelhouse,
                            compiler_cache=compiler_cache, installer=installer),
                  _split(recipe), version=version, no_isolation=no_isolation, with_pins=with_ or [], source=source,
                  verify=not no_verify, offline=offline, allow_arch_mismatch=allow_arch_mismatch, replace=replace, verbose=verbose,
                  source_name=source_name)


@command(help={"recipe": "recipe name(s), comma-separated (default: every recipe)",
               "python": "Python versions to lock for, comma-separated (default: the running one)",
               "cuda": "CUDA versions whose NVIDIA wheels to lock, for recipes with [build] nvidia (comma-separated)"})
def lock(c, recipe=None, python=None, cuda=None, recipes_dir=None):
    """Resolve recipes' build requirements into hashed locks beside them (recipes/locks/); builds install only those files."""
    from wheelforge.cli.commands import lock_recipes

    lock_recipes(_settings(recipes_dir=recipes_dir), _split(recipe), _split(python), _split(cuda) or ["12.8"])


@command(help={"path": "a wheel, a .so, or a folder"})
def inspect(c, path, arch=None, json=False):
    """Static audit: list the SASS/PTX in every CUDA binary and check the requested archs."""
    from wheelforge.cli.commands import inspect_path

    inspect_path(_settings(arch=arch), path, as_json=json)


@command(help={"python": "interpreter whose environment to check (default: this one); its packages are read, not imported",
               "arch": "judge for these compute capabilities instead of the GPUs found: 12.0, '9.0;12.0'",
               "driver": "judge for this NVIDIA driver version instead of the installed one, e.g. 570.86.10"})
def doctor(c, python=None, arch=None, driver=None, json=False, recipes_dir=None):
    """Which installed CUDA packages will fail on this machine's GPUs (no kernel, driver too old, torch mismatch), and the fix."""
    from wheelforge.cli.commands import run_doctor

    run_doctor(_settings(recipes_dir=recipes_dir), python=python, arch=arch, driver=driver, as_json=json)


@command(help={"target": "a recipe name or a wheel path",
            "allow_arch_mismatch": "run GPU tests even when the GPU is not in the wheel's arch list",
            "system_site_packages": "let the test venv see the interpreter's packages (a machine whose torch can't be reinstalled offline)",
            "offline": "install nothing from package indexes (wheelhouse and local wheels only)",
            "find_links": "another folder of wheels for the test venv (repeatable)"},
         iterable=["find_links"])
def verify(c, target, arch=None, cuda=None, version=None, wheelhouse=None, recipes_dir=None, allow_arch_mismatch=False,
           system_site_packages=False, offline=False, find_links=None):
    """Run the post-build test suite for a wheel in a fresh venv; write verify.json beside it."""
    from wheelforge.cli.commands import verify_target

    verify_target(_settings(arch=arch, cuda=cuda, wheelhouse=wheelhouse, recipes_dir=recipes_dir), target,
                  version=version, allow_arch_mismatch=allow_arch_mismatch, system_site_packages=system_site_packages,
                  offline=offline, find_links=find_links or [])


@command(help={"print_config": "print pip/uv client recipes for this index instead",
               "base_url": "URL the index is served at (for --print-config)",
               "pin": "NAME==VERSION to pin in the client recipes (repeatable)",
               "rehash": "re-hash every wheel instead of trusting entry.json",
               "variants": "also publish each CUDA wheel as a PEP 825 variant wheel (uv --preview-features wheel-variants)",
               "include_unverified": "also serve wheels whose post-build suite did not pass or did not run (marked on the page)"},
         iterable=["pin"])
def index(c, wheelhouse=None, print_config=False, base_url="http://127.0.0.1:8080", pin=None, rehash=False, variants=False,
          include_unverified=False):
    """Write the static Simple Repository API tree (PEP 503/691/658) from the wheelhouse."""
    from wheelforge.cli.commands import write_index

    write_index(_settings(wheelhouse=wheelhouse), print_config=print_config, base_url=base_url, pins=pin or [],
                rehash=rehash, variants=variants, include_unverified=include_unverified)


@command(help={"host": "address to bind (default 127.0.0.1)", "port": "port (default 8080)",
               "workers": "server worker processes (default 1)"})
def serve(c, wheelhouse=None, host="127.0.0.1", port=8080, workers=1):
    """Serve the wheelhouse's index and its page for people, read-only."""
    from wheelforge.cli.commands import serve_index

    serve_index(_settings(wheelhouse=wheelhouse), host=host, port=int(port), workers=int(workers))


@command(help={"repository_url": "upload URL of the remote index (pypiserver, devpi, ...)",
               "path": "upload only this wheel or entry folder (repeatable; default: the whole wheelhouse)",
               "simple_url": "the remote's simple API, checked for existing files (default <repository-url>/simple/)",
               "sidecar_dir": "folder (a shared mount) that receives <wheel>.provenance.json and <wheel>.verify.json",
               "recipe": "upload only the wheelhouse entries of these recipes (comma-separated)"},
         iterable=["path"])
def publish(c, repository_url, wheelhouse=None, path=None, simple_url=None, sidecar_dir=None, recipe=None):
    """Upload wheels (twine-compatible) and their provenance/report sidecars; never overwrites an existing file."""
    from wheelforge.cli.commands import publish_wheels

    publish_wheels(_settings(wheelhouse=wheelhouse), repository_url, paths=path or [], simple_url=simple_url,
                   sidecar_dir=sidecar_dir, recipes=_split(recipe))


@command(name="matrix", help={"recipes": "comma-separated recipes (default: all)",
                           "pythons": "comma-separated Python versions, e.g. 3.10,3.11,3.12,3.13"})
def farm_matrix(c, recipes=None, pythons=None, arch=None, cuda=None, recipes_dir=None, json=False):
    """The build matrix in GitHub Actions' fromJSON shape, in dependency order."""
    from wheelforge.cli.commands import show_matrix

    show_matrix(_settings(arch=arch, cuda=cuda, recipes_dir=recipes_dir), _split(recipes), _split(pythons), as_json=json)


@command(name="status", help={"recipes": "comma-separated recipes (default: all)",
                           "pythons": "comma-separated Python versions", "index_url": "a remote simple index to check instead of the wheelhouse"})
def farm_status(c, recipes=None, pythons=None, arch=None, cuda=None, recipes_dir=None, wheelhouse=None, index_url=None,
                json=False):
    """Which matrix wheels exist in the store, which are missing, which failed last (with log links)."""
    from wheelforge.cli.commands import show_farm_status

    show_farm_status(_settings(arch=arch, cuda=cuda, recipes_dir=recipes_dir, wheelhouse=wheelhouse),
                     _split(recipes), _split(pythons), index_url=index_url, as_json=json)


ns = Collection(doctor, toolchain, plan, lock, fetch, build, inspect, verify, index, serve, publish)
ns.add_collection(Collection("patches", patches_check))
ns.add_collection(Collection("farm", farm_matrix, farm_status))
