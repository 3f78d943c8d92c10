"""Every keras.applications family through the surgery commands, checked in real Keras.

Each family is built with weights=None at a small input size (its smallest variant in CI; set
WSURGERY_ALL_VARIANTS=1 for every variant) and saved as .keras and legacy .h5. Models whose preprocessing
layers hold ImageNet statistics get them set, as the pretrained files have them.
"""
import os
import re
import shutil

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "jax")
import keras  # noqa: E402
from keras import applications as A  # noqa: E402

from conftest import wsurgery  # noqa: E402

# family -> (constructor, input size), smallest variant first.
FAMILIES = {
    "Xception": [(A.Xception, 71)],
    "VGG": [(A.VGG16, 32), (A.VGG19, 32)],
    "ResNet": [(A.ResNet50, 32), (A.ResNet101, 32), (A.ResNet152, 32)],
    "ResNetV2": [(A.ResNet50V2, 32), (A.ResNet101V2, 32), (A.ResNet152V2, 32)],
    "InceptionV3": [(A.InceptionV3, 75)],
    "InceptionResNetV2": [(A.InceptionResNetV2, 75)],
    "MobileNet": [(A.MobileNet, 32)],
    "MobileNetV2": [(A.MobileNetV2, 32)],
    "MobileNetV3": [(A.MobileNetV3Small, 32), (A.MobileNetV3Large, 32)],
    "DenseNet": [(A.DenseNet121, 32), (A.DenseNet169, 32), (A.DenseNet201, 32)],
    "NASNet": [(A.NASNetMobile, 32), (A.NASNetLarge, 32)],
    "EfficientNet": [(A.EfficientNetB0, 32)] + [(getattr(A, f"EfficientNetB{i}"), 32) for i in range(1, 8)],
    "EfficientNetV2": [(A.EfficientNetV2B0, 32)]
    + [(getattr(A, f"EfficientNetV2{v}"), 32) for v in ["B1", "B2", "B3", "S", "M", "L"]],
    "ConvNeXt": [(A.ConvNeXtTiny, 32)] + [(getattr(A, f"ConvNeXt{v}"), 32) for v in ["Small", "Base", "Large", "XLarge"]],
}
ALL = os.environ.get("WSURGERY_ALL_VARIANTS") == "1"
CASES = [(f"{family}-{fn.__name__}", fn, size) for family, variants in FAMILIES.items() for fn, size in (variants if ALL else variants[:1])]
# Families whose first convolution pads with zeros after a per-channel normalisation: collapsing folds
# the normalisation exactly away from the border only (see the README).
BORDER_APPROXIMATE = {"EfficientNet", "EfficientNetV2"}
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], "float32")
IMAGENET_VAR = np.array([0.229, 0.224, 0.225], "float32") ** 2


def features(model):
    """The model up to its last global pooling or Flatten: what the classifier reads."""
    pools = [l for l in model.layers if type(l).__name__.startswith("Global") or type(l).__name__ == "Flatten"]
    return keras.Model(model.inputs, pools[-1].output)


def rel_err(a, b):
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-6))


@pytest.fixture(scope="module", params=CASES, ids=[c[0] for c in CASES])
def app(request, tmp_path_factory):
    name, fn, size = request.param
    model = fn(weights=None, input_shape=(size, size, 3), classes=10)
    for layer in model.layers:
        if type(layer).__name__ == "Normalization" and layer.get_weights():
            count = layer.get_weights()[2]
            layer.set_weights([IMAGENET_MEAN, IMAGENET_VAR, count])
    folder = tmp_path_factory.mktemp(name)
    paths = {ext: str(folder / f"model{ext}") for ext in (".keras", ".h5")}
    for path in paths.values():
        model.save(path)
    # The reference is the model as saved (a Normalization computes with the statistics it was built or
    # loaded with, not ones set afterwards).
    reference = load(paths[".keras"])
    yield dict(name=name, family=name.split("-")[0], fn=fn, size=size, model=reference, paths=paths, folder=folder)
    # The largest variants write several GB per family: free the disk before the next one.
    shutil.rmtree(folder, ignore_errors=True)
    keras.backend.clear_session()


# Legacy .h5 files Keras 3.15 cannot load itself, the original included: ConvNeXt (LayerScale's config)
# and MobileNetV3 (hard_sigmoid's Add called with a constant). The command still has to succeed.
UNLOADABLE_H5 = {"ConvNeXt", "MobileNetV3"}


