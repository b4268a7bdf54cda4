"""Load a model from its many sources, safely by default.

Sources: an ``nn.Module``; ``torchvision:NAME`` (with ``weights=``); ``timm:NAME`` (with ``weights=``: the
pretrained tag, "DEFAULT" or "none"; its `pretrained_cfg` gives the preprocessing); ``path/to/file.py:factory``; a
state_dict ``.pth`` with a factory; a TorchScript ``.pt``; a fully pickled model (only with ``trust=True``);
and the files of every registered format (``.onnx``, ``.mlpackage``...), checked when loaded. Files are read
with ``torch.load(weights_only=True)`` unless the caller explicitly trusts them: a pickle can run any code.
"""

from __future__ import annotations

import importlib.util
import inspect
import struct
import sys
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import formats
from .errors import WorkbenchError, first_line
from .preprocess import Preprocess
from .tasks import distinct_labels

TORCH_SUFFIXES = {".pt", ".pth", ".ckpt", ".bin", ".pkl"}


@dataclass
class LoadedModel:
    """A model and what is known about it.

    kind: "torch" (an eager nn.Module), "torchscript", "onnx" or "coreml". `module` is set for the first
    two. `preprocess` is the training preprocessing when the source says it (torchvision weights), `labels`
    the class names when known, `task` a hint ("classification", "segmentation", "image"), `notes` things
    the user must know (random weights). `name` is the model's own name (its class or factory function, the
    torchvision or timm name): what artifacts are called.
    """

    source: str
    kind: str
    name: str = ""
    module: Any = None
    path: Path | None = None
    preprocess: Preprocess | None = None
    labels: list[str] | None = None
    task: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def parameters(self) -> int | None:
        if self.module is None:
            return None
        return sum(p.numel() for p in self.module.parameters())


# Said of every model built with random weights: what its figures mean. Such a net's scores are often nearly
# equal (a torchvision classifier's logits span about 1e-9), so its top class is rounding, and an fp16 format
# (Core ML's default) answers another: top-1 and PSNR there say nothing about the conversion.
RANDOM_WEIGHTS = ("random weights (weights='none'): outputs are meaningless, but conversion parity still holds; "
                  "near-equal scores make top-1 and PSNR rounding, so read max abs against the tolerance")


def load_model(source, *, weights: str | Path | None = "DEFAULT", factory: str | Callable | None = None,
               trust: bool = False) -> LoadedModel:
    """Load `source` (see the module docstring) and put torch models in eval mode.

    weights: for ``torchvision:NAME``, "DEFAULT", a weights name (``IMAGENET1K_V2``) or "none"/None for
    random weights; for a ``file.py:factory`` source, an optional state_dict file.
    factory: for a state_dict file, what builds the model (``file.py:name`` or a callable).
    trust: allow unpickling arbitrary objects from .pt/.pth files. It runs code from the file.
    Raises WorkbenchError naming the file and the fix.
    """
    import torch

    if isinstance(source, torch.nn.Module):
        return _eval(LoadedModel(source=type(source).__name__, kind="torch", module=source,
                                 name=type(source).__name__))
    if not isinstance(source, (str, Path)):
        raise WorkbenchError(f"cannot load a model from {type(source).__name__}; pass an nn.Module or a path")
    text = str(source)
    if text.startswith("torchvision:"):
        return _eval(_torchvision(text.split(":", 1)[1], weights))
    if text.startswith("timm:"):
        return _eval(_timm(text.split(":", 1)[1], weights))
    if text.startswith("ultralytics:"):
        return _eval(_ultralytics(text.split(":", 1)[1], trust))
    path_part, sep, name = text.rpartition(":")
    if sep and path_part.endswith(".py"):
        module = _call_factory(_factory_from_file(Path(path_part), name), f"{path_part}:{name}")
        loaded = LoadedModel(source=text, kind="torch", module=module, name=name)
        if weights not in (None, "DEFAULT", "none"):
            _load_state_dict(module, _read_state_dict(Path(weights), trust), Path(weights))
            loaded.source += f" + {weights}"
        return _eval(loaded)

    path = Path(text)
    if not path.exists():
        raise WorkbenchError(f"model file {path} does not exist (relative to {Path.cwd()}); check the path")
    if path.is_file() and path.stat().st_size == 0:
        raise WorkbenchError(f"{path} is empty (0 bytes); the download or save did not finish: get or export "
                             "it again")
    suffix = path.suffix.lower()
    if suffix in TORCH_SUFFIXES:
        return _eval(_torch_file(path, factory, trust))
    fmt = formats.for_file(path)
    if fmt is not None:
        note = fmt.validate(path)
        return LoadedModel(source=text, kind=fmt.name, path=path, notes=[note] if note else [])
    known = [".pt/.pth"] + [s for f in formats.registry().values() for s in f.suffixes if s not in TORCH_SUFFIXES]
    raise WorkbenchError(
        f"{path}: unknown model type {suffix!r}; use a {', '.join(known)} file, torchvision:NAME, or file.py:factory"
    )


