"""The submit-or-reuse table (comet_provider.utils.pay_once.decide), row by row, as docs/pay-once.md states it."""

from __future__ import annotations

from typing import Any

import pytest

from comet_provider.models import RunwayStatus, RunwayTask
from comet_provider.utils.pay_once import Decision, Fingerprint, RenderRecord, decide
from comet_provider.utils.stored_render import StoredRender

REQUEST = {"video": "https://cdn.example.com/a.mp4", "prompt": "pencil sketch", "model": "gen4", "options": {}}
FP = Fingerprint.of(REQUEST, 'etag="1"')


def stored(fingerprint: Fingerprint = FP, runway_task_id: str = "rw-stored") -> StoredRender:
    return StoredRender("/out/a.mp4", runway_task_id, fingerprint, 100, 0.0)


def record(fingerprint: Fingerprint = FP, **kwargs: Any) -> RenderRecord:
    return RenderRecord(
        runway_task_id=kwargs.pop("runway_task_id", "rw-1"), submitted_at=1.0, fingerprint=fingerprint, **kwargs
    )


class Lookups:
    def __init__(self, task: RunwayTask | None) -> None:
        self.task = task
        self.calls = 0

    def __call__(self, rec: RenderRecord) -> RunwayTask | None:
        self.calls += 1
        return self.task


def remote(status: RunwayStatus, task_id: str = "rw-1") -> Lookups:
    url = "https://cdn.example.com/r.mp4" if status is RunwayStatus.SUCCEEDED else None
    return Lookups(RunwayTask(task_id=task_id, status=status, video_url=url))


# -- fingerprints ---------------------------------------------------------------------------------


def test_fingerprint_is_stable_across_key_order() -> None:
    assert Fingerprint.of(dict(reversed(list(REQUEST.items()))), "x") == Fingerprint.of(REQUEST, "x")


@pytest.mark.parametrize("field,value", [("prompt", "watercolor"), ("video", "https://cdn.example.com/b.mp4")])
def test_fingerprint_changes_with_the_request(field: str, value: str) -> None:
    assert not Fingerprint.of({**REQUEST, field: value}, 'etag="1"').matches(FP)


def test_a_different_source_behind_the_same_url_is_a_change() -> None:
    assert not Fingerprint.of(REQUEST, 'etag="2"').matches(FP)


@pytest.mark.parametrize("now,then", [(None, 'etag="1"'), ('etag="1"', None), (None, None)])
def test_an_unreadable_source_identity_falls_back_to_the_url(now: str | None, then: str | None) -> None:
    assert Fingerprint.of(REQUEST, now).matches(Fingerprint.of(REQUEST, then))


def test_record_round_trips_and_rejects_junk() -> None:
    rec = record(try_number=2, forced=True, link_gone=True)
    assert RenderRecord.from_dict(rec.to_dict()) == rec
    for junk in (None, "rw-1", {}, {"runway_task_id": "rw-1"}):
        assert RenderRecord.from_dict(junk) is None
    # A record from the provider before pay-once (fingerprint a bare string) reads as "other inputs".
    old = RenderRecord.from_dict({"runway_task_id": "rw-1", "submitted_at": 5.0, "fingerprint": "abc"})
    assert old is not None and not FP.matches(old.fingerprint)


# -- the table ------------------------------------------------------------------------------------


def test_row1_stored_render_with_same_inputs_is_reused_without_asking_cometapi() -> None:
    lookups = remote(RunwayStatus.RUNNING)
    decision = decide(fingerprint=FP, stored=stored(), record=record(), lookup=lookups)
    assert decision.decision is Decision.REUSE_STORED
    assert decision.runway_task_id == "rw-stored"
    assert "rw-stored" in decision.reason and "/out/a.mp4" in decision.reason
    assert lookups.calls == 0


def test_row1_stored_render_for_other_inputs_is_not_reused() -> None:
    other = Fingerprint.of({**REQUEST, "prompt": "watercolor"})
    decision = decide(fingerprint=FP, stored=stored(other))
    assert decision.decision is Decision.SUBMIT


def test_row2_link_gone_submits_without_asking_cometapi() -> None:
    lookups = remote(RunwayStatus.SUCCEEDED)
    decision = decide(fingerprint=FP, record=record(link_gone=True), lookup=lookups)
    assert decision.decision is Decision.SUBMIT
    assert "no longer serves" in decision.reason
    assert lookups.calls == 0


