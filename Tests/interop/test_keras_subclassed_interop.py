"""Keras 3 subclassed and nested models (issue 23, item 1): their `.weights.h5` and `.keras` keep each
sublayer under the attribute that holds it (`conv/vars`, `block1/layers_/conv2d/vars`, the model's own
`vars`), not under `layers/`. Every tensor is read, named as Keras names the layer, written back where
`model.load_weights` finds it; a dataset the reader cannot place is refused, never dropped."""
import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import h5py
import keras
import numpy as np
import pytest
from safetensors.numpy import load_file

from conftest import wsurgery


@keras.saving.register_keras_serializable(package="wsurgery_tests")
class Block(keras.layers.Layer):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.layers_ = [keras.layers.Conv2D(4, 3, padding="same"), keras.layers.BatchNormalization()]
        self.proj = keras.layers.Dense(4)

    def call(self, x):
        for layer in self.layers_:
            x = layer(x)
        return self.proj(x)


@keras.saving.register_keras_serializable(package="wsurgery_tests")
class Net(keras.Model):
    def __init__(self, classes=5, **kwargs):
        super().__init__(**kwargs)
        self.classes = classes
        self.conv = keras.layers.Conv2D(8, 3)
        self.block1 = Block()
        self.pool = keras.layers.GlobalAveragePooling2D()
        self.head = keras.layers.Dense(classes)
        self.scale = self.add_weight(shape=(), initializer="ones", name="scale")

    def call(self, x):
        return self.head(self.pool(self.block1(self.conv(x)))) * self.scale

    def get_config(self):
        return {**super().get_config(), "classes": self.classes}


def built(channels=3):
    keras.utils.set_random_seed(7)
    model = Net()
    model(np.zeros((1, 16, 16, channels), "float32"))
    return model


def randomized(model):
    rng = np.random.default_rng(3)
    for w in model.weights:
        w.assign(rng.normal(size=w.shape).astype("float32") if w.shape else np.float32(1.5))
    return model


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    d = tmp_path_factory.mktemp("subclassed")
    model = randomized(built())
    model.save_weights(d / "sub.weights.h5")
    model.save(d / "sub.keras")
    return d, model


def same_weights(a, b):
    # In construction order (the paths carry Keras's automatic names, which differ per instance).
    assert [w.shape for w in a.weights] == [w.shape for w in b.weights]
    for x, y in zip(a.weights, b.weights):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_every_tensor_is_read_and_named_as_keras_names_the_layer(saved):
    d, model = saved
    import json
    layers = json.loads(wsurgery("inspect", d / "sub.weights.h5", "--json").stdout)["layers"]
    # The names Keras gave this instance's layers (its automatic names count per process).
    keras_names = [model.conv.name, model.block1.layers_[0].name, model.block1.layers_[1].name, model.block1.proj.name,
                   model.head.name, model.name]
    assert set(keras_names) <= {layer["name"] for layer in layers}, (keras_names, [layer["name"] for layer in layers])
    assert "13 tensors" in wsurgery("inspect", d / "sub.weights.h5").stdout
    # To safetensors: every variable, none dropped.
    wsurgery("convert", d / "sub.weights.h5", d / "sub.safetensors")
    assert len(load_file(d / "sub.safetensors")) == len(model.weights) == 13


@pytest.mark.parametrize("suffix", [".weights.h5", ".keras"])
def test_a_round_trip_loads_in_keras_with_the_same_weights(saved, suffix, tmp_path):
    d, model = saved
    wsurgery("convert", d / f"sub{suffix}", tmp_path / f"out{suffix}")
    if suffix == ".keras":
        loaded = keras.saving.load_model(tmp_path / "out.keras", compile=False)
    else:
        loaded = built()
        loaded.load_weights(tmp_path / "out.weights.h5")
    same_weights(model, loaded)


