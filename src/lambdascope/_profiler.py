"""The sampling profiler: the handler's stack every ``LAMBDASCOPE_PROFILE_INTERVAL_MS``.

Imported only when an invocation is profiled. A :class:`Profiler` starts a thread at the end of
the invocation's opening (:func:`lambdascope._monitor.begin`); every interval the thread reads the
handler thread's frame (``sys._current_frames``) and walks it to the agent's wrapper, keeping
only the code objects' ids and the line numbers, counted per distinct stack. The invocation's
end only tells the thread to stop (no join on the caller's path); the stacks are turned into
text when the report is built, after the response.

* **Deadlines, not naps**: the thread sleeps until absolute times ``start + k * interval`` (a lock
  wait with a timeout, which the invocation's end cuts short), so a late wake-up does not shift
  the later samples. When it wakes more than one interval late (the handler held the GIL inside
  C code that does not release it), the ticks it missed are counted as ``dropped_samples``.
* **Async handlers**: when the handler's coroutine is running, its frames are on the thread's
  stack. When it is suspended (awaiting I/O, a timer, another task), the thread is in the event
  loop; the sample then follows the handler task's chain of awaits (``cr_await``) from the
  wrapper's coroutine to the innermost coroutine, so the time is attributed to the line that
  awaits. Frames the thread is running for another task at that moment are put under that line,
  the event loop's own frames left out.
* **Bounded**: a stack deeper than 64 frames keeps its 8 outermost and 56 innermost frames with a
  ``(… n frames)`` marker; at most 1,000 distinct stacks are kept while sampling and 200 in the
  report (the rest merged into one ``(other stacks)`` entry), and the serialised profile stays
  under 64 KB.
"""

from __future__ import annotations

import _thread
import json
import os
import sys
import threading
import time

TYPE_CHECKING = False  # typing is for the type checker: not imported at run time
if TYPE_CHECKING:
    from typing import Any

_perf = time.perf_counter
_current_frames = sys._current_frames

MAX_DEPTH = 64
ROOT_FRAMES = 8
LEAF_FRAMES = MAX_DEPTH - ROOT_FRAMES
MAX_WALK = 5000  # frames walked per sample at most (deeper: the outermost are not known)
MAX_KEYS = 1000  # distinct stacks kept while sampling
MAX_STACKS = 200  # distinct stacks in the report
MAX_BYTES = 64 * 1024
MAX_FRAME_TEXT = 300
OTHER = "(other stacks)"
THREAD_NAME = "lambdascope-profiler"

_CO_COROUTINE = 0x80
_AGENT_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _loop_code_places() -> tuple[tuple[str, ...], frozenset[str]]:
    """Where the event loop's own code lives: the asyncio and uvloop packages (directories) and
    the selectors module (a file)."""
    dirs: list[str] = []
    for name in ("asyncio", "uvloop"):
        module = sys.modules.get(name)
        filename = getattr(module, "__file__", None)
        if isinstance(filename, str):
            dirs.append(os.path.dirname(filename) + os.sep)
    selectors = sys.modules.get("selectors")
    files = getattr(selectors, "__file__", None)
    return tuple(dirs), frozenset((files,) if isinstance(files, str) else ())


