"""Run the trainer as a separate process and report its JSON-lines progress.

The trainer (``python -m trainer PROJECT --stage STAGE``, also ``napari-wsss train``) prints one JSON object per
line: ``{"stage", "epoch", "step", "steps", "loss", "eta_s"}``. `RetrainRunner` starts it
with ``QProcess`` (so the GUI thread only reads pipes when data arrives) and turns each
line into a ``progress`` signal; other output goes to ``log``.
"""

from __future__ import annotations

import json
import sys

from qtpy.QtCore import QObject, QProcess, Signal

__all__ = ["RetrainRunner", "train_command", "parse_progress"]


def train_command(project_path, stage: str = "classifier", *extra: str) -> list[str]:
    """The command line that retrains ``stage`` of a project with this Python.

    ``python -m trainer PROJECT --stage STAGE [extra...]`` (what ``napari-wsss train``
    runs); ``extra`` are more trainer options, e.g. ``"--epochs", "2"``.
    """
    return [sys.executable, "-m", "trainer", str(project_path), "--stage", stage, *extra]


def parse_progress(line: str) -> dict | None:
    """One trainer output line -> its progress dict, or None when it is not one."""
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        obj = json.loads(line)
    except json.JSONDecodeError:
        return None
    return obj if isinstance(obj, dict) else None


def format_progress(p: dict) -> str:
    """A one-line human summary of a progress dict."""
    parts = [str(p.get("stage", "?"))]
    event = p.get("event", "step")
    if event != "step":
        parts.append(str(event))
    if "epoch" in p:
        parts.append(f"epoch {p['epoch']}")
    if "step" in p and "steps" in p:
        parts.append(f"step {p['step']}/{p['steps']}")
    if p.get("loss") is not None:
        parts.append(f"loss {float(p['loss']):.4f}")
    if p.get("eta_s") is not None:
        parts.append(f"eta {float(p['eta_s']):.0f} s")
    if p.get("version") is not None:
        parts.append(str(p["version"]))
    return "  ".join(parts)


class RetrainRunner(QObject):
    """One trainer process at a time.

    Signals
    -------
    progress(dict)
        A parsed JSON progress line.
    log(str)
        Any other output line (stdout or stderr).
    finished(int)
        Exit code (``-1`` when the process crashed or was cancelled).
    """

    progress = Signal(dict)
    log = Signal(str)
    finished = Signal(int)

    def __init__(self, parent=None):
        super().__init__(parent)
        self._proc: QProcess | None = None
        self._buf = {"out": b"", "err": b""}
        self.last_progress: dict | None = None

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.state() != QProcess.ProcessState.NotRunning

    def start(self, argv: list[str]) -> None:
        """Start ``argv`` (program then arguments); an error if one already runs."""
        if self.is_running():
            raise RuntimeError("a retraining process is already running")
        self._buf = {"out": b"", "err": b""}
        self.last_progress = None
        proc = QProcess(self)
        proc.readyReadStandardOutput.connect(lambda: self._read("out"))
        proc.readyReadStandardError.connect(lambda: self._read("err"))
        proc.finished.connect(self._on_finished)
        proc.errorOccurred.connect(self._on_error)
        self._proc = proc
        self.log.emit("$ " + " ".join(argv))
        proc.start(argv[0], argv[1:])

    def _read(self, which: str) -> None:
        proc = self._proc
        if proc is None:
            return
        chunk = proc.readAllStandardOutput() if which == "out" else proc.readAllStandardError()
        self._buf[which] += bytes(chunk)
        *lines, self._buf[which] = self._buf[which].split(b"\n")
        for raw in lines:
            self._emit_line(raw.decode("utf-8", "replace"), which)

    def _emit_line(self, text: str, which: str) -> None:
        p = parse_progress(text) if which == "out" else None
        if p is not None:
            self.last_progress = p
            self.progress.emit(p)
        elif text.strip():
            self.log.emit(text.rstrip())

    def _on_finished(self, code: int, status) -> None:
        self._read("out")
        self._read("err")
        for which in ("out", "err"):
            if self._buf[which]:
                self._emit_line(self._buf[which].decode("utf-8", "replace"), which)
                self._buf[which] = b""
        crashed = status == QProcess.ExitStatus.CrashExit
        self._proc = None
        self.finished.emit(-1 if crashed else int(code))

    def _on_error(self, error) -> None:
        if error == QProcess.ProcessError.FailedToStart:
            self.log.emit(f"could not start the trainer: {self._proc.errorString()}")
            self._proc = None
            self.finished.emit(-1)

    def cancel(self) -> None:
        """Terminate the running process (then kill it if it does not stop)."""
        proc = self._proc
        if proc is None:
            return
        proc.terminate()
        if not proc.waitForFinished(3000):
            proc.kill()
            proc.waitForFinished(3000)