def loadable(app, ext):
    if app["family"] in UNLOADABLE_H5 and ext == ".h5":
        pytest.skip(f"Keras cannot load its own {app['family']} legacy .h5, the original included")


def load(path):
    # Legacy .h5 files name keras.applications' own classes without their module.
    from keras.src.applications.convnext import LayerScale
    from keras.src.applications.inception_resnet_v2 import CustomScaleLayer

    custom = {"LayerScale": LayerScale, "CustomScaleLayer": CustomScaleLayer}
    return keras.models.load_model(path, compile=False, custom_objects=custom)


@pytest.mark.parametrize("ext", [".keras", ".h5"])
def test_collapse_gray_equals_rgb_copy(app, ext):
    dst = str(app["folder"] / f"gray{ext}")
    wsurgery("collapse-channels", app["paths"][ext], dst, "--force")
    loadable(app, ext)
    gray = load(dst)
    assert gray.input_shape[-1] == 1
    x = np.random.default_rng(0).uniform(0, 255, (2, app["size"], app["size"], 1)).astype("float32")
    err = rel_err(features(gray).predict(x, verbose=0), features(app["model"]).predict(np.repeat(x, 3, -1), verbose=0))
    if app["family"] in BORDER_APPROXIMATE:
        # Exact away from the border: the stem (its convolution and the BatchNorm holding the folded
        # offset) agrees inside the padded frame.
        stem = [l for l in gray.layers if type(l).__name__ == "BatchNormalization"][0].name
        a = keras.Model(gray.inputs, gray.get_layer(stem).output).predict(x, verbose=0)
        b = keras.Model(app["model"].inputs, app["model"].get_layer(stem).output).predict(np.repeat(x, 3, -1), verbose=0)
        assert rel_err(a[:, 1:-1, 1:-1], b[:, 1:-1, 1:-1]) <= 1e-4
    else:
        assert err <= 1e-4


def test_adapt_round_trip(app):
    """collapse then adapt-channels back to 3: the RGB copy of a gray image gives the original's features."""
    gray = str(app["folder"] / "rt-gray.keras")
    rgb = str(app["folder"] / "rt-rgb.keras")
    wsurgery("collapse-channels", app["paths"][".keras"], gray, "--force")
    wsurgery("adapt-channels", gray, rgb, "--channels", "3", "--force")
    back = load(rgb)
    assert back.input_shape[-1] == 3
    x = np.repeat(np.random.default_rng(1).uniform(0, 255, (2, app["size"], app["size"], 1)).astype("float32"), 3, -1)
    if app["family"] not in BORDER_APPROXIMATE:
        assert rel_err(features(back).predict(x, verbose=0), features(app["model"]).predict(x, verbose=0)) <= 1e-4


@pytest.mark.parametrize("ext", [".keras", ".h5"])
def test_replace_head(app, ext):
    dst = str(app["folder"] / f"head5{ext}")
    wsurgery("replace-head", app["paths"][ext], dst, "--classes", "5", "--force")
    loadable(app, ext)
    model = load(dst)
    assert model.output_shape[-1] == 5
    before, after = [np.asarray(v) for v in app["model"].weights], [np.asarray(v) for v in model.weights]
    assert len(before) == len(after)
    changed = [i for i, (a, b) in enumerate(zip(before, after)) if a.shape != b.shape or a.tobytes() != b.tobytes()]
    assert len(changed) <= 2, changed  # the head's kernel and bias, nothing else


def test_set_input_shape(app):
    new = app["size"] * 2
    dst = str(app["folder"] / "bigger.keras")
    wsurgery("set-input-shape", app["paths"][".keras"], dst, "--size", f"{new}x{new}", "--force")
    model = load(dst)
    assert model.input_shape[1:3] == (new, new)
    reference = app["fn"](weights=None, input_shape=(new, new, 3), classes=10)
    reference.set_weights(model.get_weights())
    # Saved and loaded, so a Normalization computes with the statistics just set.
    reference.save(str(app["folder"] / "reference.keras"))
    reference = load(str(app["folder"] / "reference.keras"))
    x = np.random.default_rng(2).uniform(0, 255, (2, new, new, 3)).astype("float32")
    assert rel_err(model.predict(x, verbose=0), reference.predict(x, verbose=0)) <= 1e-5


