"""workbench.models: every model source, real files in tmp_path, and the refusals that keep pickles safe."""

import os
import re
import socket

import numpy as np
import pytest
import torch
from torch import nn

from workbench.errors import WorkbenchError
from workbench.models import load_model
from workbench.zoo import SmallCNN

# A user's model definition file: a tiny net, a factory, a factory that raises, one that returns no module.
FACTORY_FILE = '''
import torch
from torch import nn


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        return self.fc(self.bn(self.conv(x)).mean((2, 3)))


def make():
    torch.manual_seed(0)
    return Tiny()


def broken():
    raise RuntimeError("needs a GPU")


def not_a_model():
    return 42
'''

FP32 = dict(rtol=0, atol=1e-6)


@pytest.fixture
def net_py(tmp_path):
    path = tmp_path / "net.py"
    path.write_text(FACTORY_FILE)
    return path


def trained_state(net_py, prefix=""):
    """A state_dict for net.py's Tiny that differs from make()'s initialization, so loading it is visible."""
    module = load_model(f"{net_py}:make").module
    torch.manual_seed(1)
    return {prefix + k: (v + torch.randn_like(v) if v.is_floating_point() else v + 3)
            for k, v in module.state_dict().items()}


def assert_state_equal(module, state):
    own = module.state_dict()
    assert set(own) == set(state)
    for key, value in state.items():
        torch.testing.assert_close(own[key], value, rtol=0, atol=0, msg=key)


def small_cnn():
    torch.manual_seed(0)
    return SmallCNN(num_classes=4, in_channels=3, width=4).eval()


def network_reachable(host="download.pytorch.org"):
    try:
        socket.getaddrinfo(host, 443)
    except OSError:
        return False
    return True