def test_collapse_channels_on_a_subclassed_model_computes_what_it_claims(saved, tmp_path):
    d, model = saved
    wsurgery("collapse-channels", d / "sub.weights.h5", tmp_path / "gray.weights.h5")
    gray_model = built(channels=1)
    gray_model.load_weights(tmp_path / "gray.weights.h5")
    image = np.random.default_rng(0).uniform(size=(2, 16, 16, 1)).astype("float32")
    np.testing.assert_allclose(gray_model.predict(image, verbose=0), model.predict(np.repeat(image, 3, -1), verbose=0),
                               rtol=1e-4, atol=1e-4)


def test_a_dataset_no_layer_holds_is_refused_not_dropped(saved, tmp_path):
    d, _ = saved
    damaged = tmp_path / "extra.weights.h5"
    damaged.write_bytes((d / "sub.weights.h5").read_bytes())
    with h5py.File(damaged, "a") as f:
        f.create_dataset("block1/notes/table", data=np.arange(6, dtype="float32"))
    proc = wsurgery("convert", damaged, tmp_path / "o.safetensors", expect=65)
    assert "block1/notes/table" in proc.stderr and "refusing rather than dropping it" in proc.stderr
    assert not (tmp_path / "o.safetensors").exists()


def test_layer_kinds_of_recurrent_attention_prelu_and_embedding_layers(tmp_path):
    # Keras: with the config (.keras) and without it (.weights.h5, kinds read off Keras's automatic names);
    # sublayers Keras builds inside (lstm/cell, the attention's query/key/value) belong to their owner.
    inp = keras.Input((10,), dtype="int32")
    emb, lstm, gru = keras.layers.Embedding(50, 8), keras.layers.LSTM(8, return_sequences=True), keras.layers.GRU(8, return_sequences=True)
    mha, prelu = keras.layers.MultiHeadAttention(2, 4), keras.layers.PReLU()
    x = gru(lstm(emb(inp)))
    x = prelu(mha(x, x))
    out = keras.layers.Dense(3)(keras.layers.GlobalAveragePooling1D()(x))
    model = keras.Model(inp, out)
    model.save_weights(tmp_path / "k.weights.h5")
    model.save(tmp_path / "k.keras")
    import json
    # By the names Keras gave these layers (automatic names count per process: lstm, lstm_1, ...).
    for name in ["k.weights.h5", "k.keras"]:
        layers = json.loads(wsurgery("inspect", tmp_path / name, "--json").stdout)["layers"]
        kinds = {layer["name"]: layer["kind"] for layer in layers}
        assert kinds[lstm.name] == kinds[gru.name] == "recurrent" and lstm.cell.name not in kinds, kinds
        assert kinds[mha.name] == "attention" and mha._query_dense.name not in kinds, kinds
        owned = {t["name"] for layer in layers if layer["name"] == lstm.name for t in layer["tensors"]}
        assert f"{lstm.name}/{lstm.cell.name}/recurrent_kernel" in owned, owned
        assert kinds[prelu.name] == "activation" and kinds[emb.name] == "embedding", kinds
    # PyTorch names: nn.LSTM, nn.MultiheadAttention, nn.PReLU, a GPT-2 token table.
    from safetensors.numpy import save_file
    z = lambda *s: np.zeros(s, np.float32)
    save_file({"lstm.weight_ih_l0": z(32, 8), "lstm.weight_hh_l0": z(32, 8), "lstm.bias_ih_l0": z(32), "lstm.bias_hh_l0": z(32),
               "attn.in_proj_weight": z(24, 8), "attn.in_proj_bias": z(24), "attn.out_proj.weight": z(8, 8),
               "prelu1.weight": z(8), "transformer.wte.weight": z(50, 8), "fc.weight": z(3, 8)}, str(tmp_path / "k.safetensors"))
    layers = json.loads(wsurgery("inspect", tmp_path / "k.safetensors", "--json").stdout)["layers"]
    kinds = {layer["name"]: layer["kind"] for layer in layers}
    assert kinds == {"lstm": "recurrent", "attn": "attention", "attn.out_proj": "dense", "prelu1": "activation",
                     "transformer.wte": "embedding", "fc": "dense"}, kinds