def _eval(loaded: LoadedModel) -> LoadedModel:
    loaded.module.eval()
    return loaded


# -- torchvision --------------------------------------------------------------------------------------
def _torchvision(name: str, weights) -> LoadedModel:
    import torchvision

    try:
        builder = torchvision.models.get_model_builder(name)
    except ValueError:
        known = ", ".join(sorted(torchvision.models.list_models())[:8])
        raise WorkbenchError(f"torchvision has no model {name!r}; names look like {known}, ...") from None
    enum = _weights_enum(name)
    chosen = None
    if weights not in (None, "none"):
        if enum is None:
            raise WorkbenchError(f"torchvision:{name} has no pretrained weights; pass weights='none'")
        try:
            chosen = enum.DEFAULT if weights == "DEFAULT" else enum[str(weights)]
        except KeyError:
            raise WorkbenchError(
                f"torchvision:{name} has no weights {weights!r}; choose one of "
                f"{', '.join(w.name for w in enum)} or 'none'") from None
    meta_weights = chosen or (enum.DEFAULT if enum is not None else None)
    task = "segmentation" if name in torchvision.models.list_models(torchvision.models.segmentation) else (
        "classification")
    loaded = LoadedModel(source=f"torchvision:{name}", kind="torch", task=task, name=name)
    if meta_weights is not None:
        loaded.preprocess = _preprocess_from_weights(meta_weights)
        loaded.labels = distinct_labels(meta_weights.meta.get("categories") or []) or None
    if chosen is None:
        kwargs = {"aux_loss": False} if task == "segmentation" else {}
        if "weights_backbone" in inspect.signature(builder).parameters:
            kwargs["weights_backbone"] = None  # random means random: no backbone download either
        loaded.module = builder(weights=None, **kwargs)
        loaded.notes.append(RANDOM_WEIGHTS)
        return loaded
    try:
        loaded.module = builder(weights=chosen)
    except Exception as exc:  # the hub raises URLError, HTTPError, RuntimeError... all mean "no weights"
        raise WorkbenchError(
            f"could not get the weights {chosen} for torchvision:{name} ({type(exc).__name__}: {exc}). "
            f"Offline? Put the file {Path(chosen.url).name} in {_hub_dir()}, or pass weights='none' "
            "(--weights none) to check the conversion with random weights"
        ) from exc
    loaded.source += f" ({chosen.name})"
    return loaded


