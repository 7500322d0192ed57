"""Thread pools chosen for the machine (zoo/threads.py) and said by training."""

import os

import pytest

from zoo import threads
from zoo.config import ConfigError


def test_usable_cores_take_the_cgroup_quota(tmp_path):
    cores = len(os.sched_getaffinity(0))
    (tmp_path / "cpu.max").write_text("max 100000\n")  # v2, no quota
    assert threads.usable_cores(str(tmp_path)) == cores
    (tmp_path / "cpu.max").write_text("50000 100000\n")  # half a CPU: one thread
    assert threads.usable_cores(str(tmp_path)) == 1
    os.remove(tmp_path / "cpu.max")
    (tmp_path / "cpu").mkdir()  # v1
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("100000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert threads.usable_cores(str(tmp_path)) == 1
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert threads.usable_cores(str(tmp_path)) == cores
    assert threads.usable_cores(str(tmp_path / "absent")) == cores


def test_the_environment_wins_and_bad_values_name_the_variable():
    assert threads.choose(env={"TF_NUM_INTEROP_THREADS": "3"}, cores=8) == (
        8, 3, "intra-op 8 (the usable cores), inter-op 3 (TF_NUM_INTEROP_THREADS)")
    assert threads.choose(env={}, cores=3)[:2] == (3, 3)
    with pytest.raises(ConfigError, match="TF_NUM_INTRAOP_THREADS=two: expected a whole number of threads"):
        threads.choose(env={"TF_NUM_INTRAOP_THREADS": "two"}, cores=2)
    with pytest.raises(ConfigError, match="TF_NUM_INTEROP_THREADS=0: expected"):
        threads.choose(env={"TF_NUM_INTEROP_THREADS": "0"}, cores=2)


def test_a_fresh_zoo_train_sets_and_says_its_threads(tmp_path):
    from tests.helpers import zoo_cli

    out = zoo_cli("train", "--model=translator", "--preset=tiny", "--steps=1", "--batch_size=8",
                  f"--workdir={tmp_path / 'run'}", "--config=eval_examples=4").stdout
    why = threads.choose()[2]
    assert f"Threads: {why}." in out  # said only once the pools were set
