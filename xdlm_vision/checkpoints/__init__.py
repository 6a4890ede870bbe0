"""Checkpoints: the on-disk format and the one :class:`LoadedModel` every consumer works from.

- :mod:`files`   save / list / resolve / read a checkpoint, its config.json record, resume checks
- :mod:`loaded`  :class:`LoadedModel` and :func:`load_checkpoint` (backbone + diffusion spec + data;
                 an official XDLM file goes through :mod:`xdlm_vision.official`)
- :mod:`imported` :func:`import_official`: an official XDLM file -> a checkpoint directory
- :mod:`packaged` the checkpoints shipped in the package and their ``packaged:NAME`` short names

The layout of a run directory is described in :mod:`xdlm_vision.checkpoints.files` and docs/training.md.
"""

from xdlm_vision.checkpoints.files import (
    CHECKPOINTS,
    FILES,
    FORMAT,
    FORMAT_VERSION,
    LATEST,
    RESUME_FIXED,
    check_resume_compatible,
    checkpoint_record,
    checkpoint_step,
    clean_run_temps,
    is_complete,
    is_weights_only,
    latest_checkpoint,
    list_checkpoints,
    load_train_state,
    load_weights,
    prune_checkpoints,
    read_checkpoint_config,
    resolve_checkpoint_dir,
    save_checkpoint,
    step_dir_name,
    verify_checkpoint,
    weights_metadata,
)
from xdlm_vision.checkpoints.imported import import_official
from xdlm_vision.checkpoints.loaded import (
    PACKAGED_CHECKPOINT,
    LoadedModel,
    is_text_checkpoint,
    load_checkpoint,
    packaged_checkpoint,
)
from xdlm_vision.checkpoints.packaged import PACKAGED, packaged_names, packaged_path, resolve_packaged

__all__ = [
    "CHECKPOINTS",
    "FILES",
    "FORMAT",
    "FORMAT_VERSION",
    "LATEST",
    "PACKAGED",
    "PACKAGED_CHECKPOINT",
    "RESUME_FIXED",
    "LoadedModel",
    "check_resume_compatible",
    "checkpoint_record",
    "checkpoint_step",
    "clean_run_temps",
    "import_official",
    "is_complete",
    "is_text_checkpoint",
    "is_weights_only",
    "latest_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "load_train_state",
    "load_weights",
    "packaged_checkpoint",
    "packaged_names",
    "packaged_path",
    "prune_checkpoints",
    "read_checkpoint_config",
    "resolve_checkpoint_dir",
    "resolve_packaged",
    "save_checkpoint",
    "step_dir_name",
    "verify_checkpoint",
    "weights_metadata",
]
