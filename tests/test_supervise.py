"""The supervisor on its own (no broker): a batch that raises is retried message by
message after a restart with backoff, only what fails again is dead-lettered, health
tells the truth, and a consumer thread that dies is restarted."""

from __future__ import annotations

import asyncio
import struct
import threading
import time
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from autosteer.errors import DecodeError
from autosteer.processors.decode import DecodeLimits, decode_jpeg, encode_jpeg, read_header
from autosteer.streams.supervise import Health, SupervisedThread, Supervisor


class Stream:
    """What the supervisor needs of a Faust stream: ``take_events`` over fixed batches."""

    def __init__(self, batches: list[list[Any]]) -> None:
        self.batches = batches

    async def take_events(self, size: int, within: float) -> Any:
        for batch in self.batches:
            yield batch


def run(coro: Any) -> Any:
    return asyncio.new_event_loop().run_until_complete(coro)


def make(backoff_s: float = 0.01) -> tuple[Supervisor, list[tuple[Any, str, str]]]:
    letters: list[tuple[Any, str, str]] = []

    async def dead_letter(events: Sequence[Any], exc: Exception, where: str) -> None:
        letters.extend((e, type(exc).__name__, where) for e in events)

    return Supervisor(Health(stall_s=30), dead_letter, backoff_s), letters


def test_a_batch_that_raises_is_retried_alone_and_only_the_poison_message_is_dead_lettered(
) -> None:
    sup, letters = make()
    done: list[int] = []

    async def handle(events: Sequence[int]) -> None:
        if 13 in events:
            raise ValueError("poison")
        done.extend(events)

    agent = sup.agent("a", handle, size=4, within=0.1)
    run(agent(Stream([[1, 2], [3, 13, 4], [5]])))
    assert done == [1, 2, 3, 4, 5]
    assert letters == [(13, "ValueError", "agent a failed on this message (also when "
                        "retried alone)")]
    (h,) = sup.health.snapshot()
    assert (h["restarts"], h["crashes"], h["state"]) == (1, 1, "running")
    assert "poison" in h["last_error"]


def test_while_crashed_the_agent_is_named_and_backoff_doubles_on_crashes_in_a_row() -> None:
    sup, _ = make(backoff_s=0.05)
    seen: list[dict[str, str]] = []

    async def handle(events: Sequence[int]) -> None:
        raise RuntimeError("always")

    async def watch() -> None:
        while True:
            if p := sup.health.problems():
                seen.append(p)
            await asyncio.sleep(0.005)

    async def main() -> float:
        w = asyncio.ensure_future(watch())
        t0 = time.monotonic()
        await sup.agent("detect-edge", handle, size=1, within=0.1)(Stream([[1], [2], [3]]))
        w.cancel()
        return time.monotonic() - t0

    took = run(main())
    assert took >= 0.05 + 0.1 + 0.2  # three crashes in a row: 0.05, 0.1, 0.2 s
    assert seen and all("detect-edge" in p and "crashed" in p["detect-edge"] for p in seen)
    assert sup.health.snapshot()[0]["restarts"] == 3


def test_the_backoff_starts_again_after_a_good_batch() -> None:
    sup, _ = make(backoff_s=0.05)

    async def handle(events: Sequence[int]) -> None:
        if events[0] % 2:
            raise RuntimeError("odd")

    t0 = time.monotonic()
    run(sup.agent("a", handle, size=1, within=0.1)(Stream([[1], [2], [3], [4], [5]])))
    assert time.monotonic() - t0 < 0.05 * 3 + 0.1  # 0.05 each time, never 0.1, 0.2


def test_an_injected_crash_fails_one_batch_which_is_then_done_message_by_message() -> None:
    sup, letters = make()
    done: list[int] = []

    async def handle(events: Sequence[int]) -> None:
        done.extend(events)

    sup.crash_next_batch("a")
    run(sup.agent("a", handle, size=4, within=0.1)(Stream([[1, 2, 3], [4]])))
    assert done == [1, 2, 3, 4] and not letters
    assert sup.health.snapshot()[0]["restarts"] == 1