class Payload:
    """Unpickling this runs a shell command: what a malicious checkpoint does."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)


# -- modules and python factories ---------------------------------------------------------------------------
def test_module_is_loaded_as_torch_in_eval_mode():
    module = nn.Sequential(nn.Linear(3, 2), nn.Dropout(0.5)).train()
    loaded = load_model(module)
    assert loaded.kind == "torch"
    assert loaded.module is module
    assert not module.training and not module[1].training
    assert loaded.parameters == 3 * 2 + 2


def test_file_factory_builds_the_model_in_eval_mode(net_py):
    loaded = load_model(f"{net_py}:make")
    assert loaded.kind == "torch"
    assert type(loaded.module).__name__ == "Tiny"
    assert not loaded.module.training
    assert loaded.source == f"{net_py}:make"
    assert loaded.parameters == (3 * 4 * 9 + 4) + (4 + 4) + (4 * 2 + 2)


def test_file_factory_with_a_weights_file(net_py, tmp_path):
    state = trained_state(net_py)
    torch.save(state, tmp_path / "trained.pth")

    loaded = load_model(f"{net_py}:make", weights=tmp_path / "trained.pth")

    assert_state_equal(loaded.module, state)
    assert not loaded.module.training
    assert loaded.source.endswith("trained.pth")


def test_state_dict_file_with_a_factory(net_py, tmp_path):
    state = trained_state(net_py)
    torch.save(state, tmp_path / "trained.pth")

    loaded = load_model(tmp_path / "trained.pth", factory=f"{net_py}:make")

    assert loaded.kind == "torch"
    assert loaded.path == tmp_path / "trained.pth"
    assert_state_equal(loaded.module, state)
    assert not loaded.module.training


def test_state_dict_file_with_a_callable_factory(tmp_path):
    reference = small_cnn()
    torch.save(reference.state_dict(), tmp_path / "cnn.pth")

    loaded = load_model(tmp_path / "cnn.pth", factory=lambda: SmallCNN(num_classes=4, in_channels=3, width=4))

    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(loaded.module(x), reference(x), **FP32)


@pytest.mark.parametrize("wrap", ["state_dict", "model_state_dict", "model"])
def test_checkpoint_dict_is_unwrapped(net_py, tmp_path, wrap):
    state = trained_state(net_py)
    torch.save({wrap: state, "epoch": 7}, tmp_path / "ckpt.pth")
    loaded = load_model(tmp_path / "ckpt.pth", factory=f"{net_py}:make")
    assert_state_equal(loaded.module, state)


def test_dataparallel_module_prefix_is_stripped(net_py, tmp_path):
    state = trained_state(net_py)
    wrapped = nn.DataParallel(load_model(f"{net_py}:make").module)
    wrapped.module.load_state_dict(state)
    saved = wrapped.state_dict()
    assert all(k.startswith("module.") for k in saved)
    torch.save(saved, tmp_path / "dp.pth")

    loaded = load_model(tmp_path / "dp.pth", factory=f"{net_py}:make")

    assert_state_equal(loaded.module, state)


def test_state_dict_without_a_factory_says_how_to_give_one(net_py, tmp_path):
    torch.save(trained_state(net_py), tmp_path / "trained.pth")
    with pytest.raises(WorkbenchError, match=r"trained\.pth holds a state_dict.*factory='file\.py:name'"):
        load_model(tmp_path / "trained.pth")


def test_state_dict_keys_that_do_not_fit_are_listed(net_py, tmp_path):
    state = trained_state(net_py)
    state["head.bias"] = state.pop("fc.bias")
    torch.save(state, tmp_path / "renamed.pth")

    with pytest.raises(WorkbenchError) as info:
        load_model(tmp_path / "renamed.pth", factory=f"{net_py}:make")

    message = str(info.value)
    assert "renamed.pth do not fit Tiny" in message
    assert "missing: fc.bias" in message
    assert "unexpected: head.bias" in message
    assert "Check that the factory builds the architecture" in message


def test_state_dict_with_a_wrong_shape_names_the_key_and_both_shapes(net_py, tmp_path):
    state = trained_state(net_py)
    state["fc.weight"] = torch.zeros(3, 4)
    torch.save(state, tmp_path / "wide.pth")

    with pytest.raises(WorkbenchError, match=re.escape("wrong shape: fc.weight: file (3, 4) vs model (2, 4)")):
        load_model(tmp_path / "wide.pth", factory=f"{net_py}:make")


def test_factory_that_raises_is_named(net_py):
    with pytest.raises(WorkbenchError, match=r"the factory .*net\.py:broken raised RuntimeError: needs a GPU"):
        load_model(f"{net_py}:broken")


def test_factory_that_returns_no_module_is_named(net_py):
    with pytest.raises(WorkbenchError, match=r"net\.py:not_a_model returned int, not a torch\.nn\.Module"):
        load_model(f"{net_py}:not_a_model")


def test_missing_factory_name_lists_the_callables(net_py):
    with pytest.raises(WorkbenchError, match=r"net\.py has no 'build'; callables there: ") as info:
        load_model(f"{net_py}:build")
    listed = str(info.value).split("callables there: ", 1)[1].split(", ")
    assert {"Tiny", "make", "broken", "not_a_model"} <= set(listed)


def test_missing_factory_file_is_named(tmp_path):
    with pytest.raises(WorkbenchError, match=r"model definition file .*absent\.py does not exist"):
        load_model(f"{tmp_path / 'absent.py'}:make")


def test_factory_file_that_fails_to_import_is_named(tmp_path):
    (tmp_path / "bad.py").write_text("def make(:\n")
    with pytest.raises(WorkbenchError, match=r"importing .*bad\.py failed: SyntaxError"):
        load_model(f"{tmp_path / 'bad.py'}:make")


# -- pickles: refused unless trusted ----------------------------------------------------------------------
def test_pickled_module_is_refused_by_default_and_loads_with_trust(tmp_path):
    reference = small_cnn()
    torch.save(reference, tmp_path / "whole.pth")

    with pytest.raises(WorkbenchError, match=r"whole\.pth .*refused because unpickling runs code.*trust=True"):
        load_model(tmp_path / "whole.pth")

    loaded = load_model(tmp_path / "whole.pth", trust=True)
    assert loaded.kind == "torch"
    assert isinstance(loaded.module, SmallCNN)
    assert any("trust=True" in note for note in loaded.notes)
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(loaded.module(x), reference(x), **FP32)


@pytest.mark.parametrize("entry", ["state_dict_file", "factory_weights"])
def test_malicious_pickle_is_refused_without_running_it(net_py, tmp_path, entry):
    marker = tmp_path / "pwned"
    state = trained_state(net_py)
    state["fc.bias"] = Payload(marker)
    torch.save(state, tmp_path / "evil.pth")
    assert not marker.exists()

    with pytest.raises(WorkbenchError, match=r"evil\.pth .*refused because unpickling runs code"):
        if entry == "state_dict_file":
            load_model(tmp_path / "evil.pth", factory=f"{net_py}:make")
        else:
            load_model(f"{net_py}:make", weights=tmp_path / "evil.pth")
    assert not marker.exists(), "the payload ran although the file was refused"

    # The payload is real: trusting the file runs it. This is what the refusal above prevented.
    with pytest.raises(WorkbenchError):
        load_model(tmp_path / "evil.pth", factory=f"{net_py}:make", trust=True)
    assert marker.exists()


# -- other formats ------------------------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_torchscript_file_is_loaded_as_torchscript(tmp_path):
    reference = small_cnn()
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    torch.jit.save(torch.jit.trace(reference, x), str(tmp_path / "cnn.pt"))

    loaded = load_model(tmp_path / "cnn.pt")

    assert loaded.kind == "torchscript"
    assert loaded.path == tmp_path / "cnn.pt"
    assert not loaded.module.training
    with torch.no_grad():
        torch.testing.assert_close(loaded.module(x), reference(x), **FP32)


def test_onnx_file_is_loaded_as_onnx(tmp_path):
    path = tmp_path / "cnn.onnx"
    torch.onnx.export(small_cnn(), (torch.rand(1, 3, 16, 16),), str(path), dynamo=False)

    loaded = load_model(path)

    assert loaded.kind == "onnx"
    assert loaded.path == path
    assert loaded.module is None
    assert any("ONNX Runtime" in note for note in loaded.notes)


def test_corrupt_onnx_is_refused(tmp_path):
    path = tmp_path / "noise.onnx"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(WorkbenchError, match=r"noise\.onnx is not a valid ONNX model"):
        load_model(path)


def test_empty_pth_is_refused_as_empty(tmp_path):
    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(WorkbenchError, match=r"empty\.pth is empty \(0 bytes\); the download or save did not"):
        load_model(tmp_path / "empty.pth", factory=small_cnn)


@pytest.mark.parametrize("zipped", [True, False], ids=["zip", "legacy"])
def test_truncated_pth_is_refused_as_unreadable(tmp_path, zipped):
    full, cut = tmp_path / "full.pth", tmp_path / "cut.pth"
    torch.save(small_cnn().state_dict(), full, _use_new_zipfile_serialization=zipped)
    data = full.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(WorkbenchError, match=r"cut\.pth is not a readable PyTorch file \(truncated or corrupt\?\)"):
        load_model(cut, factory=small_cnn)


def test_text_file_named_pth_is_refused_as_unreadable(tmp_path):
    # The unpickler fails on text with a bare KeyError (an opcode reads a missing memo slot).
    (tmp_path / "notes.pth").write_text("hello world\n")
    with pytest.raises(WorkbenchError, match=r"notes\.pth is not a readable PyTorch file \(truncated or corrupt"):
        load_model(tmp_path / "notes.pth", factory=small_cnn)


def test_unknown_suffix_is_refused_with_the_known_ones(tmp_path):
    (tmp_path / "model.h5").write_bytes(b"HDF")
    with pytest.raises(WorkbenchError, match=r"model\.h5: unknown model type '\.h5'; use a \.pt/\.pth, \.onnx"):
        load_model(tmp_path / "model.h5")


def test_missing_model_file_is_named(tmp_path):
    with pytest.raises(WorkbenchError, match=r"model file .*ghost\.pth does not exist"):
        load_model(tmp_path / "ghost.pth")


def test_missing_weights_file_is_named(net_py, tmp_path):
    with pytest.raises(WorkbenchError, match=r"weights file .*ghost\.pth does not exist"):
        load_model(f"{net_py}:make", weights=tmp_path / "ghost.pth")


# -- torchvision --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("weights", [None, "none"])
def test_torchvision_random_weights_carry_imagenet_metadata(weights):
    loaded = load_model("torchvision:resnet18", weights=weights)

    assert loaded.kind == "torch" and loaded.task == "classification"
    assert not loaded.module.training
    assert any("random weights" in note for note in loaded.notes)
    assert len(loaded.labels) == 1000 and loaded.labels[0] == "tench"
    pre = loaded.preprocess
    np.testing.assert_allclose(pre.mean, (0.485, 0.456, 0.406), rtol=0, atol=1e-6)
    np.testing.assert_allclose(pre.std, (0.229, 0.224, 0.225), rtol=0, atol=1e-6)
    assert pre.size == (224, 224) and pre.resize == 256 and pre.fit == "crop"


def test_torchvision_unknown_model_is_refused_with_examples():
    with pytest.raises(WorkbenchError, match=r"torchvision has no model 'resnet9000'; names look like alexnet"):
        load_model("torchvision:resnet9000", weights=None)


def test_torchvision_bad_weights_name_lists_the_valid_ones():
    with pytest.raises(WorkbenchError, match=r"resnet50 has no weights 'IMAGENET9K'; choose one of "
                                             r"IMAGENET1K_V1, IMAGENET1K_V2 or 'none'"):
        load_model("torchvision:resnet50", weights="IMAGENET9K")


def test_torchvision_default_weights_offline_says_how_to_continue(tmp_path, monkeypatch):
    if network_reachable():
        pytest.skip("download.pytorch.org resolves: this test checks the offline message")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))  # no cached checkpoint can be used

    with pytest.raises(WorkbenchError, match=r"could not get the weights ResNet18_Weights\.IMAGENET1K_V1") as info:
        load_model("torchvision:resnet18")

    message = str(info.value)
    assert "weights='none'" in message
    assert f"resnet18-f37072fd.pth in {tmp_path / 'torch_home' / 'hub' / 'checkpoints'}" in message


# -- timm -------------------------------------------------------------------------------------------------

def test_timm_random_weights_carry_the_pretrained_cfg_preprocessing():
    pytest.importorskip("timm")
    loaded = load_model("timm:test_vit", weights="none")
    assert loaded.name == "test_vit" and loaded.task == "classification" and len(loaded.labels) == 1000
    # unique, as a Core ML classifier's {label: probability} needs: ImageNet has two "crane"s and two "maillot"s
    assert len(set(loaded.labels)) == 1000 and "crane (n02012849)" in loaded.labels
    assert any("random weights" in n for n in loaded.notes)
    pre = loaded.preprocess  # test_vit.r160_in1k: 160 px, crop_pct 0.95, bicubic, mean/std 0.5
    assert pre.size == (160, 160) and pre.resize == int(160 / 0.95) and pre.interpolation == "bicubic"
    assert pre.mean == (0.5, 0.5, 0.5) and pre.std == (0.5, 0.5, 0.5)
    assert not loaded.module.training


def test_timm_pretrained_offline_says_how_to_continue(monkeypatch):
    pytest.importorskip("timm")
    import workbench.models as models

    # never download in tests: the hub is unreachable and the weights are not cached, whatever the machine
    monkeypatch.setattr(models, "_hub_reachable", lambda: False)
    monkeypatch.setattr(models, "_cached", lambda hub_id: False)
    with pytest.raises(WorkbenchError, match=r"could not get the pretrained weights timm/test_vit\.r160_in1k for "
                                             r"timm:test_vit .*Offline\? .*--weights none"):
        load_model("timm:test_vit")


def test_timm_unknown_model_suggests_close_names():
    pytest.importorskip("timm")
    with pytest.raises(WorkbenchError, match=r"timm has no model 'mobilevit_xss'; did you mean .*mobilevit_xs"):
        load_model("timm:mobilevit_xss", weights="none")


def test_timm_reparameterizable_model_is_checked_in_its_deployed_form():
    """mobileone_s0 as built has parallel conv-bn branches per block: its ONNX export took minutes. Fused, as it
    ships, it gives the same outputs."""
    timm = pytest.importorskip("timm")
    torch.manual_seed(0)
    loaded = load_model("timm:mobileone_s0", weights="none")
    assert any("reparameterized for inference" in n for n in loaded.notes)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in loaded.module.modules())
    torch.manual_seed(0)
    built = timm.create_model("mobileone_s0", pretrained=False).eval()  # the same weights, unfused
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        want, got = built(x), loaded.module(x)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6 * float(want.abs().max()))