@pytest.mark.parametrize("keep", [False, True], ids=["free-input", "keep-input-shape"])
def test_drop_top_is_include_top_false(app, keep):
    # include_top=False with no input_shape builds the backbone for any size: (None, None, None, 3);
    # --keep-input-shape keeps the trained size, as include_top=False with input_shape=(size, size, 3).
    # NASNet's cells compose at some sizes only (Keras's NASNetMobile fixes 224x224 for that): its input is kept.
    dst = str(app["folder"] / "features.keras")
    proc = wsurgery("drop-layer", app["paths"][".keras"], dst, "--top", "--force", *(["--keep-input-shape"] if keep else []))
    model = load(dst)
    fixed = keep or app["family"] == "NASNet"
    reference = app["fn"](weights=None, include_top=False, input_shape=(app["size"], app["size"], 3) if fixed else None)
    assert model.input_shape == reference.input_shape, proc.stdout
    if fixed and not keep:
        assert "do not compose at every size" in proc.stdout
    # Layers Keras names itself are numbered per session (`reshape_2`); compare their stems.
    def stems(m):
        return [re.sub(r"_\d+$", "", l.name) for l in m.layers]

    names, expected = stems(model), stems(reference)
    if app["family"] == "ConvNeXt":
        # include_top=False appends a fresh LayerNormalization to the backbone; the trained model has none.
        assert expected[-1].startswith("layer_normalization")
        expected = expected[:-1]
    assert names == expected
    assert model.output_shape == reference.output_shape


# Families whose weights include a variable with no PyTorch module to hold it.
NO_TORCH_EQUIVALENT = {"EfficientNet": "normalization", "ConvNeXt": "layer_scale"}


def conv2d_nchw(x, w, b, stride, padding):
    """A plain NCHW convolution (PyTorch's conventions) with Keras's `valid` / `same` padding."""
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    if padding == "same":
        ph = max((-(-h // stride[0]) - 1) * stride[0] + kh - h, 0)
        pw = max((-(-wd // stride[1]) - 1) * stride[1] + kw - wd, 0)
        x = np.pad(x, ((0, 0), (0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2)))
    oh = (x.shape[2] - kh) // stride[0] + 1
    ow = (x.shape[3] - kw) // stride[1] + 1
    y = np.zeros((n, o, oh, ow), dtype=np.float64)
    for i in range(kh):
        for j in range(kw):
            patch = x[:, :, i : i + stride[0] * oh : stride[0], j : j + stride[1] * ow : stride[1]]
            y += np.einsum("nchw,oc->nohw", patch, w[:, :, i, j])
    return y + (b[None, :, None, None] if b is not None else 0)


def test_layout_torch_first_convolution(app):
    dst = str(app["folder"] / "torch.safetensors")
    if app["family"] in NO_TORCH_EQUIVALENT:
        proc = wsurgery("convert", app["paths"][".keras"], dst, "--layout", "torch", "--force", expect=65)
        assert NO_TORCH_EQUIVALENT[app["family"]] in proc.stderr and "no PyTorch equivalent" in proc.stderr
        assert not os.path.exists(dst)
        return
    wsurgery("convert", app["paths"][".keras"], dst, "--layout", "torch", "--force")
    from safetensors.numpy import load_file

    state = load_file(dst)
    model = app["model"]
    conv = next(l for l in model.layers if type(l).__name__ == "Conv2D")
    x = np.random.default_rng(3).uniform(0, 255, (2, app["size"], app["size"], 3)).astype("float32")
    inputs = keras.Model(model.inputs, conv.input).predict(x, verbose=0)
    expected = keras.Model(model.inputs, conv.output).predict(x, verbose=0)
    weight = state[f"{conv.name}.weight"].astype(np.float64)
    bias = state.get(f"{conv.name}.bias")
    got = conv2d_nchw(inputs.transpose(0, 3, 1, 2).astype(np.float64), weight, bias, conv.strides, conv.padding)
    activation = conv.get_config()["activation"]
    assert activation in ("linear", "relu"), activation
    if activation == "relu":
        got = np.maximum(got, 0)
    assert rel_err(got.transpose(0, 2, 3, 1), expected) <= 1e-4