@pytest.mark.parametrize("status", [RunwayStatus.PENDING, RunwayStatus.RUNNING, RunwayStatus.SUCCEEDED])
def test_row3_running_or_succeeded_record_is_resumed(status: RunwayStatus) -> None:
    lookups = remote(status)
    decision = decide(fingerprint=FP, record=record(), lookup=lookups)
    assert decision.decision is Decision.RESUME
    assert decision.runway_task_id == "rw-1"
    assert decision.task is lookups.task
    assert lookups.calls == 1


@pytest.mark.parametrize("status", [RunwayStatus.FAILED, RunwayStatus.CANCELLED])
def test_row4_failed_record_submits(status: RunwayStatus) -> None:
    decision = decide(fingerprint=FP, record=record(), lookup=remote(status))
    assert decision.decision is Decision.SUBMIT
    assert status.value in decision.reason


def test_row4_record_unknown_to_cometapi_submits() -> None:
    decision = decide(fingerprint=FP, record=record(), lookup=Lookups(None))
    assert decision.decision is Decision.SUBMIT
    assert "unknown" in decision.reason


def test_row5_record_for_other_inputs_submits_without_asking_cometapi() -> None:
    lookups = remote(RunwayStatus.RUNNING)
    decision = decide(fingerprint=FP, record=record(Fingerprint.of(REQUEST, 'etag="0"')), lookup=lookups)
    assert decision.decision is Decision.SUBMIT
    assert "inputs changed" in decision.reason
    assert lookups.calls == 0


def test_row6_nothing_known_submits() -> None:
    assert decide(fingerprint=FP).decision is Decision.SUBMIT


# -- force_render ---------------------------------------------------------------------------------


def test_force_skips_a_stored_render() -> None:
    decision = decide(fingerprint=FP, force_render=True, stored=stored())
    assert decision.decision is Decision.SUBMIT
    assert "force_render" in decision.reason


def test_force_does_not_resume_an_unforced_record() -> None:
    decision = decide(fingerprint=FP, force_render=True, record=record(), lookup=remote(RunwayStatus.RUNNING))
    assert decision.decision is Decision.SUBMIT


def test_force_resumes_its_own_take_until_it_is_stored() -> None:
    forced = record(forced=True, runway_task_id="rw-take")
    # A retry after a crash: the forced take is still rendering, and an older render is stored.
    decision = decide(
        fingerprint=FP,
        force_render=True,
        stored=stored(),
        record=forced,
        lookup=remote(RunwayStatus.RUNNING, "rw-take"),
    )
    assert decision.decision is Decision.RESUME
    assert decision.runway_task_id == "rw-take"
    # Once that take is the stored render, forcing again asks for another take.
    done = decide(fingerprint=FP, force_render=True, stored=stored(runway_task_id="rw-take"), record=forced)
    assert done.decision is Decision.SUBMIT


# -- preview_render: the spend plan's view of the same table -----------------------------------


def test_preview_reuses_what_the_operator_stored_and_submits_otherwise(tmp_path: Any, monkeypatch: Any) -> None:
    from comet_provider.hooks.comet import CometHook
    from comet_provider.utils.pay_once import preview_render
    from comet_provider.utils.stored_render import write_stored_render
    from comet_provider.utils.validation import video2video_request

    monkeypatch.setattr(CometHook, "source_identity", lambda self, url: 'etag="1"')
    out = tmp_path / "a.mp4"
    args = {"video": REQUEST["video"], "prompt": "pencil sketch", "structure_transformation": 0.4}
    assert preview_render(**args, output_path=str(out)).decision is Decision.SUBMIT

    out.write_bytes(b"r" * 100)
    write_stored_render(
        str(out),
        runway_task_id="rw-9",
        fingerprint=Fingerprint.of(video2video_request(**args), 'etag="1"'),
        size_bytes=100,
        video=REQUEST["video"],
    )
    found = preview_render(**args, output_path=str(out))
    assert (found.decision, found.runway_task_id) == (Decision.REUSE_STORED, "rw-9")
    assert preview_render(**args, output_path=str(out), force_render="true").decision is Decision.SUBMIT
    assert preview_render(**{**args, "flip": True}, output_path=str(out)).decision is Decision.SUBMIT
    with pytest.raises(ValueError, match="prompt"):
        preview_render(**{**args, "prompt": ""}, output_path=str(out))
