"""One vocabulary for the command line: every task's flags come from one table, the README shows that table."""

import re
from pathlib import Path

import pytest
from invoke import Program

from wheelforge.cli.tasks import ns
from wheelforge.cli.vocabulary import FLAGS

REPO = Path(__file__).resolve().parents[2]


def _arguments():
    """(task, argument) for every argument of every task in the collection the CLI runs."""
    return [(name, arg) for name in sorted(ns.task_names) for arg in ns[name].get_arguments()]


def test_every_flag_of_every_task_is_the_vocabularys():
    for task, arg in _arguments():
        param = arg.attr_name or arg.name
        flag = FLAGS[param]
        assert list(arg.names) == [flag.long] + ([flag.short] if flag.short else []), (task, param)


def test_a_short_flag_and_a_long_name_mean_one_thing_across_tasks():
    short_means: dict[str, set[str]] = {}
    long_means: dict[str, set[str]] = {}
    for _task, arg in _arguments():
        param = arg.attr_name or arg.name
        for n in arg.names:
            (short_means if len(n) == 1 else long_means).setdefault(n, set()).add(param)
    assert {s: p for s, p in short_means.items() if len(p) > 1} == {}
    assert {s: p for s, p in long_means.items() if len(p) > 1} == {}
    shorts = [f.short for f in FLAGS.values() if f.short]
    assert len(shorts) == len(set(shorts))


def test_no_task_takes_a_short_letter_of_invokes_own_options():
    """`-h` after a task must stay help; `-e`, `-r`, `-w`... stay invoke's."""
    core = {n for arg in Program().core_args() for n in arg.names if len(n) == 1}
    assert "h" in core
    ours = {n for _t, arg in _arguments() for n in arg.names if len(n) == 1}
    assert ours and not ours & core, ours & core


@pytest.mark.parametrize(("concept", "tasks"), [
    ("recipe", {"plan", "fetch", "patches.check", "build", "verify", "publish", "farm.matrix", "farm.status"}),
    ("recipes_dir", {"plan", "fetch", "patches.check", "build", "verify", "doctor", "farm.matrix", "farm.status"}),
    ("wheelhouse", {"build", "verify", "index", "serve", "publish", "farm.status"}),
    ("arch", {"plan", "build", "verify", "inspect", "doctor", "farm.matrix", "farm.status"}),
    ("cuda", {"toolchain", "plan", "build", "verify", "farm.matrix", "farm.status"}),
    ("index_url", {"publish", "farm.status"}),
    ("verbose", {"build", "verify", "fetch", "patches.check"}),
])
def test_the_same_concept_has_the_same_name_in_verify_publish_and_the_farm_tasks(concept, tasks):
    having = {task for task, arg in _arguments() if (arg.attr_name or arg.name) == concept}
    assert tasks <= having, tasks - having


def test_positionals_are_the_recipe_path_or_upload_url():
    positional = {name: [a.attr_name or a.name for a in ns[name].get_arguments() if a.positional] for name in ns.task_names}
    assert {n: p for n, p in positional.items() if p} == {
        "plan": ["recipe"], "fetch": ["recipe"], "patches.check": ["recipe"], "build": ["recipe"], "verify": ["recipe"],
        "inspect": ["path"], "publish": ["repository_url"],
    }


def test_readme_table_is_the_vocabulary():
    text = (REPO / "README.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| (.+?) \| `--([a-z-]+)` \| (?:`-([a-zA-Z])`)? \| (.*?) \|$", text, re.M)
    assert [(c, long_, short or None) for c, long_, short, _ in rows] == [(f.concept, f.long, f.short) for f in FLAGS.values()]
    uses = {}
    for task, arg in _arguments():
        uses.setdefault(arg.attr_name or arg.name, []).append(task)
    by_long = {f.long: ", ".join(sorted(uses.get(p, []))) for p, f in FLAGS.items()}
    assert {long_: tasks for _c, long_, _s, tasks in rows} == by_long
