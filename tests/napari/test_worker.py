"""The worker adapter: threaded and synchronous runs, progress, cancellation, errors."""

import threading
import time

import pytest

from napari_automat._napari import worker
from napari_automat.model import AutomatError, Cancelled


def _count(n, progress, delay=0.0):
    for i in range(n):
        progress(i / n, f"step {i}")
        time.sleep(delay)
    return threading.get_ident()


def test_threaded_run_returns_on_gui_thread(qtbot, monkeypatch):
    monkeypatch.setattr(worker, "SYNCHRONOUS", False)
    out, seen = {}, []
    job = worker.start(_count, 5, label="count", on_done=lambda r: out.update(result=r, where=threading.get_ident()))
    job.post(seen.append, "posted")
    qtbot.waitUntil(lambda: not job.running, timeout=5000)
    assert out["result"] != threading.get_ident()  # the function ran in another thread
    assert out["where"] == threading.get_ident()  # the result came back on the GUI thread
    assert seen == ["posted"]


def test_cancel_stops_at_next_progress_report(qtbot, monkeypatch):
    monkeypatch.setattr(worker, "SYNCHRONOUS", False)
    errors, done = [], []
    job = worker.start(_count, 1000, delay=0.005, label="long", on_done=done.append, on_error=errors.append)
    job.cancel()
    qtbot.waitUntil(lambda: not job.running, timeout=5000)
    assert not done and len(errors) == 1 and isinstance(errors[0], Cancelled)


def test_synchronous_mode_runs_in_caller_and_routes_errors(monkeypatch):
    monkeypatch.setattr(worker, "SYNCHRONOUS", True)
    out, errors, finished = [], [], []
    job = worker.start(_count, 3, label="sync", on_done=out.append, on_finish=lambda: finished.append(1))
    assert out == [threading.get_ident()] and finished == [1] and not job.running

    def bad(progress):
        raise AutomatError("no columns")

    worker.start(bad, label="bad", on_done=out.append, on_error=errors.append)
    assert isinstance(errors[0], AutomatError)
    with pytest.raises(AutomatError):
        worker.start(bad, label="bad", on_done=out.append)