class Profiler:
    """Samples one invocation's handler thread. :meth:`start` on the handler's thread at the
    invocation's start, :meth:`stop` at its end, :meth:`result` when the report is built."""

    def __init__(
        self,
        mode: str,
        interval_ms: float,
        thread_id: int,
        anchor: Any = None,
        task_coro: Any = None,
    ) -> None:
        self.mode = mode
        self.interval_ms = interval_ms
        self.interval_s = interval_ms / 1000.0
        self.thread_id = thread_id
        #: The agent's wrapper frame: the stack is what lies beyond it.
        self._anchor = anchor
        #: For an ``async def`` handler: the coroutine its task runs (the chain of awaits starts
        #: there and passes through the wrapper).
        self._task_coro = task_coro
        self.is_async = bool(anchor is not None and anchor.f_code.co_flags & _CO_COROUTINE)
        self.counts: dict[tuple[Any, ...], int] = {}
        #: The code objects of the stacks counted, by id (see _key).
        self.code_of: dict[int, Any] = {}
        self.samples = 0
        self.dropped = 0
        self.truncated = 0
        self.other = 0
        self.failed: BaseException | None = None
        self._stopped = False
        self._stop_lock = _thread.allocate_lock()
        self._stop_lock.acquire()
        self._done: Any = None  # held by the sampler while it runs
        self._t0 = 0.0
        self._t1: float | None = None
        self._loop_codes: dict[int, tuple[Any, bool]] = {}
        self._loop_dirs: tuple[str, ...] = ()
        self._loop_files: frozenset[str] = frozenset()

    # -- the caller's side ---------------------------------------------------------------
    def start(self) -> None:
        """Start the sampler thread. A bare ``_thread`` start: ``threading.Thread.start`` waits
        for the new thread to run (a switch of the interpreter's lock, about 0.2 ms), this
        returns at once; the thread names itself in ``threading.enumerate()`` once it runs."""
        if self.is_async:
            self._loop_dirs, self._loop_files = _loop_code_places()
        done = _thread.allocate_lock()
        done.acquire()
        self._done = done
        self._t0 = _perf()
        try:
            _thread.start_new_thread(self._run, ())
        except BaseException:
            done.release()
            raise

    def stop(self) -> None:
        """Tell the sampler to stop (it ends within microseconds; nobody waits for it here)."""
        if not self._stopped:
            self._stopped = True
            self._t1 = _perf()
            try:
                self._stop_lock.release()
            except RuntimeError:  # pragma: no cover - released already
                pass

    # -- the sampler thread --------------------------------------------------------------
    def _run(self) -> None:
        interval = self.interval_s
        acquire = self._stop_lock.acquire
        sample = self._sample
        next_at = self._t0 + interval
        try:
            _register_thread()
            while True:
                delay = next_at - _perf()
                if delay > 0.0:
                    if acquire(True, delay):
                        break
                elif acquire(False):
                    break
                if self._stopped:
                    break
                now = _perf()
                missed = int((now - next_at) / interval)
                if missed > 0:
                    self.dropped += missed
                    next_at += missed * interval
                next_at += interval
                sample()
        except Exception as exc:  # never let the sampler take anything down; said in the log
            self.failed = exc
            from ._guard import internal_error

            internal_error("profiler.sample", exc)
        finally:
            self._anchor = None
            self._task_coro = None
            _forget_thread()
            self._done.release()

    def _sample(self) -> None:
        frame = _current_frames().get(self.thread_id)
        if frame is None:
            self.dropped += 1
            return
        codes: list[Any] = []
        if self.is_async:
            key = self._async_key(frame, codes)
        else:
            key = self._key(frame, self._anchor, codes)[0]
        if not key:
            return
        self.samples += 1
        counts = self.counts
        count = counts.get(key)
        if count is not None:
            counts[key] = count + 1
        elif len(counts) < MAX_KEYS:
            counts[key] = 1
            # A stack seen for the first time: keep its code objects, so that their ids in the
            # key stay theirs (an id is reused only once its object is gone).
            code_of = self.code_of
            for code in codes:
                code_of[id(code)] = code
        else:
            self.other += 1

    # Stacks are keyed by the code objects' ids, not by the code objects: hashing a code object
    # hashes its bytecode and constants, about 0.3 us a frame.
    def _key(
        self, frame: Any, stop: Any, codes: list[Any]
    ) -> tuple[tuple[Any, ...], bool]:
        """(code id, line) pairs from ``frame`` out to ``stop`` (excluded), innermost first, cut
        to the depth bound, the code objects in ``codes``; and whether ``stop`` was reached."""
        flat: list[Any] = []
        append = flat.append
        keep = codes.append
        depth = 0
        while frame is not None and frame is not stop:
            code = frame.f_code
            keep(code)
            append(id(code))
            append(frame.f_lineno)
            depth += 1
            if depth >= MAX_WALK:
                break
            frame = frame.f_back
        reached = frame is stop
        return self._bound(flat, depth, depth >= MAX_WALK and frame is not None), reached

    def _bound(self, flat: list[Any], depth: int, cut_outer: bool) -> tuple[Any, ...]:
        if depth <= MAX_DEPTH and not cut_outer:
            return tuple(flat)
        self.truncated += 1
        if cut_outer:  # the outermost frames were never reached: keep the innermost
            return (*flat[: 2 * LEAF_FRAMES], None, -1)
        hidden = depth - MAX_DEPTH
        return (*flat[: 2 * LEAF_FRAMES], None, hidden, *flat[-2 * ROOT_FRAMES :])

    # -- async handlers ------------------------------------------------------------------
    def _is_loop(self, code: Any) -> bool:
        known = self._loop_codes.get(id(code))
        if known is not None and known[0] is code:
            return known[1]  # type: ignore[no-any-return]
        filename = code.co_filename
        loop = filename in self._loop_files or filename.startswith(self._loop_dirs)
        self._loop_codes[id(code)] = (code, loop)
        return loop

    def _async_key(self, frame: Any, codes: list[Any]) -> tuple[Any, ...]:
        anchor = self._anchor
        key, reached = self._key(frame, anchor, codes)
        if reached or self._task_coro is None:
            return key  # the handler's coroutine is running: its frames are on the stack
        # Suspended: the chain of awaits from the task's coroutine, beyond the wrapper.
        walked: list[Any] = []  # outermost first
        at_anchor = -1
        awaitable = self._task_coro
        while awaitable is not None and len(walked) < MAX_WALK:
            coro_frame = getattr(awaitable, "cr_frame", None)
            if coro_frame is None:
                coro_frame = getattr(awaitable, "gi_frame", None)
                if coro_frame is None:
                    coro_frame = getattr(awaitable, "ag_frame", None)
            if coro_frame is None:
                break
            if coro_frame is anchor:
                at_anchor = len(walked)
            walked.append(coro_frame)
            nxt = getattr(awaitable, "cr_await", None)
            if nxt is None:
                nxt = getattr(awaitable, "gi_yieldfrom", None)
                if nxt is None:
                    nxt = getattr(awaitable, "ag_await", None)
            awaitable = nxt
        chain = walked[at_anchor + 1 :]
        if not chain:  # the handler's coroutine is not waiting on anything we can follow
            return key if at_anchor < 0 else ()
        # Whatever the thread runs for another task right now, under the awaiting line.
        codes.clear()
        keep = codes.append
        flat: list[Any] = []
        append = flat.append
        depth = 0
        running = frame
        is_loop = self._is_loop
        while running is not None and depth < LEAF_FRAMES:
            code = running.f_code
            if is_loop(code):
                break
            keep(code)
            append(id(code))
            append(running.f_lineno)
            depth += 1
            running = running.f_back
        if running is None:  # no event loop below: not a task's step, leave it out
            flat.clear()
            depth = 0
        for coro_frame in reversed(chain):
            code = coro_frame.f_code
            keep(code)
            append(id(code))
            append(coro_frame.f_lineno or 0)
            depth += 1
        return self._bound(flat, depth, False)

    # -- the report's part, after the response --------------------------------------------
    def result(self, final: bool = True) -> dict[str, Any]:
        """The ``profile`` of the report. ``final``: the invocation is over (waits for the
        sampler to end, a few microseconds after :meth:`stop`); else a snapshot so far."""
        if final:
            self.stop()
            done = self._done
            if done is not None and done.acquire(True, 1.0):  # the sampler has ended
                done.release()
        end = self._t1 if self._t1 is not None else _perf()
        counts = dict(self.counts)
        other = self.other
        samples = self.samples
        formatter = _Formatter(dict(self.code_of))
        merged: dict[tuple[str, ...], int] = {}
        for key, count in counts.items():
            frames = formatter.frames(key)
            if not frames:  # only the agent's own frames (the invocation opening or closing)
                samples -= count
                continue
            merged[frames] = merged.get(frames, 0) + count
        ordered = sorted(merged.items(), key=lambda item: (-item[1], item[0]))
        stacks: list[dict[str, Any]] = []
        budget = MAX_BYTES - 400  # the rest of the profile object
        used = 0
        for frames, count in ordered:
            if len(stacks) >= MAX_STACKS:
                other += count
                continue
            entry = {"frames": list(frames), "count": count}
            size = len(json.dumps(entry, ensure_ascii=False).encode()) + 1
            if used + size > budget:
                other += count
                continue
            used += size
            stacks.append(entry)
        if other:
            stacks.append({"frames": [OTHER], "count": other})
            stacks.sort(key=lambda entry: -entry["count"])
        return {
            "interval_ms": self.interval_ms,
            "samples": samples,
            "duration_ms": round(max(0.0, end - self._t0) * 1000.0, 3),
            "mode": self.mode,
            "dropped_samples": self.dropped,
            "truncated_stacks": self.truncated,
            "stacks": stacks,
        }


