"""Run a core function off the GUI thread with a napari progress bar and cancellation.

Core functions take ``progress(fraction, message)``; :func:`start` passes them a callback that
feeds a ``napari.utils.progress`` bar (in the activity dock) and raises
:class:`~napari_automat.model.Cancelled` once :meth:`Job.cancel` was called. Results, errors and
anything posted with :meth:`Job.post` are delivered on the GUI thread.

Set ``SYNCHRONOUS = True`` (or the environment variable ``AUTOMAT_SYNC_WORKERS=1``) to run
everything in the calling thread, as tests do.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any, Callable, Optional

from qtpy.QtCore import QObject, Signal

from ..model import Cancelled

SYNCHRONOUS = os.environ.get("AUTOMAT_SYNC_WORKERS", "") not in ("", "0")


class _Relay(QObject):
    """Carries calls from the worker thread to the GUI thread (queued connection)."""

    call = Signal(object)

    def __init__(self):
        super().__init__()
        self.call.connect(self._run)

    @staticmethod
    def _run(fn: Callable) -> None:
        try:
            fn()
        except Exception:  # noqa: BLE001 - an exception escaping a Qt slot would abort the app
            from napari.utils.notifications import notification_manager

            notification_manager.receive_error(*sys.exc_info())


class Job:
    """Handle of one running core call: ``cancel()``, ``running``, ``post(fn, *args)``."""

    def __init__(self, label: str, synchronous: bool):
        self.label = label
        self.synchronous = synchronous
        self.running = True
        self._cancel = threading.Event()
        self._relay = None if synchronous else _Relay()
        self._bar = None
        self.worker = None

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def cancel(self) -> None:
        """Ask the job to stop at its next progress report."""
        self._cancel.set()

    def post(self, fn: Callable, *args) -> None:
        """Run ``fn(*args)`` on the GUI thread (directly when synchronous)."""
        if self._relay is None:
            fn(*args)
        else:
            self._relay.call.emit(lambda: fn(*args))

    def progress(self, fraction: float, message: str = "") -> None:
        """The callback handed to the core function (called from the worker thread)."""
        if self._cancel.is_set():
            raise Cancelled(f"{self.label}: cancelled")
        self.post(self._show_progress, float(fraction), str(message))

    def _show_progress(self, fraction: float, message: str) -> None:
        bar = self._bar  # reports queued before the end may arrive after it
        if bar is None or not self.running:
            return
        bar.n = int(round(1000 * min(max(fraction, 0.0), 1.0)))
        bar.set_description(f"{self.label}: {message}" if message else self.label)
        bar.refresh()

    def _open_bar(self) -> None:
        from napari.utils import progress

        self._bar = progress(total=1000, desc=self.label)

    def _close(self) -> None:
        self.running = False
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def start(func: Callable[..., Any], *args, label: str, on_done: Callable[[Any], None],
          on_error: Optional[Callable[[BaseException], None]] = None,
          on_finish: Optional[Callable[[], None]] = None, **kwargs) -> Job:
    """Call ``func(*args, progress=job.progress, **kwargs)`` in a napari ``thread_worker``.

    ``on_done(result)`` or ``on_error(exception)`` then ``on_finish()`` run on the GUI thread.
    Without ``on_error`` an exception propagates to the caller (synchronous) or is re-raised by
    napari on the GUI thread.
    """
    job = Job(label, SYNCHRONOUS)
    job._open_bar()

    def finish():
        job._close()
        if on_finish is not None:
            on_finish()

    def failed(exc: BaseException):
        try:
            if on_error is None:
                raise exc
            on_error(exc)
        finally:
            finish()

    if job.synchronous:
        try:
            result = func(*args, progress=job.progress, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - handed to on_error
            failed(exc)
            return job
        try:
            on_done(result)
        finally:
            finish()
        return job

    from napari.qt.threading import create_worker

    worker = create_worker(_warmed_up(func), *args, progress=job.progress, _start_thread=False,
                           _ignore_errors=on_error is not None, **kwargs)
    worker.returned.connect(on_done)
    if on_error is not None:
        worker.errored.connect(on_error)
    worker.finished.connect(finish)
    job.worker = worker
    worker.start()
    return job


def _warmed_up(func: Callable) -> Callable:
    """``func``, after importing in the worker thread what napari would otherwise import on the GUI
    thread when the result becomes a layer (pandas, for layer features: about 1 s)."""

    def call(*args, **kwargs):
        import pandas  # noqa: F401

        return func(*args, **kwargs)

    return call
