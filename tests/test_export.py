"""Exporter details: the TPU function alias, saved_model_cli, atomic versions."""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

from export import exporter
from tests import helpers
from trainers import Trainer, TrainerConfig


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("w")
    entry, source = helpers.tiny_entry("translator", workdir)
    trainer = Trainer(entry, TrainerConfig(steps=1, batch_size=8), str(workdir))
    model = exporter.float32_model(entry, trainer.model)  # what the export holds, whatever `auto` picked
    manifest = exporter.export(entry, model, str(workdir), formats=("saved_model",), source=source, num_checks=8)
    return entry, model, source, manifest["artifacts"][0]


@pytest.mark.slow
def test_tpu_func_alias_is_saved_and_compiles_with_xla(exported):
    entry, model, source, artifact = exported
    assert artifact["tpu_func"] == "beam_search_tokens"  # the tiny preset decodes with beam search
    proto = saved_model_pb2.SavedModel()
    with open(os.path.join(artifact["path"], "saved_model.pb"), "rb") as f:
        proto.ParseFromString(f.read())
    assert "tpu_func" in proto.meta_graphs[0].meta_info_def.function_aliases.values()

    servable = entry.serving_functions(model)["beam_search_tokens"]
    ids = servable.encode(entry.held_out_inputs(source, 3))["source"][:1]
    loaded = tf.saved_model.load(artifact["path"])
    compiled = tf.function(lambda source: loaded.tpu_func(source), jit_compile=True)
    got = compiled(tf.constant(ids))["tokens"].numpy()
    np.testing.assert_array_equal(got, servable.fn(tf.constant(ids))["tokens"].numpy())


@pytest.mark.slow
def test_vocabularies_are_assets(exported):
    _, _, _, artifact = exported
    assert sorted(os.listdir(os.path.join(artifact["path"], "assets"))) == ["source.model", "target.model"]