def test_an_agent_with_work_waiting_and_no_progress_is_stalled() -> None:
    h = Health(stall_s=0.05)
    h.register("router", waiting=lambda: 7)
    h.register("idle", waiting=lambda: 0)
    assert h.problems() == {}
    time.sleep(0.08)
    assert set(h.problems()) == {"router"}
    assert "7 message(s) waiting" in h.problems()["router"]
    h.progress("router")
    assert h.problems() == {}
    h.busy("idle")
    time.sleep(0.08)
    assert "holding a batch" in h.problems()["idle"]


def test_a_long_batch_by_design_has_its_own_stall_threshold() -> None:
    h = Health(stall_s=0.01)
    h.register("retrain", stall_s=600)
    h.busy("retrain")
    time.sleep(0.03)
    assert h.problems() == {}


def test_a_consumer_thread_that_dies_is_restarted_with_backoff() -> None:
    health = Health(stall_s=30)

    class Flaky(SupervisedThread):
        runs = 0

        def work(self) -> None:
            self.runs += 1
            if self.runs < 3:
                raise ConnectionError(f"run {self.runs}")
            self.halt.wait(5)

    t = Flaky("loader", health, backoff_s=0.01)
    t.start()
    deadline = time.monotonic() + 5
    while t.runs < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    (snap,) = health.snapshot()
    assert t.runs == 3 and snap["restarts"] == 2 and snap["state"] == "running"
    assert "ConnectionError: run 2" in snap["last_error"]
    t.stop()
    t.join(5)
    assert not t.is_alive()


def test_a_stopped_thread_does_not_restart() -> None:
    stop = threading.Event()

    class Once(SupervisedThread):
        def work(self) -> None:
            stop.wait(1)
            raise RuntimeError("after stop")

    t = Once("w", None, backoff_s=10)
    t.start()
    t.stop()
    stop.set()
    t.join(2)
    assert not t.is_alive()


# --- decoding within a budget: the header is read before anything is allocated ---------

def png(width: int, height: int, depth: int = 8, colour: int = 2) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    chunk = struct.pack(">I", 13) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    iend = struct.pack(">I", 0) + b"IEND" + struct.pack(">I", zlib.crc32(b"IEND"))
    return b"\x89PNG\r\n\x1a\n" + chunk + iend


def test_the_header_is_read_and_checked_before_decoding() -> None:
    jpeg = encode_jpeg(np.zeros((30, 40, 3), np.uint8))
    assert (read_header(jpeg).width, read_header(jpeg).height) == (40, 30)
    h = read_header(png(70000, 70000))
    assert (h.format, h.width, h.height, h.channels) == ("png", 70000, 70000, 3)
    with pytest.raises(DecodeError, match="70000x70000.*over the limit"):
        decode_jpeg(png(70000, 70000))
    # under the pixel limit, over the memory budget: 16-bit RGBA needs 8 bytes a pixel
    with pytest.raises(DecodeError, match="over the budget of 1 MiB"):
        decode_jpeg(png(400, 400, depth=16, colour=6), DecodeLimits(10**9, 2**20))
    with pytest.raises(DecodeError, match="over the limit of 1,000"):
        decode_jpeg(jpeg, DecodeLimits(max_pixels=1000))
    assert decode_jpeg(jpeg).shape == (30, 40, 3)


@pytest.mark.parametrize("cut", [3, 100, 300, -200, -2])
def test_a_truncated_jpeg_is_refused(cut: int) -> None:
    jpeg = encode_jpeg((np.random.default_rng(1).random((64, 64, 3)) * 255).astype(np.uint8))
    with pytest.raises(DecodeError, match="truncated|corrupt"):
        decode_jpeg(jpeg[:cut])
