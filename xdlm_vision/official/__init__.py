"""The XDLM authors' released checkpoints: safe reading, architecture inference, the official process.

- :mod:`reader`    open a Lightning .ckpt / state dict / EMA dict / safetensors export without
                   executing anything in it
- :mod:`process`   the official noise process as the core's XDLM process (N' = N + 2, k', loglinear)
- :mod:`architecture`  the architecture read off the weights' shapes, cross-checked with the file
- :mod:`importer`  EMA zipping, :func:`load_official` (the built model and its checkpoint record,
                   in our config.json schema)

This package sits below :mod:`xdlm_vision.checkpoints` (docs/architecture.md): ``load_checkpoint``
hands it an official file and makes the usual ``LoadedModel``; ``checkpoints.import_official``
writes a checkpoint directory. The faithful networks are ``backbones/official_dit.py`` and
``backbones/official_unet.py``. See ``docs/official.md`` for every convention difference and how
it is bridged.
"""

from xdlm_vision.official.importer import (
    OfficialModel,
    build_official,
    inner_tokenizer,
    is_official_file,
    load_official,
    official_record,
)
from xdlm_vision.official.process import OfficialProcess
from xdlm_vision.official.reader import read_official

__all__ = ["OfficialModel", "OfficialProcess", "build_official", "inner_tokenizer", "is_official_file",
           "load_official", "official_record", "read_official"]