def _register_thread() -> None:
    """Name the sampler in ``threading.enumerate()`` (as a thread ``threading`` did not start)."""
    threading.current_thread().name = THREAD_NAME


def _forget_thread() -> None:
    """Take the sampler out of ``threading.enumerate()`` as it ends (``threading`` keeps the
    entries of threads it did not start)."""
    try:
        with threading._active_limbo_lock:  # type: ignore[attr-defined]
            threading._active.pop(_thread.get_ident(), None)  # type: ignore[attr-defined]
    except Exception:  # pragma: no cover - a threading module without these
        pass


class _Formatter:
    """Code objects to ``path:function:line`` text, with the paths made short."""

    def __init__(self, code_of: dict[int, Any]) -> None:
        self.code_of = code_of
        task_root = os.environ.get("LAMBDA_TASK_ROOT") or ""
        self.task_root = os.path.abspath(task_root) + os.sep if task_root else ""
        roots = set()
        for entry in sys.path:
            if entry and isinstance(entry, str) and os.path.isabs(entry):
                roots.add(os.path.normpath(entry) + os.sep)
        if self.task_root:
            roots.discard(self.task_root)
        self.roots = sorted(roots, key=len, reverse=True)
        self.paths: dict[str, str | None] = {}
        self.codes: dict[int, tuple[str, str] | None] = {}

    def path(self, filename: str) -> str | None:
        known = self.paths.get(filename, "")
        if known != "":
            return known
        short: str | None
        if filename.startswith(_AGENT_DIR):
            short = None  # the agent's own frame
        elif filename.startswith("<"):
            short = filename
        elif self.task_root and filename.startswith(self.task_root):
            short = filename[len(self.task_root) :]
        else:
            short = next(
                (filename[len(root) :] for root in self.roots if filename.startswith(root)),
                os.path.basename(filename),
            )
        self.paths[filename] = short
        return short

    def code(self, code_id: int) -> tuple[str, str] | None:
        try:
            return self.codes[code_id]
        except KeyError:
            pass
        code = self.code_of.get(code_id)
        path = self.path(code.co_filename) if code is not None else None
        found = None if path is None else (path, getattr(code, "co_qualname", code.co_name))
        self.codes[code_id] = found
        return found

    def frames(self, key: tuple[Any, ...]) -> tuple[str, ...]:
        out: list[str] = []
        for i in range(len(key) - 2, -1, -2):  # outermost first
            code_id, line = key[i], key[i + 1]
            if code_id is None:
                out.append(f"(… {line} frames)" if line >= 0 else "(… more frames)")
                continue
            found = self.code(code_id)
            if found is None:
                continue
            text = f"{found[0]}:{found[1]}:{line or 0}"
            out.append(text if len(text) <= MAX_FRAME_TEXT else text[: MAX_FRAME_TEXT - 1] + "…")
        if out and all(frame.startswith("(…") for frame in out):
            return ()
        return tuple(out)