@pytest.mark.slow
def test_saved_model_cli_show_all(exported):
    _, _, _, artifact = exported
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    proc = subprocess.run([cli, "show", "--all", "--dir", artifact["path"]], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for name in ("serving_default", "greedy", "beam_search", "inputs", "translations"):
        assert name in proc.stdout


def test_mismatches_compare_floats_within_max_abs_diff_and_the_rest_exactly():
    expected = {"probs": np.array([[0.5, 0.5], [0.2, 0.8]], "float32"), "label": np.array([b"a", b"b"])}
    close = {"probs": expected["probs"] + 5e-5, "label": np.array(["a", "b"])}
    assert exporter._mismatches(expected, close) == set()
    assert exporter._mismatches(expected, close, max_abs_diff=1e-5) == {0, 1}
    assert exporter._mismatches(expected, {**close, "label": np.array(["a", "c"])}) == {1}
    # Large sums (lstm_lm's nats of a window) may differ by a few float32 rounding steps, no more.
    sums = {"nats": np.array([512.0, 3.0], "float32")}
    assert exporter._mismatches(sums, {"nats": sums["nats"] + np.float32(2e-4)}) == {1}
    assert exporter._mismatches(sums, {"nats": sums["nats"] + np.array([2e-3, 0.0], "float32")}) == {0}
    # Text beyond ASCII (E2E's "Café Rouge"), as bytes from Keras and as str from JSON.
    cafe = {"text": np.array(["Café Rouge".encode(), b"x"], dtype=object)}
    assert exporter._mismatches(cafe, {"text": np.array(["Café Rouge", "x"])}) == set()
    assert exporter._mismatches(cafe, {"text": np.array(["Cafe Rouge", "x"])}) == {0}


def test_the_fresh_process_check_reads_utf8_outputs(tmp_path):
    from export import saved_model

    module = tf.Module()
    module.f = tf.function(lambda inputs: {"outputs": tf.strings.join([inputs, " – Café"])},
                           input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    tf.saved_model.save(module, str(tmp_path), signatures={"serving_default": module.f})
    outputs, _ = saved_model.run_fresh(str(tmp_path), "serving_default", {"inputs": ["Crêpe"]}, chunk=4)
    assert outputs["outputs"].tolist() == ["Crêpe – Café"]


def test_unknown_format_is_named(tmp_path):
    entry, source = helpers.tiny_entry("translator", tmp_path)
    trainer = Trainer(entry, TrainerConfig(steps=1, batch_size=8), str(tmp_path))
    with pytest.raises(exporter.ExportError, match=r"--formats: unknown \['onnx'\]"):
        exporter.export(entry, trainer.model, str(tmp_path), formats=("onnx",), source=source)


@pytest.mark.slow
def test_quantized_tflite_variants(tmp_path):
    entry, source = helpers.tiny_entry("translator", tmp_path)
    trainer = Trainer(entry, TrainerConfig(steps=150, batch_size=32, log_every=50), str(tmp_path))
    trainer.train(source, evaluate=False)
    manifest = exporter.export(entry, trainer.model, str(tmp_path), formats=("tflite",), source=source,
                               num_checks=20, quantize=("none", "float16", "dynamic"), 
                               checks=exporter.Verification(max_metric_drop=5.0))
    greedy = {a["quantization"]: a for a in manifest["artifacts"] if a["signature"] == "greedy_tokens"}
    assert set(greedy) == {"none", "float16", "dynamic"}
    assert greedy["none"]["parity"]["mismatches"] == 0 and greedy["none"]["parity"]["drop"] == 0
    for q in ("float16", "dynamic"):
        assert greedy[q]["builtin_ops_only"] and greedy[q]["parity"]["drop"] <= 5.0
        assert greedy[q]["size_bytes"] < greedy["none"]["size_bytes"]
        assert greedy[q]["path"].endswith(f"translator_greedy_tokens_{q}.tflite")


@pytest.mark.slow
def test_a_failed_check_publishes_nothing_and_int8_that_cannot_convert_is_skipped(tmp_path):
    entry, source = helpers.tiny_entry("translator", tmp_path)
    trainer = Trainer(entry, TrainerConfig(steps=30, batch_size=32, log_every=10), str(tmp_path))
    trainer.train(source, evaluate=False)
    export_dir = tmp_path / "export"
    # Every variant the user asks for: int8 calibration crashes on the decode loop, so int8 is
    # skipped with the converter's reason and the rest is exported.
    first = exporter.export(entry, trainer.model, str(tmp_path), formats=("saved_model", "tflite"), source=source,
                            num_checks=10, quantize=("none", "dynamic", "int8"),
                            checks=exporter.Verification(max_metric_drop=100.0))
    skipped = {(s["signature"], s["quantization"]): s["reason"] for s in first["skipped"]}
    assert set(skipped) == {("greedy_tokens", "int8"), ("beam_search_tokens", "int8")}
    assert all("TFLite conversion (int8)" in reason for reason in skipped.values())
    before = {p.relative_to(export_dir): p.read_bytes() for p in export_dir.rglob("*") if p.is_file()}
    # A threshold below zero fails the dynamic-range artifacts, checked after the SavedModel
    # and the float ones passed: the export fails naming the artifact and the figure, and
    # nothing of it is published.
    with pytest.raises(exporter.ExportError, match=r"translator_greedy_tokens_dynamic.tflite: chrf worsens by .* against Keras"):
        exporter.export(entry, trainer.model, str(tmp_path), formats=("saved_model", "tflite"), source=source,
                        num_checks=10, quantize=("none", "dynamic"), checks=exporter.Verification(max_metric_drop=-1.0))
    after = {p.relative_to(export_dir): p.read_bytes() for p in export_dir.rglob("*") if p.is_file()}
    assert after == before  # no version 2, the TFLite files and the manifest as they were
    assert sorted(os.listdir(export_dir / "saved_model" / "translator")) == ["1"]


@pytest.mark.slow
def test_warmup_requests_are_prediction_logs(exported):
    from tensorflow_serving.apis import prediction_log_pb2

    _, _, _, artifact = exported
    path = os.path.join(artifact["path"], "assets.extra", "tf_serving_warmup_requests")
    logs = [prediction_log_pb2.PredictionLog.FromString(r.numpy()) for r in tf.data.TFRecordDataset(path)]
    assert len(logs) == artifact["warmup_requests"] == 8
    request = logs[0].predict_log.request
    assert request.model_spec.name == "translator" and request.model_spec.signature_name == "serving_default"
    assert tf.make_ndarray(request.inputs["inputs"]).shape == (1,)


@pytest.mark.slow
def test_float_outputs_and_full_integer_int8(tmp_path):
    from tests import toy_entry
    from zoo import registry, sources

    cls = toy_entry.register()
    try:
        entry = cls(cls.config_class(), str(tmp_path))
        source = sources.parse("builtin:toy")
        trainer = Trainer(entry, TrainerConfig(steps=20, batch_size=16, log_every=10), str(tmp_path))
        trainer.train(source, evaluate=False)
        manifest = exporter.export(entry, trainer.model, str(tmp_path), formats=("saved_model", "tflite"),
                                   source=source, num_checks=20, quantize=("none", "int8"), int8_io=True,
                                   checks=exporter.Verification(max_metric_drop=0.5))
    finally:
        registry.unregister(toy_entry.NAME)
    by_q = {a.get("quantization"): a for a in manifest["artifacts"]}
    assert by_q[None]["format"] == "saved_model" and by_q[None]["parity"]["mismatches"] == 0
    assert by_q["none"]["parity"]["mismatches"] == 0  # float outputs within max_abs_diff
    int8 = by_q["int8"]
    assert int8["full_integer"] and int8["op_sets"] == ["TFLITE_BUILTINS_INT8"]
    assert int8["parity"]["drop"] <= 0.5  # the metric check the export itself enforces
    from ai_edge_litert.interpreter import Interpreter

    details = Interpreter(model_path=int8["path"]).get_signature_runner("generate").get_input_details()
    assert details["z"]["dtype"] == np.int8  # --int8_io


@pytest.mark.parametrize("name", ["translator", "gan", "lstm_lm", "bert_mlm", "t5"])
def test_a_bfloat16_model_evaluates_and_exports_as_a_float32_copy(name, tmp_path):
    # What `auto` trains on bfloat16 hardware, forced on every machine: the entry's own
    # evaluation runs on it (keras-hub's MaskedLMHead fails eagerly in bfloat16: bert_mlm
    # traces its calls), and the exporter works on a float32 copy with the same weights
    # (the GAN's float32 output layers and lstm_lm's carried state included).
    entry, source = helpers.tiny_entry(name, tmp_path)
    trainer = Trainer(entry, TrainerConfig(steps=1, batch_size=8, mixed_precision="mixed_bfloat16"), str(tmp_path))
    trainer.train(source, evaluate=False)
    model = trainer.model
    assert any(layer.compute_dtype == "bfloat16" for layer in model._flatten_layers())  # noqa: SLF001
    metrics = entry.evaluate(model, source, "validation")
    assert metrics and all(np.isfinite(v) for v in metrics.values() if isinstance(v, float)), metrics
    copy = exporter.float32_model(entry, model)
    assert copy is not model
    assert all(layer.compute_dtype == "float32" for layer in copy._flatten_layers())  # noqa: SLF001
    assert len(copy.weights) == len(model.weights)
    for a, b in zip(model.weights, copy.weights):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=a.path)
    assert exporter.float32_model(entry, copy) is copy
