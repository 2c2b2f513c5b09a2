"""Job file parser: every refusal names the file, the key and the problem."""

from __future__ import annotations

import json
import os
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivemr.errors import JobSpecError
from drivemr.spec import (
    PLACEHOLDERS,
    JobSpec,
    ShippedFile,
    StageSpec,
    expand,
    load_job,
    parse_duration,
)

WORDCOUNT = """
name = "wordcount"
files = ["count.py", "merge.py"]
[map]
command = ["python3", "{files}/count.py", "{input}"]
inputs = ["data/*.txt"]
outputs = ["counts.json"]
timeout = "10m"
max_attempts = 3
[reduce]
command = ["python3", "{files}/merge.py", "{results}"]
outputs = ["total.json"]
"""

ITEMS = """
[map]
command = ["echo", "{item}", "{task}"]
items = ["a", "b"]
"""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A job folder with code, a library folder and data files."""
    for rel in ["count.py", "merge.py", "lib/util.py", "lib/sub/deep.py"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("# code\n")
    (tmp_path / "data").mkdir()
    for name in ["b.txt", "a.txt", "c.csv"]:
        (tmp_path / "data" / name).write_text(name)
    (tmp_path / "data" / "sub").mkdir()
    (tmp_path / "data" / "sub" / "d.txt").write_text("d")
    return tmp_path


@pytest.fixture
def load(folder: Path) -> Callable[..., JobSpec]:
    def _load(text: str, name: str = "job.toml") -> JobSpec:
        path = folder / name
        path.write_text(textwrap.dedent(text))
        return load_job(path)

    return _load


@pytest.fixture
def error(load: Callable[..., JobSpec], folder: Path) -> Callable[..., str]:
    """The message of the JobSpecError a job file raises, with the folder prefix removed."""

    def _error(text: str, name: str = "job.toml") -> str:
        with pytest.raises(JobSpecError) as info:
            load(text, name)
        message = str(info.value)
        assert message.startswith(str(folder / name) + ": ")
        return message[len(str(folder)) + 1 :]

    return _error


def with_map(map_body: str, top: str = "") -> str:
    return f"{top}\n[map]\n{textwrap.dedent(map_body)}"


# -- valid job files ------------------------------------------------------------------


def test_issue_example_with_inputs(load: Callable[..., JobSpec], folder: Path) -> None:
    job = load(WORDCOUNT)
    assert job.name == "wordcount"
    assert job.path == folder / "job.toml"
    assert job.base_dir == folder
    assert job.files == (
        ShippedFile("count.py", folder / "count.py"),
        ShippedFile("merge.py", folder / "merge.py"),
    )
    assert job.map == StageSpec(
        command=("python3", "{files}/count.py", "{input}"),
        outputs=("counts.json",),
        timeout=600.0,
        max_attempts=3,
        env={},
    )
    assert [(t.id, t.input, t.item) for t in job.tasks] == [
        ("t0000", "data/a.txt", None),
        ("t0001", "data/b.txt", None),
    ]
    assert job.tasks[0].input_path == folder / "data" / "a.txt"
    assert job.reduce is not None
    assert job.reduce.command == ("python3", "{files}/merge.py", "{results}")
    assert job.reduce.timeout is None and job.reduce.max_attempts == 3


def test_inputs_sorted_deduplicated_recursive_and_folders_skipped(
    load: Callable[..., JobSpec],
) -> None:
    job = load(with_map('command = ["wc", "{input}"]\ninputs = ["data/**", "data/a.txt"]'))
    assert [t.input for t in job.tasks] == [
        "data/a.txt",
        "data/b.txt",
        "data/c.csv",
        "data/sub/d.txt",
    ]


def test_items_strings_and_numbers(load: Callable[..., JobSpec]) -> None:
    job = load(with_map('command = ["echo", "{item}"]\nitems = ["a", 2, 2.5, -3, "a"]'))
    assert [(t.id, t.item, t.input) for t in job.tasks] == [
        ("t0000", "a", None),
        ("t0001", "2", None),
        ("t0002", "2.5", None),
        ("t0003", "-3", None),
        ("t0004", "a", None),
    ]
    assert job.reduce is None


@pytest.mark.parametrize(
    ("bounds", "expected"),
    [
        ("[0, 3]", ["0", "1", "2"]),
        ("[10, 0, -4]", ["10", "6", "2"]),
        ("[1, 8, 3]", ["1", "4", "7"]),
    ],
)
def test_items_range(load: Callable[..., JobSpec], bounds: str, expected: list[str]) -> None:
    job = load(with_map(f'command = ["echo", "{{item}}"]\nitems = {{range = {bounds}}}'))
    assert [t.item for t in job.tasks] == expected


def test_items_range_as_a_table(load: Callable[..., JobSpec]) -> None:
    job = load('[map]\ncommand = ["true"]\n[map.items]\nrange = [0, 2]\n')
    assert [t.item for t in job.tasks] == ["0", "1"]


def test_task_ids_widen_past_four_digits(load: Callable[..., JobSpec]) -> None:
    job = load(with_map('command = ["true"]\nitems = {range = [0, 10001]}'))
    assert job.tasks[0].id == "t00000" and job.tasks[-1].id == "t10000"
    job = load(with_map('command = ["true"]\nitems = {range = [0, 10000]}'))
    assert job.tasks[0].id == "t0000" and job.tasks[-1].id == "t9999"


def test_default_name_is_the_file_stem(load: Callable[..., JobSpec]) -> None:
    assert load(ITEMS, "my-job_2.toml").name == "my-job_2"


def test_files_folders_ship_every_file_beneath(load: Callable[..., JobSpec]) -> None:
    job = load('files = ["lib", "lib/*.py", "./count.py"]\n' + ITEMS)
    assert [f.name for f in job.files] == ["lib/sub/deep.py", "lib/util.py", "count.py"]


def test_symlink_inside_the_folder_is_fine(load: Callable[..., JobSpec], folder: Path) -> None:
    (folder / "data" / "link.txt").symlink_to(folder / "data" / "a.txt")
    job = load(with_map('command = ["wc", "{input}"]\ninputs = ["data/link.txt"]'))
    assert job.tasks[0].input == "data/link.txt"


def test_stage_options(load: Callable[..., JobSpec]) -> None:
    job = load(
        ITEMS
        + textwrap.dedent(
            """
            outputs = ["out/*.json", "log.txt"]
            timeout = "1h30m"
            max_attempts = 1
            env = {LANG = "C", THREADS = 4}
            [reduce]
            command = ["cat", "{results}/t0000/log.txt", "--literal={{x}}"]
            timeout = 90
            max_attempts = 100
            """
        )
    )
    assert job.map.outputs == ("out/*.json", "log.txt")
    assert job.map.timeout == 5400.0
    assert job.map.max_attempts == 1
    assert job.map.env == {"LANG": "C", "THREADS": "4"}
    assert job.reduce == StageSpec(
        command=("cat", "{results}/t0000/log.txt", "--literal={{x}}"),
        timeout=90.0,
        max_attempts=100,
    )


def test_shipped_files_used_by_path_may_be_folders(load: Callable[..., JobSpec]) -> None:
    job = load(
        'files = ["lib"]\n[map]\nitems = [1]\n'
        'command = ["python3", "{files}/lib/util.py", "{files}/lib"]'
    )
    assert job.map.command[1] == "{files}/lib/util.py"


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("90s", 90.0),
        ("10m", 600.0),
        ("1h30m", 5400.0),
        ("2.5s", 2.5),
        ("500ms", 0.5),
        ("1d2h", 93600.0),
        ("45", 45.0),
        (" 7s ", 7.0),
        (30, 30.0),
        (1.5, 1.5),
    ],
)
def test_parse_duration(value: str | float, seconds: float) -> None:
    assert parse_duration(value) == seconds


def test_expand() -> None:
    values = {"input": "data/a.txt", "task": "t0001", "files": "/w/files"}
    argv = ["python3", "{files}/count.py", "--in={input}", "{{task}}", "{{{task}}}", "}}{{"]
    assert expand(argv, values) == [
        "python3",
        "/w/files/count.py",
        "--in=data/a.txt",
        "{task}",
        "{t0001}",
        "}{",
    ]
    assert {"input", "item", "task", "files", "results"} == PLACEHOLDERS
    with pytest.raises(ValueError, match="no value for placeholder"):
        expand(["{item}"], values)
    with pytest.raises(ValueError, match="unmatched"):
        expand(["{task"], values)


# -- refused job files: one message each ----------------------------------------------


def test_toml_syntax_error_has_line_and_column(error: Callable[..., str]) -> None:
    message = error('name = "x"\n[map\n')
    assert message.startswith("job.toml: TOML syntax error: ")
    assert "line 2" in message and "column" in message


def test_unreadable_and_non_utf8_files(tmp_path: Path) -> None:
    with pytest.raises(JobSpecError, match=r"missing\.toml: cannot read the job file"):
        load_job(tmp_path / "missing.toml")
    (tmp_path / "bin.toml").write_bytes(b'name = "\xff"\n')
    with pytest.raises(JobSpecError, match=r"bin\.toml: not UTF-8 text"):
        load_job(tmp_path / "bin.toml")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            'nmae = "x"\n' + ITEMS,
            "job.toml: nmae: unknown key (did you mean name?); allowed: files, map, name, reduce",
        ),
        (
            ITEMS + 'outptus = ["x"]\n',
            "job.toml: map.outptus: unknown key (did you mean outputs?); allowed: command, env, "
            "inputs, items, max_attempts, outputs, timeout",
        ),
        (
            ITEMS + '[reduce]\ncommand = ["true"]\ninputs = ["x"]\n',
            "job.toml: reduce.inputs: unknown key (did you mean outputs?); allowed: command, env, "
            "max_attempts, outputs, timeout",
        ),
        (
            with_map('command = ["true"]\nitems = {range = [0, 2], step = 1}'),
            "job.toml: map.items.step: unknown key; allowed: range",
        ),
    ],
)
def test_unknown_keys(error: Callable[..., str], text: str, expected: str) -> None:
    assert error(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('name = "x"\n', "job.toml: map: missing: a job needs a [map] table with a command"),
        ("map = 3\n", "job.toml: map: must be a table: write [map] on a line of its own"),
        ("[[map]]\n", "job.toml: map: must be a table"),
        ('[map]\nitems = ["a"]\n', "job.toml: map.command: missing: give the argv list to run"),
        (ITEMS + "[reduce]\n", "job.toml: reduce.command: missing: give the argv list"),
        (
            with_map('command = "python3 count.py"\nitems = [1]'),
            "job.toml: map.command: must be a list of strings, not one string: drivemr never "
            'runs a shell; write e.g. ["python3", "count.py"]',
        ),
        (with_map("command = []\nitems = [1]"), "job.toml: map.command: is empty"),
        (with_map("command = 5\nitems = [1]"), "job.toml: map.command: must be a list of strings"),
        (
            with_map('command = ["sleep", 5]\nitems = [1]'),
            "job.toml: map.command: element 2 is 5, not a string: write it in quotes",
        ),
        (
            with_map('command = ["", "x"]\nitems = [1]'),
            "job.toml: map.command: the program (element 1) is empty",
        ),
    ],
)
def test_missing_or_malformed_commands(error: Callable[..., str], text: str, expected: str) -> None:
    assert error(text).startswith(expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            with_map('command = ["wc", "{input}"]\ninputs = ["data/*.json"]'),
            'job.toml: map.inputs: "data/*.json" matches no file',
        ),
        (
            with_map('command = ["wc", "{input}"]\ninputs = ["data/a.txt", "data/z.txt"]'),
            'job.toml: map.inputs: "data/z.txt": no such file',
        ),
        (
            with_map('command = ["wc", "{input}"]\ninputs = ["data/sub"]'),
            'job.toml: map.inputs: "data/sub": no such file',
        ),
        ('files = ["src/*.py"]\n' + ITEMS, 'job.toml: files: "src/*.py" matches no file'),
        ('files = ["count.py", "nope.py"]\n' + ITEMS, 'job.toml: files: "nope.py": no such file'),
    ],
)
def test_globs_that_match_nothing(error: Callable[..., str], text: str, expected: str) -> None:
    assert error(text) == expected


def test_empty_folder_in_files(error: Callable[..., str], folder: Path) -> None:
    (folder / "empty").mkdir()
    assert error('files = ["empty"]\n' + ITEMS) == (
        'job.toml: files: "empty" matches only empty folders'
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            with_map('command = ["wc", "{inptu}"]\nitems = [1]'),
            'job.toml: map.command: unknown placeholder {inptu} in "{inptu}" '
            "(known: {files}, {input}, {item}, {results}, {task})",
        ),
        (
            with_map('command = ["echo", "{input}"]\nitems = [1]'),
            "job.toml: map.command: {input} needs map.inputs; these tasks come from map.items: "
            "use {item}",
        ),
        (
            with_map('command = ["echo", "{item}"]\ninputs = ["data/a.txt"]'),
            "job.toml: map.command: {item} needs map.items; these tasks come from map.inputs: "
            "use {input}",
        ),
        (
            with_map('command = ["ls", "{results}"]\nitems = [1]'),
            "job.toml: map.command: {results} is only available in [reduce]",
        ),
        (
            ITEMS + '[reduce]\ncommand = ["echo", "{task}"]\n',
            "job.toml: reduce.command: {task} is not available in [reduce] "
            "(use {files} or {results})",
        ),
        (
            ITEMS + '[reduce]\ncommand = ["echo", "{item}"]\n',
            "job.toml: reduce.command: {item} is not available in [reduce] "
            "(use {files} or {results})",
        ),
        (
            with_map('command = ["echo", "{\\"a\\": 1}"]\nitems = [1]'),
            'job.toml: map.command: unknown placeholder {"a": 1}',
        ),
        (
            with_map('command = ["echo", "{item"]\nitems = [1]'),
            "job.toml: map.command: unmatched '{' in \"{item\"; write '{{' or '}}' for a "
            "literal brace",
        ),
        (
            with_map('command = ["python3", "{files}/count.py"]\nitems = [1]'),
            'job.toml: map.command: "{files}/count.py": "count.py" is not among the shipped '
            "files (add it to files)",
        ),
    ],
)
def test_placeholders(error: Callable[..., str], text: str, expected: str) -> None:
    assert error(text).startswith(expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            'files = ["../x.py"]\n' + ITEMS,
            "job.toml: files: \"../x.py\" contains '..'; shipped files must be inside the job "
            "file's folder",
        ),
        (
            'files = ["/etc/passwd"]\n' + ITEMS,
            'job.toml: files: "/etc/passwd" is an absolute path; shipped files must be inside',
        ),
        ('files = ["C:/x.py"]\n' + ITEMS, 'job.toml: files: "C:/x.py" is an absolute path'),
        (
            'files = ["lib\\\\util.py"]\n' + ITEMS,
            'job.toml: files: "lib\\\\util.py" contains "\\": use "/" as the path separator',
        ),
        (
            with_map('command = ["wc", "{input}"]\ninputs = ["data/../../*"]'),
            "job.toml: map.inputs: \"data/../../*\" contains '..'; inputs must be inside",
        ),
        (
            with_map('command = ["wc", "{input}"]\ninputs = ["/tmp/*"]'),
            'job.toml: map.inputs: "/tmp/*" is an absolute path',
        ),
    ],
)
def test_paths_outside_the_job_folder(error: Callable[..., str], text: str, expected: str) -> None:
    assert error(text).startswith(expected)


def test_symlinks_escaping_the_job_folder(
    error: Callable[..., str], folder: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    outside = tmp_path_factory.mktemp("outside")
    (outside / "secret.txt").write_text("secret")
    (folder / "data" / "evil.txt").symlink_to(outside / "secret.txt")
    (folder / "lib" / "escape").symlink_to(outside, target_is_directory=True)
    assert error(with_map('command = ["wc", "{input}"]\ninputs = ["data/*.txt"]')) == (
        'job.toml: map.inputs: "data/evil.txt" leads outside the job file\'s folder (symbolic link)'
    )
    assert error('files = ["lib"]\n' + ITEMS) == (
        'job.toml: files: "lib/escape/secret.txt" leads outside the job file\'s folder '
        "(symbolic link)"
    )


def test_symlink_loop_inside_a_shipped_folder_terminates(
    load: Callable[..., JobSpec], folder: Path
) -> None:
    (folder / "lib" / "sub" / "up").symlink_to(folder / "lib", target_is_directory=True)
    job = load('files = ["lib"]\n' + ITEMS)
    assert [f.name for f in job.files] == ["lib/sub/deep.py", "lib/util.py"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('"10 minutes"', '"10 minutes" is not a duration: use e.g. "90s", "10m"'),
        ('"1m1h"', '"1m1h": give each unit once, largest first (e.g. "1h30m")'),
        ('"5s5s"', '"5s5s": give each unit once'),
        ("-5", "-5: a duration must be more than 0 seconds"),
        ('"0s"', '"0s": a duration must be more than 0 seconds'),
        ("nan", "NaN: a duration must be more than 0 seconds"),
        ("true", "true is not a duration"),
        ("[5]", "[5] is not a duration"),
        ('"400d"', '"400d" is longer than 365 days; leave it out for no limit'),
        ("1e400", "Infinity is longer than 365 days"),
    ],
)
def test_bad_durations(error: Callable[..., str], value: str, expected: str) -> None:
    assert error(ITEMS + f"timeout = {value}\n").startswith(f"job.toml: map.timeout: {expected}")


def test_parse_duration_error_carries_path_and_key() -> None:
    with pytest.raises(JobSpecError) as info:
        parse_duration("soon", key="lease", path="config.toml")
    assert (info.value.path, info.value.key) == ("config.toml", "lease")
    assert str(info.value).startswith('config.toml: lease: "soon" is not a duration')


@pytest.mark.parametrize("value", ["0", "101", '"3"', "2.5", "true", "-1"])
def test_bad_max_attempts(error: Callable[..., str], value: str) -> None:
    shown = {"true": "true", '"3"': '"3"'}.get(value, value)
    assert error(ITEMS + f"max_attempts = {value}\n") == (
        f"job.toml: map.max_attempts: must be a whole number from 1 to 100, not {shown}"
    )


@pytest.mark.parametrize(
    ("map_body", "expected"),
    [
        (
            'command = ["true"]\nitems = [1]\ninputs = ["data/*.txt"]',
            "job.toml: map: give either inputs or items, not both",
        ),
        (
            'command = ["true"]',
            "job.toml: map: one of inputs or items is required (e.g. inputs = "
            '["data/*.txt"] or items = {range = [0, 10]})',
        ),
        ('command = ["true"]\nitems = []', "job.toml: map.items: is empty: a job needs at least"),
        (
            'command = ["true"]\nitems = "a b"',
            "job.toml: map.items: must be a list of strings or numbers, or a range",
        ),
        (
            'command = ["true"]\nitems = [true]',
            "job.toml: map.items: true: items must be strings or numbers",
        ),
        (
            'command = ["true"]\nitems = [[1, 2]]',
            "job.toml: map.items: [1, 2]: items must be strings or numbers",
        ),
        (
            'command = ["true"]\ninputs = "data/*.txt"',
            'job.toml: map.inputs: must be a list of strings, e.g. inputs = ["data/*.txt"]',
        ),
        ('command = ["true"]\ninputs = []', "job.toml: map.inputs: is empty"),
    ],
)
def test_task_sources(error: Callable[..., str], map_body: str, expected: str) -> None:
    assert error(with_map(map_body)).startswith(expected)


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        ("{range = [1]}", "must be [start, stop] or [start, stop, step], whole numbers"),
        ("{range = [0, 1, 2, 3]}", "must be [start, stop] or [start, stop, step]"),
        ("{range = [0, 1.5]}", "must be [start, stop] or [start, stop, step]"),
        ('{range = ["0", 5]}', "must be [start, stop] or [start, stop, step]"),
        ("{range = 5}", "must be [start, stop] or [start, stop, step]"),
        ("{}", "must be [start, stop] or [start, stop, step]"),
        ("{range = [0, 10, 0]}", "step must not be 0"),
        ("{range = [5, 5]}", "[5, 5] is empty (Python range semantics: stop is excluded)"),
        ("{range = [5, 0]}", "[5, 0] is empty"),
        ("{range = [0, 100001]}", "100001 tasks; at most 100000 per job (pack several items"),
        ("{range = [0, 9223372036854775807]}", "9223372036854775807 tasks; at most 100000"),
        (
            "{range = [-9223372036854775808, 9223372036854775807]}",
            "18446744073709551615 tasks; at most 100000",
        ),
        ("{range = [0, 200001, 2]}", "100001 tasks; at most 100000"),
        ("{range = [0, -300003, -3]}", "100001 tasks; at most 100000"),
    ],
)
def test_bad_ranges_and_task_cap(error: Callable[..., str], items: str, expected: str) -> None:
    text = with_map(f'command = ["true"]\nitems = {items}')
    assert error(text).startswith(f"job.toml: map.items.range: {expected}")


def test_task_cap_on_item_lists(error: Callable[..., str]) -> None:
    items = json.dumps(list(range(100_001)))
    assert error(with_map(f'command = ["true"]\nitems = {items}')) == (
        "job.toml: map.items: 100001 tasks; at most 100000 per job (pack several items per task)"
    )


@pytest.mark.parametrize(
    ("outputs", "expected"),
    [
        ('["/tmp/out.json"]', '"/tmp/out.json" is an absolute path; outputs are globs relative'),
        ('["../out.json"]', "\"../out.json\" contains '..'; outputs are globs relative"),
        ('["out/../../x"]', "\"out/../../x\" contains '..'"),
        ('["D:out"]', '"D:out" is an absolute path'),
        ('[""]', '"" is empty'),
        ('"out.json"', 'must be a list of strings, e.g. outputs = ["counts.json"]'),
    ],
)
def test_bad_outputs(error: Callable[..., str], outputs: str, expected: str) -> None:
    assert error(ITEMS + f"outputs = {outputs}\n").startswith(f"job.toml: map.outputs: {expected}")
    reduce = ITEMS + f'[reduce]\ncommand = ["true"]\noutputs = {outputs}\n'
    assert error(reduce).startswith(f"job.toml: reduce.outputs: {expected}")


@pytest.mark.parametrize(
    ("top", "name", "expected"),
    [
        ('name = "my job"', "job.toml", '"my job" is not a valid job name'),
        ('name = "../x"', "job.toml", '"../x" is not a valid job name'),
        ('name = ".."', "job.toml", '".." is not a valid job name'),
        ("name = 7", "job.toml", "must be a string, not 7"),
        (f'name = "{"x" * 65}"', "job.toml", "is 65 characters long; at most 64"),
        ("", "my job.toml", 'not set, and the job file\'s name "my job" is not a valid job name'),
    ],
)
def test_bad_names(error: Callable[..., str], top: str, name: str, expected: str) -> None:
    assert error(top + "\n" + ITEMS, name).startswith(f"{name}: name: {expected}")


@pytest.mark.parametrize(
    ("env", "key", "expected"),
    [
        ('{"A-B" = "x"}', "map.env.A-B", "is not a valid environment variable name"),
        ("{A = true}", "map.env.A", "must be a string, not true"),
        ("{A = [1]}", "map.env.A", "must be a string, not [1]"),
        ('"A=1"', "map.env", "must be a table of strings"),
    ],
)
def test_bad_env(error: Callable[..., str], env: str, key: str, expected: str) -> None:
    assert error(ITEMS + f"env = {env}\n").startswith(f"job.toml: {key}: {expected}")


def test_files_must_be_a_list(error: Callable[..., str]) -> None:
    assert error('files = "count.py"\n' + ITEMS) == (
        'job.toml: files: must be a list of strings, e.g. files = ["count.py", "lib"]'
    )


def test_error_attributes(error: Callable[..., str], folder: Path) -> None:
    (folder / "job.toml").write_text(with_map('command = ["wc"]\ninputs = ["data/*.json"]'))
    with pytest.raises(JobSpecError) as info:
        load_job(folder / "job.toml")
    assert info.value.path == str(folder / "job.toml")
    assert info.value.key == "map.inputs"
    assert info.value.problem == '"data/*.json" matches no file'


# -- property: nothing but JobSpecError, whatever the text ------------------------------

_KEYS = st.sampled_from(
    [
        *("name", "files", "command", "inputs", "items", "outputs", "timeout", "max_attempts"),
        *("env", "range", "map", "reduce", "bogus", "A"),
    ]
)
_STRINGS = st.one_of(
    st.text(max_size=12),
    st.sampled_from(
        [
            *("data/*.txt", "data", "count.py", "lib", "**", "../x", "/abs", "C:/x", "lib\\u.py"),
            *("{input}", "{item}", "{task}", "{files}/count.py", "{files}/nope", "{results}"),
            *("{", "}}", "{x}", "10m", "1h30m", "2.5s", "0", "true", "python3"),
        ]
    ),
)
_SCALARS = st.one_of(
    _STRINGS,
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(),
    st.booleans(),
)


def _quote(text: str) -> str:
    """A TOML basic string (json.dumps writes astral characters as surrogate pairs)."""
    escaped = "".join(
        f"\\u{ord(c):04x}" if ord(c) < 0x20 or ord(c) == 0x7F else "\\" + c if c in '"\\' else c
        for c in text
    )
    return f'"{escaped}"'


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return {"nan": "nan", "inf": "inf", "-inf": "-inf"}.get(repr(value), repr(value))
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return _quote(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    assert isinstance(value, dict)
    return "{" + ", ".join(f"{_quote(k)} = {_toml(v)}" for k, v in value.items()) + "}"


_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_KEYS, inner, max_size=3),
    max_leaves=8,
)
_LINES = st.one_of(
    st.builds(lambda k, v: f"{k} = {_toml(v)}", _KEYS, _VALUES),
    st.sampled_from(
        [
            *("[map]", "[reduce]", "[map.env]", "[map.items]", "[[map]]", "[x]"),
            *('command = ["true"]', "items = {range = [0, 3]}", 'inputs = ["data/*.txt"]'),
            'files = ["lib"]',
        ]
    ),
    st.text(max_size=20),
)


def _document(doc: dict[str, object]) -> str:
    """A job document as TOML: top-level keys, then one [section] per table."""
    top = [f"{_quote(k)} = {_toml(v)}" for k, v in doc.items() if not isinstance(v, dict)]
    for k, v in doc.items():
        if isinstance(v, dict):
            top.append(f"[{_quote(k)}]")
            top.extend(f"{_quote(kk)} = {_toml(vv)}" for kk, vv in v.items())
    return "\n".join(top)


_ODDS = st.sampled_from([True] * 9 + [False])


def _sometimes_valid(good: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(good, good, good, good, good, good, _VALUES)


def _maybe(draw: st.DrawFn, table: dict[str, Any], key: str, value: st.SearchStrategy[Any]) -> None:
    if draw(st.booleans()):
        table[key] = draw(value)


@st.composite
def _stage(draw: st.DrawFn) -> dict[str, Any]:
    stage: dict[str, Any] = {}
    if draw(_ODDS):
        argv = st.lists(st.sampled_from(["python3", "{task}", "{item}", "-x"]), max_size=3)
        stage["command"] = draw(_sometimes_valid(st.builds(lambda a: ["true", *a], argv)))
    outputs = st.lists(st.sampled_from(["out.json", "*.txt", "out/**"]), max_size=3)
    _maybe(draw, stage, "outputs", _sometimes_valid(outputs))
    _maybe(draw, stage, "timeout", _sometimes_valid(st.sampled_from(["10m", "1h30m", 5, "2.5s"])))
    _maybe(draw, stage, "max_attempts", _sometimes_valid(st.integers(-5, 200)))
    env = st.dictionaries(st.sampled_from(["A", "B_1", "bad-name", ""]), _SCALARS, max_size=2)
    _maybe(draw, stage, "env", _sometimes_valid(env))
    return stage


@st.composite
def _documents(draw: st.DrawFn) -> str:
    """Mostly well-formed job files with the odd wrong value, to reach deep checks."""
    doc: dict[str, Any] = {}
    _maybe(draw, doc, "name", _sometimes_valid(st.sampled_from(["wc", "a.b-c_1", "bad name"])))
    files = st.lists(st.sampled_from(["count.py", "lib", "lib/*.py", "**/*.py"]), max_size=3)
    _maybe(draw, doc, "files", _sometimes_valid(files))
    stage = draw(_stage())
    source = draw(st.sampled_from(["items", "items", "inputs", "inputs", "range", "both", "none"]))
    if source in ("items", "both"):
        stage["items"] = draw(_sometimes_valid(st.lists(_SCALARS, min_size=1, max_size=4)))
    if source in ("inputs", "both"):
        inputs = st.lists(st.sampled_from(["data/*.txt", "data/a.txt", "data/**"]), min_size=1)
        stage["inputs"] = draw(_sometimes_valid(inputs))
    if source == "range":
        stage["items"] = {"range": draw(st.lists(st.integers(-5, 5), max_size=4))}
    if draw(_ODDS):
        doc["map"] = stage
    if draw(st.booleans()):
        doc["reduce"] = draw(_stage())
    if not draw(_ODDS):
        doc["bogus"] = draw(_VALUES)
    return _document(doc)


_TEXTS = st.one_of(_documents(), _documents(), st.lists(_LINES, max_size=12).map("\n".join))


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(text=_TEXTS)
def test_load_job_raises_only_jobspecerror(folder: Path, text: str) -> None:
    """The fixture's folder is only read, so sharing it across examples is safe."""
    path = folder / "fuzz.toml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    try:
        job = load_job(path)
    except JobSpecError as e:
        assert str(e).startswith(str(path) + ": ")
    else:
        assert job.tasks and job.map.command
        assert all(os.path.isabs(f.path) for f in job.files)


