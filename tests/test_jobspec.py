"""Job files: good ones parse; each bad one gets one clear error naming file and key."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from hpcjobs.cli import cli
from hpcjobs.errors import JobFileError
from hpcjobs.jobspec import load_job, parse_job
from tests.conftest import write_job

GOOD = """
name = "demo"
[input]
path = "in.zarr"
[[step]]
name = "stats"
kernel = "describe"
input = "readings"
params = { bins = 8 }
[[step]]
name = "z"
kernel = "standardize"
input = "readings[:, 0:2]"
[[step]]
name = "zstats"
kernel = "describe"
input = "z/Z"
[output]
path = "out.zarr"
[cluster]
workers = 1
"""


def test_good_job_parses(input_dir):
    job = load_job(write_job(input_dir, GOOD))
    assert [s.name for s in job.steps] == ["stats", "z", "zstats"]
    assert job.steps[0].params == {"bins": 8, "range": None}
    assert job.steps[1].inputs["X"].index == (slice(None), slice(0, 2))
    assert job.steps[2].inputs["X"].step == "z"
    assert job.output_path == input_dir / "out.zarr"  # relative to the job file
    assert job.cluster == {"workers": 1}


def test_overrides_address_steps_by_name(input_dir):
    job = load_job(write_job(input_dir, GOOD), overrides={"step.stats.params.bins": 3,
                                                         "output.path": "other.zarr"})
    assert job.step("stats").params["bins"] == 3
    assert job.output_path.name == "other.zarr"


def _replace(old: str, new: str) -> str:
    assert old in GOOD, old
    return GOOD.replace(old, new, 1)


BAD = [
    # (job text, key named in the message, words expected in the message)
    ("name = [", None, "not valid TOML"),
    (_replace('name = "demo"', 'name = "demo"\ncolour = 3'), "colour", "unknown key"),
    (_replace('name = "demo"', 'name = "has space"'), "name", "no spaces"),
    (_replace('path = "in.zarr"', 'path = 3'), "input.path", "expected a path string"),
    (_replace('path = "in.zarr"', 'path = "missing.zarr"'), "input.path", "does not exist"),
    (_replace('[input]\npath = "in.zarr"', '[input]'), "input.path", "missing"),
    (_replace('[output]\npath = "out.zarr"', ''), "output", "missing"),
    (_replace('path = "out.zarr"', 'path = "in.zarr"'), "output.path", "is the input path"),
    (_replace('kernel = "describe"', 'kernel = "nope"'), "step[0].kernel", "unknown kernel"),
    (_replace('kernel = "describe"', ''), "step[0].kernel", "missing"),
    (_replace('params = { bins = 8 }', 'params = { bins = 0 }'), "step[0] (stats).params",
     "must be an int in the range [1, 1000000]. Got 0"),
    (_replace('params = { bins = 8 }', 'params = { bins = "8" }'), "step[0] (stats).params",
     "must be an int"),
    (_replace('params = { bins = 8 }', 'params = { bin = 8 }'), "step[0] (stats).params",
     "unknown parameter 'bin'"),
    (_replace('input = "readings"', 'input = "nothere"'), "step[0] (stats).input.X",
     "no array 'nothere'"),
    (_replace('input = "readings"', 'input = "flat"'), "step[0] (stats).input.X", "must be 2-D"),
    (_replace('input = "readings"', 'input = "readings[:, 0]"'), "step[0] (stats).input.X",
     "must be 2-D"),
    (_replace('input = "readings"', 'input = "words"'), "step[0] (stats).input.X",
     "must be 2-D"),
    (_replace('input = "readings"', 'input = "readings[x]"'), "step[0] (stats).input.X",
     "bad index"),
    (_replace('input = "readings"', 'input = { Y = "readings" }'), "step[0] (stats).input.Y",
     "no input of that name"),
    (_replace('input = "z/Z"', 'input = "z/nothing"'), "step[2] (zstats).input.X",
     "has no output 'nothing'"),
    (_replace('input = "z/Z"', 'input = "zstats/Z"'), "step[2] (zstats).input.X",
     "no array 'zstats/Z'"),  # a step cannot read its own or a later step's output
    (_replace('name = "z"', 'name = "stats"'), "step[1].name", "used twice"),
    (_replace('workers = 1', 'workers = 0'), "cluster.workers", "must be an int in the range [1, inf)"),
    (_replace('workers = 1', 'workerz = 1'), "cluster.workerz", "unknown key"),
    (GOOD.replace('[[step]]', '[[stepz]]'), "stepz", "unknown key"),
    (GOOD.split("[[step]]")[0] + '[output]\npath = "o.zarr"\n', "step", "missing"),
]


@pytest.mark.parametrize("text, key, words", BAD, ids=[f"bad{i}" for i in range(len(BAD))])
def test_bad_job_files(input_dir, text, key, words):
    path = write_job(input_dir, text)
    with pytest.raises(JobFileError) as info:
        load_job(path)
    message = str(info.value)
    assert message.startswith(str(path)), message
    if key is not None:
        assert info.value.key == key, message
    assert words in message, message
    assert "\n" not in message


def test_missing_file():
    with pytest.raises(JobFileError, match="nope.toml: file not found"):
        load_job("nope.toml")


def test_validate_cli_exit_codes(input_dir):
    runner = CliRunner()
    good = write_job(input_dir, GOOD, "good.toml")
    result = runner.invoke(cli, ["validate", str(good)])
    assert result.exit_code == 0, result.output
    assert "OK" in result.output
    bad = write_job(input_dir, _replace('kernel = "describe"', 'kernel = "nope"'), "bad.toml")
    result = runner.invoke(cli, ["validate", str(bad)])
    assert result.exit_code == 2
    assert "unknown kernel 'nope'" in result.output
    assert "Traceback" not in result.output
    assert not (input_dir / "out.zarr").exists()  # nothing written


def test_parse_without_inputs():
    job = parse_job(GOOD.replace("in.zarr", "/nonexistent/in.zarr"), check_inputs=False)
    assert job.input_path.as_posix() == "/nonexistent/in.zarr"
