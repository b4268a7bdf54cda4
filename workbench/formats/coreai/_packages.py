"""Apple's Core AI packages, imported when first used: coreai-torch (the converter) and coreai-core (the
authoring API and, in its Linux wheel, Apple's Core AI runtime)."""

from __future__ import annotations

import warnings

from ...errors import require

PINS = "coreai-torch==0.4.3 coreai-core==1.0.0b3"


def converter():
    """coreai_torch, without its import-time warning that this torch is newer than it was validated with
    (`torch_note` says it once per artifact instead)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="coreai-torch has only been validated")
        return require("coreai_torch", PINS)


def torch_note() -> str | None:
    """What coreai-torch says of this torch, when it is newer than the newest coreai-torch was validated with."""
    import torch
    from packaging.version import Version

    newest = getattr(converter(), "_TORCH_MAX_VERSION", None)
    if newest and Version(torch.__version__) > Version(newest):
        return (f"coreai-torch {converter().__version__} is validated with torch<={newest}; this is torch "
                f"{torch.__version__.split('+')[0]} (its warning; parity here is measured, not assumed)")
    return None


def asset_api():
    """coreai.authoring.asset (AIModelAsset, AIProgram)."""
    return require("coreai.authoring.asset", PINS)


def runtime():
    """coreai.runtime: Apple's Core AI runtime (its Linux build ships inside coreai-core's wheel)."""
    return require("coreai.runtime", PINS)


def core_version() -> str:
    from coreai import _version

    return _version.__version__