# -- names the store will see (issue 18 point 6) --------------------------------------


@pytest.mark.parametrize(
    ("filename", "pattern", "expected"),
    [
        ("back\\slash.txt", "*.txt", "file 'back\\\\slash.txt': backslashes are not allowed"),
        ("a:b.txt", "*.txt", "file 'a:b.txt': ':' is not allowed"),
        ("nul.txt", "*.txt", "file 'nul.txt': 'nul.txt' is a reserved device name"),
        ("trail. ", "trail*", "file 'trail. ': a component ends with a space or a dot"),
        (".env", ".env", "file '.env': names starting with '.' cannot be stored"),
        ("x" * 150 + "/" + "y" * 100, "**/y*", "is 252 bytes long, over the limit of 200"),
    ],
)
@pytest.mark.parametrize("key", ["files", "map.inputs"])
def test_names_the_store_cannot_hold_are_refused(
    error: Callable[..., str], folder: Path, filename: str, pattern: str, expected: str, key: str
) -> None:
    path = folder / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("data")
    if key == "files":
        text = f'files = ["{pattern}"]\n' + ITEMS
    else:
        text = with_map(f'command = ["cat", "{{input}}"]\ninputs = ["{pattern}"]\n')
    message = error(text)
    assert message.startswith(f"job.toml: {key}: "), message
    assert expected in message and ("rename" in message or "shorten" in message)


def test_dot_files_inside_folders_and_long_enough_names_are_fine(
    load: Callable[..., JobSpec], folder: Path
) -> None:
    (folder / "conf").mkdir()
    (folder / "conf" / ".config").write_text("x")
    (folder / ("d" * 90)).mkdir()
    (folder / ("d" * 90) / ("f" * 100)).write_text("x")
    spec = load(f'files = ["conf", "{"d" * 90}"]\n' + ITEMS)
    assert {f.name for f in spec.files} == {"conf/.config", "d" * 90 + "/" + "f" * 100}


@pytest.mark.parametrize(
    ("outputs", "expected"),
    [('["out/a:b.json"]', "':' is not allowed"), ('["con.txt"]', "reserved")],
)
def test_outputs_get_the_workers_checks(
    error: Callable[..., str], outputs: str, expected: str
) -> None:
    message = error(ITEMS + f"outputs = {outputs}\n")
    assert message.startswith("job.toml: map.outputs: glob ") and expected in message
