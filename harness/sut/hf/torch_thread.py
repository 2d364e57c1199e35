"""One thread for all of a process's torch work in ``sut=hf``: loading, warm-up, batches, decode loops.

torch runs its CPU kernels on OpenMP, and GNU OpenMP (libgomp, in the torch wheels) keeps a team
of helper threads for *each* thread that starts parallel work. Between parallel regions the
helpers spin, waiting for the next one, unless libgomp manages more threads than there are CPUs:
then it throttles the spin and puts them to sleep, so every parallel region of a decode step
(thousands per second) pays a futex wake-up. A process whose torch work is spread over threads
(the model loaded and warmed up on the main thread, Offline batches on a bridge worker, streamed
decoding on a third) holds several teams and is throttled; a bare script calling ``generate`` on
its main thread holds one and is not. On the 2-core development VM that difference alone cost
about 14% of the tokens/s of a random Llama of hidden size 512 x 8 layers (MEASURED.md; the
system-call counts, ~10,000 voluntary context switches per generate() instead of ~20, show it).

So every torch call of the in-process SUT runs here, one at a time, on one daemon thread: the
test process then has one team, as a bare loop has, whatever thread LoadGen or the bridge calls
from. (On CUDA it also keeps one thread owning the device's current stream and the graphs
``torch.compile`` captures, which are per thread.) A decode loop runs here as a job that returns
when it runs out of work, so Offline batches and streamed requests take turns instead of
competing for the same cores.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class _Job:
    __slots__ = ("fn", "args", "waited", "done", "result", "error")

    def __init__(self, fn: Callable[..., Any], args: tuple, waited: bool) -> None:
        self.fn = fn
        self.args = args
        self.waited = waited  # a caller waits for it and gets its exception
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self.fn(*self.args)
        except BaseException as exc:  # handed to the caller (call) or logged (start)
            self.error = exc
        finally:
            self.done.set()


class TorchThread:
    """Runs callables one at a time, in order, on one daemon thread."""

    def __init__(self, name: str = "harness-torch") -> None:
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._thread.start()

    def on_it(self) -> bool:
        return threading.current_thread() is self._thread

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on this thread (directly when already on it); waits and returns its result
        or raises its exception."""
        if self.on_it():
            return fn(*args)
        job = _Job(fn, args, waited=True)
        self._jobs.put(job)
        job.done.wait()
        if job.error is not None:
            raise job.error
        return job.result

    def start(self, fn: Callable[[], None]) -> threading.Event:
        """Queue ``fn()`` without waiting; the event is set when it has returned. An exception it
        raises is logged: a loop started here must report its own failures to its callers."""
        job = _Job(fn, (), waited=False)
        self._jobs.put(job)
        return job.done

    def _serve(self) -> None:
        while True:
            job = self._jobs.get()
            job.run()
            if job.error is not None and not job.waited:
                log.error("torch thread: %s failed", getattr(job.fn, "__qualname__", job.fn), exc_info=job.error)


_lock = threading.Lock()
_instance: TorchThread | None = None


def torch_thread() -> TorchThread:
    """This process's torch thread, started on first use."""
    global _instance
    with _lock:
        if _instance is None:
            _instance = TorchThread()
        return _instance
