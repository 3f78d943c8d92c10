"""One naming of tensors per model, whatever the container (issue 25).

Models Keras builds out of sublayers (MultiHeadAttention, LSTM, Bidirectional, TimeDistributed, GRU,
GroupQueryAttention) and a Sequential model are saved by real Keras as `.h5`, `.keras` and
`.weights.h5`; wsurgery must read the same tensor names from each, convert between the containers so
that Keras loads and computes the same, and `diff` a model against its plain conversion as equal.
"""
import json
import warnings

import keras
import numpy as np
import pytest

from conftest import wsurgery

L = keras.layers


def build(name):
    if name == "sequential":
        return keras.Sequential(
            [keras.Input((8, 8, 3)), L.Conv2D(4, 3, name="c1"), L.BatchNormalization(name="bn"), L.Flatten(), L.Dense(5, name="d")],
            name="seqcnn",
        )
    i = keras.Input((4, 6))
    if name == "attention":
        x = L.MultiHeadAttention(2, 4, name="mha")(i, i)
        x = L.MultiHeadAttention(2, 3, use_bias=False, name="mhanb")(x, x)
        x = L.LSTM(3, name="lstm")(x)
        return keras.Model(i, L.Dense(2, name="d")(x), name="att")
    if name == "recurrent":
        x = L.Bidirectional(L.LSTM(3, return_sequences=True), name="bi")(i)
        x = L.GRU(3, name="gru", return_sequences=True)(x)
        x = L.TimeDistributed(L.Dense(2, name="td_inner"), name="td")(x)
        return keras.Model(i, L.SimpleRNN(2, name="srnn")(x), name="rec")
    if name == "grouped":
        return keras.Model(i, L.GroupQueryAttention(4, 4, 2, name="gqa")(i, i), name="gqa_model")
    raise ValueError(name)


MODELS = ["sequential", "attention", "recurrent", "grouped"]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Each model saved by Keras in its three containers, with its legacy weight names and a probe."""
    root = tmp_path_factory.mktemp("naming")
    result = {}
    for name in MODELS:
        model = build(name)
        rng = np.random.default_rng(1)
        for v in model.weights:  # not Keras's initial values, so a misplaced tensor shows
            values = rng.uniform(0.5, 1.5, v.shape) if "variance" in v.path else rng.normal(0, 0.5, v.shape)
            v.assign(values.astype(v.dtype))
        base = root / name
        model.save(f"{base}.keras")
        model.save_weights(f"{base}.weights.h5")
        if name != "grouped":  # Keras's own legacy loader does not know GroupQueryAttention.
            model.save(f"{base}.h5")
        x = rng.normal(size=(2,) + tuple(model.input_shape[1:])).astype("float32")
        # A freshly built model's variable paths: what Keras writes as a legacy .h5's weight names.
        result[name] = (base, model, [v.path for v in model.weights], x)
    return result


def containers(name):
    return [".keras", ".weights.h5"] + ([] if name == "grouped" else [".h5"])


def names(path):
    report = json.loads(wsurgery("inspect", path, "--json").stdout)
    return [t["name"] for layer in report["layers"] for t in layer["tensors"]]


@pytest.mark.parametrize("name", MODELS)
def test_every_container_reads_the_names_keras_gives_the_variables(name, saved):
    base, _, paths, _ = saved[name]
    for suffix in containers(name):
        if suffix == ".weights.h5" and name == "recurrent":
            continue  # checked below: without a config the wrapped layer's variables are numbered
        got = names(f"{base}{suffix}")
        assert sorted(got) == sorted(paths), suffix
        if suffix != ".weights.h5":  # a .weights.h5 has no config: its order is the file's
            assert got == paths, suffix


def test_weights_only_file_names_what_it_can_without_a_config(saved):
    base, _, paths, _ = saved["recurrent"]
    got = names(f"{base}.weights.h5")
    # The wrapped Dense of a TimeDistributed has no class in a weights-only file: its variables are
    # numbered; every other name is Keras's.
    assert sorted(got) == sorted(p.replace("td_inner/kernel", "td_inner/vars/0").replace("td_inner/bias", "td_inner/vars/1") for p in paths)


def load(path, reference):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        if path.endswith(".weights.h5"):
            model = keras.models.clone_model(reference)
            model.load_weights(path)
            return model
        return keras.models.load_model(path, compile=False)


@pytest.mark.parametrize("name", MODELS)
def test_conversions_between_containers_load_and_compute_the_same(name, saved, out):
    base, model, _, x = saved[name]
    expected = model.predict(x, verbose=0)
    for source in containers(name):
        targets = containers(name) if source != ".weights.h5" else [".weights.h5"]  # no config to write a model from
        for target in targets + [".safetensors"]:
            dst = str(out / f"{source[1:]}_to{target}")
            wsurgery("convert", f"{base}{source}", dst, "--quiet")
            if target == ".safetensors":
                assert sorted(names(dst)) == sorted(names(f"{base}{source}"))
                if source == ".weights.h5":
                    continue
                # Back from safetensors (file order is alphabetical) into Keras's weight order.
                back = dst + ".keras"
                wsurgery("convert", dst, back, "--quiet")
                dst = back
            got = load(dst, model).predict(x, verbose=0)
            assert np.array_equal(got, expected), f"{source} -> {target}"


@pytest.mark.parametrize("name", MODELS)
def test_a_model_and_its_plain_conversion_diff_equal(name, saved, out):
    base, _, _, _ = saved[name]
    for source in containers(name):
        for target in containers(name) + [".safetensors"]:
            if source == ".weights.h5" and target == ".keras":
                continue  # refused: no config to write a model from
            dst = str(out / f"plain{target}")
            wsurgery("convert", f"{base}{source}", dst, "--quiet", "--force")
            report = json.loads(wsurgery("diff", f"{base}{source}", dst, "--json").stdout)
            assert report["equal"] is True and not report["only_in_a"] and not report["only_in_b"], (source, target, report)


def test_a_weights_file_wsurgery_writes_keeps_names_keras_numbers(saved, out):
    base, model, paths, x = saved["recurrent"]
    dst = str(out / "named.weights.h5")
    wsurgery("convert", f"{base}.keras", dst, "--quiet")
    assert sorted(names(dst)) == sorted(paths)  # `td/td_inner/kernel`, not `td/td_inner/vars/0`
    assert np.array_equal(load(dst, model).predict(x, verbose=0), model.predict(x, verbose=0))


def test_recorded_names_that_clash_are_not_trusted(saved, out):
    import h5py

    base, _, _, _ = saved["recurrent"]
    dst = str(out / "named.weights.h5")
    wsurgery("convert", f"{base}.keras", dst, "--quiet")
    with h5py.File(dst, "r+") as h5:
        for i in ("0", "1"):
            h5[f"layers/time_distributed/layer/vars/{i}"].attrs["wsurgery_variable"] = "kernel"
    got = names(dst)
    assert "td/td_inner/vars/0" in got and "td/td_inner/vars/1" in got and "td/td_inner/kernel" not in got
