"""The XDLM authors' released checkpoints: safe reading, faithful backbones, the official process.

- :mod:`reader`    open a Lightning .ckpt / state dict / EMA dict / safetensors export without
                   executing anything in it
- :mod:`process`   the official noise process as the core's XDLM process (N' = N + 2, k', loglinear)
- :mod:`importer`  architecture inference, EMA zipping, :func:`load_official` (a ``LoadedModel``
                   like our checkpoints) and :func:`import_official` (a checkpoint directory)

See ``docs/official.md`` for every convention difference and how it is bridged.
"""

from xdlm_vision.official.importer import import_official, is_official_file, load_official
from xdlm_vision.official.process import OfficialProcess
from xdlm_vision.official.reader import read_official

__all__ = ["OfficialProcess", "import_official", "is_official_file", "load_official", "read_official"]
