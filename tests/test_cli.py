"""The `zoo` command end to end, through subprocesses, as a user runs it."""

import json
import os
import subprocess
import sys

import pytest
import tensorflow as tf

from tests.helpers import zoo_cli

TINY = ["--model=translator", "--preset=tiny", "--batch_size=16"]


def test_list():
    out = zoo_cli("list").stdout.strip().splitlines()
    assert any(line.startswith("translator\t") for line in out)


@pytest.mark.parametrize("command", ["train", "evaluate", "predict", "export", "list"])
def test_every_subcommand_has_help(command):
    out = zoo_cli(command, "--help").stdout
    assert f"zoo {command}:" in out
    if command == "train":
        for flag in ("--model", "--workdir", "--data", "--preset", "--steps", "--epochs", "--batch_size", "--config"):
            assert flag in out


def test_unknown_model(tmp_path):
    proc = zoo_cli("train", "--model=nope", f"--workdir={tmp_path}", check=False)
    assert proc.returncode == 2 and "Unknown model 'nope'; known models: " in proc.stderr and "translator" in proc.stderr


def test_unknown_config_key_lists_valid_keys(tmp_path):
    proc = zoo_cli("train", *TINY, f"--workdir={tmp_path}", "--config=unitz=4", check=False)
    assert proc.returncode == 2
    assert "unknown key 'unitz'" in proc.stderr and "units" in proc.stderr and "learning_rate" in proc.stderr


def test_missing_data_file(tmp_path):
    proc = zoo_cli("train", *TINY, f"--workdir={tmp_path / 'w'}", f"--data={tmp_path / 'missing.tsv'}", check=False)
    assert proc.returncode == 2 and "missing.tsv: no such file" in proc.stderr
    assert not (tmp_path / "w").exists()


def test_tsv_line_without_tab(tmp_path):
    data = tmp_path / "pairs.tsv"
    data.write_text("hello\tbonjour\ncat\tchat\nthis line has no tab\n")
    proc = zoo_cli("train", *TINY, f"--workdir={tmp_path / 'w'}", f"--data={data}", check=False)
    assert proc.returncode == 2 and f"{data}:3: expected at least 2 tab-separated columns" in proc.stderr


def test_commands_need_a_trained_workdir(tmp_path):
    proc = zoo_cli("evaluate", f"--workdir={tmp_path}", check=False)
    assert proc.returncode == 2 and "no zoo.json" in proc.stderr


def test_workdir_of_another_model(tmp_path):
    from zoo import commands, registry, workdir
    from zoo.entry import ZooEntry
    from zoo.translator.config import TranslatorConfig

    @registry.register("other_model_for_test")
    class Other(ZooEntry):
        config_class = TranslatorConfig

    try:
        workdir.write(str(tmp_path), "translator", "tiny", "builtin:dates",
                      TranslatorConfig.PRESETS["tiny"](), __import__("trainers").TrainerConfig())
        with pytest.raises(workdir.WorkdirError, match="holds a 'translator' model, not 'other_model_for_test'"):
            commands.train("other_model_for_test", str(tmp_path))
    finally:
        registry.unregister("other_model_for_test")


@pytest.mark.slow
def test_train_evaluate_predict_export(tmp_path):
    workdir = str(tmp_path / "w")
    zoo_cli("train", *TINY, f"--workdir={workdir}", "--steps=30", "--config=eval_examples=50")
    assert os.path.exists(os.path.join(workdir, "zoo.json"))
    assert tf.train.latest_checkpoint(os.path.join(workdir, "checkpoints")).endswith("ckpt-30")
    rows = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    assert rows[-1]["kind"] == "validation" and "chrf" in rows[-1]
    assert os.listdir(os.path.join(workdir, "logs", "train"))  # TensorBoard events

    metrics = json.loads(zoo_cli("evaluate", f"--workdir={workdir}").stdout.strip().splitlines()[-1])
    assert {"val_loss", "exact_match", "bleu", "chrf"} <= set(metrics)

    out = zoo_cli("predict", f"--workdir={workdir}", "3rd of March 2021", "march 4, 99").stdout
    lines = out.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("3rd of March 2021\t")

    manifest = json.loads(zoo_cli("export", f"--workdir={workdir}").stdout.strip().splitlines()[-1])
    paths = {a["format"] + ":" + a.get("signature", "") for a in manifest["artifacts"]}
    assert paths == {"saved_model:", "tflite:greedy_tokens", "tflite:beam_search_tokens"}
    sm = next(a for a in manifest["artifacts"] if a["format"] == "saved_model")
    assert sm["path"].endswith(os.path.join("export", "saved_model", "translator", "1"))
    assert sm["parity"] == {"verified": True, "checked": 100, "mismatches": 0,
                            "process": "fresh (tensorflow + tensorflow_text only)"}

    # A user's own fresh process, importing only TensorFlow and tensorflow-text.
    script = (
        "import sys, tensorflow as tf, tensorflow_text\n"
        f"m = tf.saved_model.load({sm['path']!r})\n"
        "out = m.signatures['serving_default'](inputs=tf.constant(['3rd of March 2021']))\n"
        "print(out['translations'].numpy()[0].decode())\n"
        "assert 'zoo' not in sys.modules\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd="/",
                          env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    keras_out = lines[0].split("\t", 1)[1]
    assert proc.stdout.strip().splitlines()[-1] == keras_out

    # A second export is a new version; the first stays. --noverify writes it unchecked and says so.
    out = zoo_cli("export", f"--workdir={workdir}", "--formats=saved_model,keras", "--noverify").stdout
    unchecked = json.loads(out.strip().splitlines()[-1])["artifacts"]
    assert [a["parity"] for a in unchecked] == [{"verified": False}] * 2
    assert "latency_ms_batch1" not in unchecked[0]
    assert sorted(os.listdir(os.path.join(workdir, "export", "saved_model", "translator"))) == ["1", "2"]
