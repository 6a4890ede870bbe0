"""Run logs: one JSON object per line in ``OUT/metrics.jsonl``, echoed lines on stdout, and
TensorBoard scalars in ``OUT/tensorboard`` when the ``tensorboard`` package is installed.

Only the main process writes (``enabled=False`` elsewhere). Appending keeps the history of a
resumed run in one file: a resume first drops the records logged after the checkpoint it resumes
from (they are logged again), and a last line cut short by a crash is removed. Each record is
appended with one write that is undone if it fails (:func:`xdlm_vision.io.append_line`), so a full
disk never leaves half a line.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from xdlm_vision.io import append_line, repair_last_line, write_text_atomic


class MetricsLogger:
    def __init__(self, out_dir: str | Path, enabled: bool = True, tensorboard: bool = True,
                 after_step: int | None = None) -> None:
        """``after_step``: a resume from this step; records with a larger step are dropped."""
        self.enabled = enabled
        self.path = Path(out_dir) / "metrics.jsonl"
        self._writer = None
        if enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            repair_last_line(self.path)
            if after_step is not None:
                self._drop_after(after_step)
            if tensorboard:
                try:
                    from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package
                except ImportError:
                    SummaryWriter = None
                if SummaryWriter is not None:
                    self._writer = SummaryWriter(str(Path(out_dir) / "tensorboard"))

    def log(self, record: dict[str, Any], echo: bool = False) -> None:
        """Append ``record`` (must hold ``step``) to metrics.jsonl; ``echo`` also prints it."""
        if not self.enabled:
            return
        record = {**record, "time": round(time.time(), 3)}
        append_line(self.path, json.dumps(record))
        if self._writer is not None:
            for key, value in record.items():
                if key not in ("step", "time") and isinstance(value, (int, float)):
                    self._writer.add_scalar(key, value, record["step"])
        if echo:
            shown = " ".join(f"{k} {_fmt(v)}" for k, v in record.items() if k != "time")
            self.text(shown)

    def _drop_after(self, step: int) -> None:
        if not self.path.is_file():
            return
        lines = self.path.read_text().splitlines(keepends=True)
        kept = []
        for line in lines:
            try:
                if int(json.loads(line).get("step", 0)) > step:
                    continue
            except (ValueError, TypeError, AttributeError):
                pass  # keep a line this logger did not write
            kept.append(line)
        if len(kept) != len(lines):
            write_text_atomic(self.path, "".join(kept))

    def text(self, line: str) -> None:
        if not self.enabled:
            return
        import sys

        from tqdm.auto import tqdm

        tqdm.write(line, file=sys.stdout)
        sys.stdout.flush()  # logs piped to a file appear as they happen

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
