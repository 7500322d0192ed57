"""What a new user trips over (issue 16): resume rules, checkpoints by name, absolute paths,
quiet start-up, the demo's failure message, the GAN's validation loss."""

import json
import os
import subprocess
import sys

import pytest

from tests.helpers import ROOT, zoo_cli
from zoo import commands, demo
from zoo import workdir as workdirs

TINY = dict(preset="tiny", steps=2, batch_size=8, evaluate=False)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A translator trained 4 steps on a relative path, with checkpoints at 2 and 4."""
    root = tmp_path_factory.mktemp("w")
    data = root / "pairs.tsv"
    data.write_text("".join(f"{i} cats\t{i} chats\n" for i in range(60)))
    here = os.getcwd()
    os.chdir(root)
    try:
        commands.train("translator", "run", data="pairs.tsv", preset="tiny", steps=4, batch_size=8,
                       overrides=["checkpoint_every=2", "eval_examples=8", "validation_data=pairs.tsv"])
    finally:
        os.chdir(here)
    return root, str(root / "run")


def test_paths_are_stored_absolute(trained):
    root, workdir = trained
    _, record, model_config, _ = workdirs.read(workdir)
    assert record["data"] == str(root / "pairs.tsv")
    assert model_config.validation_data == str(root / "pairs.tsv")


def test_resume_refuses_what_cannot_change_and_takes_evaluation_settings(trained):
    root, workdir = trained
    with pytest.raises(workdirs.WorkdirError, match=r"--data=.*other.tsv: --workdir=.* was trained on --data=.*pairs.tsv"):
        other = root / "other.tsv"
        other.write_text("a\tb\n" * 30)
        commands.train("translator", workdir, data=str(other), steps=4)
    with pytest.raises(workdirs.WorkdirError, match="--preset=small: --workdir=.* was trained with --preset=tiny"):
        commands.train("translator", workdir, preset="small", steps=4)
    with pytest.raises(workdirs.WorkdirError, match="--config units=99: .* was trained with units="):
        commands.train("translator", workdir, steps=4, overrides=["units=99"])
    # Same data (relative or absolute), same preset, and an evaluation-only setting: accepted.
    commands.train("translator", workdir, data=str(root / "pairs.tsv"), preset="tiny", steps=4,
                   overrides=["eval_examples=4", "beam_size=2"], evaluate=False)
    assert workdirs.read(workdir)[2].eval_examples == 4 and workdirs.read(workdir)[2].beam_size == 2


def test_checkpoints_by_name(trained):
    _, workdir = trained
    assert commands.restore(workdir)[1].step.numpy() == 4
    assert commands.restore(workdir, "2")[1].step.numpy() == 2
    with pytest.raises(workdirs.WorkdirError, match=r"--checkpoint=3: expected latest, best or the step of a "
                                                    r"checkpoint kept in .*checkpoints \(2, 4\)"):
        commands.restore(workdir, "3")
    with pytest.raises(workdirs.WorkdirError, match="--checkpoint=best: .* has no best checkpoint"):
        commands.evaluate(workdir, checkpoint="best")
    assert len(commands.predict(workdir, ["1 cats"], checkpoint="2")) == 1


@pytest.mark.slow
def test_export_records_its_checkpoint(trained):
    _, workdir = trained
    manifest = commands.export(workdir, formats=("keras",), num_checks=4, checkpoint="2")
    assert manifest["checkpoint"]["step"] == 2 and manifest["checkpoint"]["path"].endswith("ckpt-2")


@pytest.mark.slow
def test_zoo_prints_only_its_own_output():
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    proc = subprocess.run([sys.executable, "-m", "zoo.cli", "list"], capture_output=True, text=True, cwd=ROOT,
                          env={**env, "PYTHONPATH": ROOT})
    assert proc.returncode == 0 and "translator\t" in proc.stdout
    assert proc.stderr == "", proc.stderr  # no oneDNN, CUDA or absl lines
    proc = subprocess.run([sys.executable, "-m", "zoo.cli", "evaluate", "--workdir=/nonexistent"], capture_output=True,
                          text=True, cwd=ROOT, env={**env, "PYTHONPATH": ROOT})
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        "zoo evaluate: error: --workdir=/nonexistent: no zoo.json there; train a model into it first with "
        "`zoo train --model=NAME --workdir=/nonexistent`."]
    # TensorFlow's own setting brings its logs back.
    proc = subprocess.run([sys.executable, "-m", "zoo.cli", "list"], capture_output=True, text=True, cwd=ROOT,
                          env={**env, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "0"})
    assert proc.returncode == 0 and proc.stderr


def test_the_demo_explains_a_failure():
    assert demo.failure(0.99, 1000) is None
    message = demo.failure(0.5, 1000)
    assert "translated 50.0% of the 1,000 test dates exactly" in message and "below the 95%" in message


def test_gan_validation_loss_is_not_called_val_loss(tmp_path):
    from zoo import registry

    cls = registry.get("gan")
    assert cls.validation_loss_name == "val_discriminator_loss" and cls.validation_metric == ("frechet_distance", "min")
    with pytest.raises(Exception, match="early_stopping_metric=val_loss: not a validation metric; metrics: "
                                        ".*frechet_distance"):
        commands.train("gan", str(tmp_path / "g"), data="builtin:shapes", preset="tiny", steps=1, batch_size=8,
                       overrides=["early_stopping_metric=val_loss", "eval_examples=16"])


def test_evaluate_scores_all_of_the_data_it_is_given(trained, capsys):
    root, workdir = trained
    test = root / "test.tsv"
    test.write_text("".join(f"{i} dogs\t{i} chiens\n" for i in range(37)))
    metrics = commands.evaluate(workdir, data=str(test))
    assert metrics["examples"] == 37  # all 37, not a 10% slice, nor the 8 of eval_examples
    assert f"Scored 37 examples: all of {test}." in capsys.readouterr().out
    # Without --data: the validation data the workdir was trained with, capped by eval_examples.
    assert commands.evaluate(workdir)["examples"] == workdirs.read(workdir)[2].eval_examples < 37


@pytest.mark.slow
def test_a_classifier_trained_with_validation_data_scores_the_given_file(tmp_path):
    train, dev, test = (tmp_path / f"{n}.csv" for n in ("train", "dev", "test"))
    for path, count in ((train, 40), (dev, 10), (test, 23)):
        path.write_text("text,label\n" + "".join(f"{'good' if i % 2 else 'bad'} film {i},{'pos' if i % 2 else 'neg'}\n"
                                                 for i in range(count)))
    workdir = str(tmp_path / "w")
    commands.train("bert_classifier", workdir, data=str(train), overrides=[f"validation_data={dev}"], **TINY)
    assert commands.evaluate(workdir)["examples"] == 10
    assert commands.evaluate(workdir, data=str(test))["examples"] == 23


@pytest.mark.slow
def test_a_moved_workdir_evaluates_predicts_and_exports_with_its_data_given_again(trained, tmp_path):
    import shutil

    root, workdir = trained
    moved = tmp_path / "elsewhere"
    shutil.copytree(workdir, moved)
    data = tmp_path / "pairs-copy.tsv"
    shutil.copy(root / "pairs.tsv", data)
    os.rename(root / "pairs.tsv", root / "pairs.tsv.away")
    try:
        with pytest.raises(commands.sources.DataError, match="give the data again with --data"):
            commands.evaluate(str(moved))
        assert commands.evaluate(str(moved), data=str(data))["examples"] == 60
        assert len(commands.predict(str(moved), ["3 cats"])) == 1
        manifest = commands.export(str(moved), formats=("keras",), num_checks=4, data=str(data))
        assert manifest["artifacts"][0]["parity"]["mismatches"] == 0
    finally:
        os.rename(root / "pairs.tsv.away", root / "pairs.tsv")