# -- timm ---------------------------------------------------------------------------------------------
def _timm(name: str, weights) -> LoadedModel:
    """timm's `name` ("mobilevit_xs", or "mobilevit_xs.cvnets_in1k" for one pretrained tag). weights: "DEFAULT"
    (timm's pretrained weights), a tag, or None/"none" (random weights, with a note)."""
    from .errors import require

    timm = require("timm", "timm (or: pip install -e '.[timm]')")
    base, _, tag = name.partition(".")
    if weights not in (None, "none", "DEFAULT"):
        if tag and tag != weights:
            raise WorkbenchError(f"timm:{name} names the tag {tag!r} and --weights another ({weights!r}); give one")
        tag = str(weights)
    if not timm.is_model(base):
        import difflib

        close = difflib.get_close_matches(base, timm.list_models(), n=5, cutoff=0.6) or timm.list_models()[:5]
        raise WorkbenchError(f"timm has no model {base!r}; did you mean {', '.join(close)}?")
    full = f"{base}.{tag}" if tag else base
    pretrained = weights not in (None, "none")
    loaded = LoadedModel(source=f"timm:{full}", kind="torch", task="classification", name=base)
    if not pretrained:
        try:
            loaded.module = timm.create_model(full, pretrained=False)
        except Exception as exc:  # an unknown tag
            raise WorkbenchError(f"timm could not build {full}: {type(exc).__name__}: {first_line(exc)}") from exc
        loaded.notes.append(RANDOM_WEIGHTS)
    else:
        loaded.module = _timm_pretrained(timm, full)
    if any(callable(getattr(m, "reparameterize", None)) for m in loaded.module.modules()):
        # MobileOne/FastViT/RepVGG-style blocks train with parallel conv branches and ship fused into one conv
        # (timm's reparameterize_model, exact in eval up to float rounding). The unfused graph made the ONNX
        # export of mobileone_s0 take minutes (ten times the nodes through torch.export and onnxscript's
        # optimizer): the deployed form is what is checked.
        from timm.utils.model import reparameterize_model

        loaded.module = reparameterize_model(loaded.module.eval())
        loaded.notes.append("reparameterized for inference (timm.utils.reparameterize_model): each block's "
                            "train-time branches fused into one conv, as the model is deployed")
    cfg = loaded.module.pretrained_cfg
    loaded.preprocess = Preprocess.from_timm(cfg)
    if pretrained:
        loaded.source += f" ({cfg.get('tag') or 'pretrained'})"
    if getattr(loaded.module, "num_classes", None) == 1000:
        from timm.data import ImageNetInfo

        info = ImageNetInfo()
        short = [info.index_to_description(i).split(",")[0] for i in range(1000)]
        # two "crane"s and two "maillot"s: a Core ML classifier maps labels to probabilities, so each must be
        # unique (the second of each collapsed onto the first and misaligned every probability after it)
        loaded.labels = [f"{s} ({info.index_to_label_name(i)})" if short.count(s) > 1 else s
                         for i, s in enumerate(short)]
    return loaded


