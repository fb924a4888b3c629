"""A task's timeline on its own clock: states, when it turns terminal, link expiry, throttling slots, in-flight."""

from __future__ import annotations

import time
from pathlib import Path

from comet_provider.testing.emulator.capacity import InFlight, Slots
from comet_provider.testing.emulator.timeline import EmulatedTask
from comet_provider.testing.render import RenderError, RenderOutput

OUTPUT = RenderOutput(Path("v.mp4"), Path("p.jpg"), Path("l.jpg"))


def _task(prompt: str = "noir", **offsets: float) -> EmulatedTask:
    # Created "now" on the real clock: a render finished right away lands before every offset.
    timeline = {"not_exist_at": 1.0, "ready_at": 2.0, "start_at": 3.0, "end_at": 5.0, **offsets}
    return EmulatedTask(
        "t-1",
        prompt=prompt,
        video="http://x/clip.mp4",
        model="gen4",
        options={},
        callback_url=None,
        placement="video_url",
        render_mode="synthetic",
        created_mono=time.monotonic(),
        **timeline,
    )


def test_states_follow_the_offsets_and_success_waits_for_the_render() -> None:
    task = _task()
    at = task.created_mono
    assert task.state(at + 0.5) == ("NOT_START", "PENDING", 0) and not task.visible(at + 0.5)
    assert task.state(at + 1.5) == ("QUEUED", "PENDING", 0) and task.visible(at + 1.5)
    assert task.state(at + 2.5) == ("QUEUED", "THROTTLED", 0)
    assert task.state(at + 4.0) == ("IN_PROGRESS", "RUNNING", 50)
    assert task.state(at + 6.0) == ("IN_PROGRESS", "RUNNING", 99)  # no file yet
    assert task.terminal_at() is None and task.render_state() == "pending"
    task.finish_render(OUTPUT, None)
    assert task.done.is_set() and task.render_state() == "done"
    assert task.state(at + 6.0) == ("SUCCESS", "SUCCEEDED", 100)
    assert task.terminal_at() == at + 5.0


def test_terminal_time_of_failures() -> None:
    tagged = _task("noir [fail]")
    assert tagged.done.is_set() and tagged.terminal_at() == tagged.created_mono + 5.0
    assert tagged.state(tagged.created_mono + 5.0)[:2] == ("FAILURE", "FAILED")
    broken = _task()
    broken.finish_render(None, RenderError("ASSET.INVALID", "could not fetch"))
    # A failed render shows from the task's start on, not its planned end.
    assert broken.terminal_at() == broken.created_mono + 3.0
    assert broken.state(broken.created_mono + 3.0)[:2] == ("FAILURE", "FAILED")
    assert broken.wrapper(broken.created_mono + 3.0, "http://e")["data"]["failureCode"] == "ASSET.INVALID"


def test_link_expiry_after_ttl_or_on_request() -> None:
    task = _task()
    assert task.link_expiry(60.0) is None  # no link before there is a render
    task.finish_render(OUTPUT, None)
    succeeded = task.created_mono + 5.0
    assert task.link_expiry(None) is None and not task.link_expired(succeeded + 1e6, None)
    assert task.link_expiry(60.0) == succeeded + 60.0
    assert not task.link_expired(succeeded + 59.0, 60.0) and task.link_expired(succeeded + 60.0, 60.0)
    task.link_expired_mono = succeeded + 10.0  # an explicit expiry wins when it comes first
    assert task.link_expiry(60.0) == succeeded + 10.0 and task.link_expired(succeeded + 10.0, None)
    assert task.wall_time(task.created_mono + 2.0) == task.created_wall + 2.0


def test_link_expired_before_success_is_dead_on_arrival() -> None:
    task = _task()
    task.link_expired_mono = task.created_mono
    task.finish_render(OUTPUT, None)
    assert task.link_expired(task.created_mono + 5.0, None)


def test_slots_make_tasks_wait_for_a_free_render_slot() -> None:
    one = Slots(1)
    assert one.start_offset(100.0, 1.0, 2.0) == 1.0
    assert one.start_offset(100.0, 1.0, 2.0) == 3.0  # after the first one's render
    assert one.start_offset(110.0, 1.0, 2.0) == 1.0  # that slot is long free
    assert [Slots(0).start_offset(100.0, 1.5, 9.0) for _ in range(3)] == [1.5, 1.5, 1.5]


def test_in_flight_counts_tasks_until_terminal_and_keeps_the_peak() -> None:
    flight = InFlight()
    rendering, tagged = _task(), _task("noir [fail]")
    start = tagged.created_mono
    flight.submitted(rendering, start)
    flight.submitted(tagged, start)
    assert flight.count(start) == 2 and flight.peak == 2
    tagged_end = tagged.terminal_at()
    assert tagged_end is not None
    assert flight.count(tagged_end) == 1  # the failing one ended; the other still renders
    rendering.finish_render(OUTPUT, None)
    flight.settled(rendering)
    rendering_end = rendering.terminal_at()
    assert rendering_end is not None and rendering_end <= tagged_end
    assert flight.count(tagged_end) == 0 and flight.peak == 2
    later = _task()
    flight.submitted(later, tagged_end + 1.0)
    assert flight.count(tagged_end + 1.0) == 1 and flight.peak == 2
    flight.settled(_task())  # a job cancelled before its render: nothing changes
    assert flight.count(tagged_end + 1.0) == 1