# -- ultralytics --------------------------------------------------------------------------------------
# Set before ultralytics is imported: no request off the machine (its online check, update checks, analytics
# and crash reports all read these), no pip install at run time, no model summary printed, and its settings
# file written in a folder of its own, not the user's ~/.config (the user's own settings win where set).
ULTRALYTICS_ENV = {"YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "0", "YOLO_VERBOSE": "0"}


def quiet_ultralytics():
    """ultralytics imported with its network, installs, analytics and chatter off (see ULTRALYTICS_ENV)."""
    import os
    import tempfile

    for key, value in ULTRALYTICS_ENV.items():
        os.environ[key] = value
    os.environ.setdefault("YOLO_CONFIG_DIR", str(Path(tempfile.gettempdir()) / "workbench-ultralytics"))
    from .errors import require

    require("ultralytics", "ultralytics (or: pip install -e '.[detect]')")
    from PIL import Image
    from ultralytics.utils import SETTINGS, patches

    # Importing ultralytics replaces PIL.Image.open process-wide with one that, on a file Pillow cannot read, tries
    # to install and import pi-heif: every later unreadable image raised ModuleNotFoundError instead of Pillow's
    # error (which the workbench turns into "not an image Pillow can read"). Pillow's own goes back.
    Image.open = getattr(patches, "_image_open", Image.open)
    if SETTINGS.get("sync"):
        SETTINGS.update({"sync": False})  # no analytics events or crash reports, even if it were online
    return SETTINGS


def _ultralytics(name: str, trust: bool) -> LoadedModel:
    """Ultralytics' `name`: a model yaml ("yolov8n.yaml", "yolo11n.yaml": random weights, offline) or a .pt
    weights file (read with torch.load(weights_only=True) against Ultralytics' allow-list of its classes,
    unless `trust`). Its eval forward gives (predictions (1, 4 + C, N), side outputs): the predictions are the
    main output, decoded as a detection; the preprocessing is letterbox to a multiple of its stride, 0-1 RGB."""
    quiet_ultralytics()
    import torch

    if name.endswith((".yaml", ".yml")):
        from ultralytics.nn.tasks import DetectionModel, yaml_model_load

        try:
            cfg = yaml_model_load(name)
        except Exception as exc:
            raise WorkbenchError(f"Ultralytics has no model config {name!r} ({first_line(exc)}); names look like "
                                 "yolov8n.yaml, yolo11n.yaml") from exc
        if cfg.get("task", "detect") not in ("detect", None) or "Detect" not in str(cfg.get("head", "")):
            raise WorkbenchError(f"ultralytics:{name} is not a detection model; the workbench reads Ultralytics "
                                 "detectors (yolov8n.yaml, yolo11n.yaml, ...)")
        torch.manual_seed(0)
        module = DetectionModel(cfg, verbose=False)
        notes = ["random weights (an Ultralytics yaml, built offline): outputs are meaningless, but conversion "
                 "parity still holds"]
        stem = Path(name).stem
    else:
        path = Path(name)
        if not path.is_file():
            raise WorkbenchError(f"Ultralytics weights file {path} does not exist (relative to {Path.cwd()}); "
                                 "nothing is downloaded: give the path of a .pt file")
        from ultralytics.nn.tasks import torch_safe_load

        try:
            ckpt, _ = torch_safe_load(str(path), safe_only=not trust)
        except Exception as exc:
            raise WorkbenchError(
                f"{path} could not be read as Ultralytics weights with weights_only=True ({type(exc).__name__}: "
                f"{first_line(exc)}); only if you trust the file, pass trust=True (CLI: --trust-pickle): "
                "unpickling runs code from it") from exc
        module = (ckpt.get("ema") or ckpt.get("model")) if isinstance(ckpt, dict) else ckpt
        if not isinstance(module, torch.nn.Module):
            raise WorkbenchError(f"{path} holds no Ultralytics model (keys: {list(ckpt)[:6]})")
        module = module.float()
        notes = [] if not trust else ["loaded with trust=True (code from the file ran)"]
        stem = path.stem
    if getattr(module, "task", "detect") != "detect":
        raise WorkbenchError(f"ultralytics:{name} is a {module.task} model; the workbench reads detectors")
    module.eval()
    stride = int(max(module.stride.max().item(), 32)) if hasattr(module, "stride") else 32
    names = getattr(module, "names", None) or {}
    labels = [str(names[k]) for k in sorted(names)] if isinstance(names, dict) else list(names)
    if labels == [str(i) for i in range(80)]:  # a yaml's model has no names: its 80 classes are COCO's
        from ultralytics.cfg import get_cfg  # noqa: F401  (the package's own dataset yamls are beside it)
        from ultralytics.utils import ROOT, YAML

        coco = YAML.load(ROOT / "cfg" / "datasets" / "coco.yaml").get("names", {})
        labels = [str(coco[k]) for k in sorted(coco)] if len(coco) == 80 else labels
    size = (640, 640)
    pre = Preprocess.preset("unit", size=size).replace(fit="letterbox", name=f"Ultralytics letterbox to a multiple "
                                                                               f"of stride {stride}, x/255 RGB")
    return LoadedModel(source=f"ultralytics:{name}", kind="torch", name=stem, module=module, preprocess=pre,
                       labels=distinct_labels(labels) or None, task="detection", notes=notes)


def _timm_pretrained(timm, full: str):
    """timm's model with its pretrained weights: from the Hugging Face cache, or downloaded; a WorkbenchError
    that says how to get them when neither works. The hub is not asked when its host does not resolve (it
    retries for about 45 s before giving up)."""
    cfg = timm.create_model(full, pretrained=False).pretrained_cfg
    hub_id = cfg.get("hf_hub_id") or cfg.get("url") or full
    try:
        if not _cached(hub_id) and not _hub_reachable():
            raise OSError("huggingface.co does not resolve: no network")
        return timm.create_model(full, pretrained=True)
    except Exception as exc:  # the hub raises OSError, LocalEntryNotFoundError, HTTPError... all mean "no weights"
        raise WorkbenchError(
            f"could not get the pretrained weights {hub_id} for timm:{full} ({type(exc).__name__}: "
            f"{first_line(exc)}). Offline? Download them where there is a network (hf download {hub_id}) and "
            f"copy the Hugging Face cache to {_hf_cache()}, or pass weights='none' (--weights none) to check "
            "the conversion with random weights") from exc


def _cached(hub_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    for filename in ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin"):
        if isinstance(try_to_load_from_cache(hub_id.removeprefix("hf-hub:"), filename), str):
            return True
    return False


def _hub_reachable() -> bool:
    import os
    import socket
    from urllib.parse import urlparse

    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        socket.getaddrinfo(host, 443)
        return True
    except OSError:
        return False


def _hf_cache() -> str:
    try:
        from huggingface_hub import constants
    except ImportError:
        return "~/.cache/huggingface/hub"
    return str(constants.HF_HUB_CACHE)


def _weights_enum(name: str):
    import torchvision

    try:
        return torchvision.models.get_model_weights(name)
    except (ValueError, KeyError):
        return None


def _preprocess_from_weights(weights) -> Preprocess:
    """The preprocessing of a torchvision weights' own transforms (mean, std, crop and resize sizes)."""
    t = weights.transforms()
    resize = getattr(t, "resize_size", None)
    resize = resize[0] if resize else None
    crop = getattr(t, "crop_size", None)
    side = crop[0] if crop else resize
    return Preprocess.from_normalize(t.mean, t.std, size=(side, side), resize=resize if crop else None,
                                     name=f"{weights} transforms")


def _hub_dir() -> str:
    import torch

    return str(Path(torch.hub.get_dir()) / "checkpoints")


# -- python factories --------------------------------------------------------------------------------
def _factory_from_file(path: Path, name: str) -> Callable:
    if not path.is_file():
        raise WorkbenchError(f"model definition file {path} does not exist (relative to {Path.cwd()}); check the path")
    module_name = f"_workbench_user_{path.stem}_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and pickling look classes up here
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(module_name, None)
        raise WorkbenchError(f"importing {path} failed: {type(exc).__name__}: {exc}") from exc
    if not hasattr(module, name):
        public = [n for n in vars(module) if not n.startswith("_") and callable(getattr(module, n))]
        raise WorkbenchError(f"{path} has no {name!r}; callables there: {', '.join(public) or 'none'}")
    return getattr(module, name)


def _call_factory(factory: Callable, what: str):
    import torch

    try:
        module = factory()
    except Exception as exc:
        raise WorkbenchError(f"the factory {what} raised {type(exc).__name__}: {exc}") from exc
    if not isinstance(module, torch.nn.Module):
        raise WorkbenchError(f"the factory {what} returned {type(module).__name__}, not a torch.nn.Module")
    return module


def _resolve_factory(factory) -> tuple[Callable, str]:
    if callable(factory):
        return factory, getattr(factory, "__qualname__", repr(factory))
    path, sep, name = str(factory).rpartition(":")
    if not sep or not path.endswith(".py"):
        raise WorkbenchError(f"factory {factory!r} must look like path/to/file.py:name")
    return _factory_from_file(Path(path), name), str(factory)


# -- torch files -------------------------------------------------------------------------------------
def _torch_file(path: Path, factory, trust: bool) -> LoadedModel:
    import torch

    from .formats.torchscript import validate as torchscript

    if torchscript.is_torchscript(path):
        module = torchscript.load(path)
        return LoadedModel(source=str(path), kind="torchscript", module=module, path=path,
                           name=getattr(module, "original_name", "") or "")
    obj = _torch_load(path, trust)
    if isinstance(obj, torch.nn.Module):
        return LoadedModel(source=str(path), kind="torch", module=obj, path=path, name=type(obj).__name__,
                           notes=["loaded a pickled model with trust=True (code from the file ran)"])
    state = _unwrap_state_dict(obj, path)
    if factory is None:
        raise WorkbenchError(
            f"{path} holds a state_dict (weights only); say what builds the model: "
            "factory='file.py:name' (CLI: MODEL file.py:name --weights FILE)")
    fn, what = _resolve_factory(factory)
    module = _call_factory(fn, what)
    _load_state_dict(module, state, path)
    return LoadedModel(source=f"{what} + {path}", kind="torch", module=module, path=path,
                       name=what.rpartition(":")[2].rpartition(".")[2])


def _torch_load(path: Path, trust: bool):
    import pickle

    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=not trust)
    except pickle.UnpicklingError as exc:
        # A refused global means a pickled object; anything else means the bytes are not a pickle at all.
        if trust or "Weights only load failed" not in str(exc) or "invalid load key" in str(exc):
            raise WorkbenchError(
                f"{path} is not a readable PyTorch file (truncated or corrupt?): {first_line(exc)}. "
                "Save it again with torch.save(model.state_dict(), path)") from exc
        raise WorkbenchError(
            f"{path} holds Python objects beyond weights (a pickled model?), refused because unpickling runs "
            "code from the file. Save a state_dict instead, or, only if you trust the file, pass trust=True "
            f"(CLI: --trust-pickle). Detail: {first_line(exc)}"
        ) from exc
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile,
            # damaged bytes fail anywhere in the unpickler, with these too
            KeyError, IndexError, OverflowError, MemoryError, struct.error) as exc:
        raise WorkbenchError(
            f"{path} is not a readable PyTorch file (truncated or corrupt?): {type(exc).__name__}: "
            f"{first_line(exc)}. Save or download it again") from exc


def _read_state_dict(path: Path, trust: bool) -> dict:
    if not path.exists():
        raise WorkbenchError(f"weights file {path} does not exist (relative to {Path.cwd()}); check the path")
    return _unwrap_state_dict(_torch_load(path, trust), path)


def _unwrap_state_dict(obj, path: Path) -> dict:
    import torch

    if isinstance(obj, dict):
        for key in ("state_dict", "model_state_dict", "model"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return {k.removeprefix("module."): v for k, v in obj.items()}
    raise WorkbenchError(f"{path} holds {type(obj).__name__}, not a state_dict of tensors")


def _load_state_dict(module, state: dict, path: Path) -> None:
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
                  for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or mismatched:
        parts = []
        for title, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", mismatched)):
            if items:
                shown = ", ".join(items[:6]) + (f" (+{len(items) - 6} more)" if len(items) > 6 else "")
                parts.append(f"{title}: {shown}")
        raise WorkbenchError(
            f"the weights in {path} do not fit {type(module).__name__}: " + "; ".join(parts)
            + ". Check that the factory builds the architecture the weights were trained with")
    module.load_state_dict(state)
