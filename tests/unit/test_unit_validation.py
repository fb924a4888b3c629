"""Input validation: every bad input is refused before a request, naming the field to fix."""

from __future__ import annotations

import math
from typing import Any

import pytest

from comet_provider.exceptions import CometValidationError
from comet_provider.utils.validation import (
    MAX_PROMPT_CHARS,
    build_video2video_payload,
    check_http_url,
    check_task_id,
)

VIDEO = "https://media.test/clip.mp4"
VALID: dict[str, Any] = {"video": VIDEO, "prompt": "pixelated style"}


class Unserializable:
    pass


# (case id, overrides of the valid request, the field the error must name)
INVALID: list[tuple[str, dict[str, Any], str]] = [
    # video: types
    ("video None", {"video": None}, "video"),
    ("video int", {"video": 42}, "video"),
    ("video bytes", {"video": b"https://media.test/a.mp4"}, "video"),
    ("video bool", {"video": True}, "video"),
    ("video list", {"video": [VIDEO]}, "video"),
    # video: schemes
    ("video ftp", {"video": "ftp://media.test/a.mp4"}, "video"),
    ("video file", {"video": "file:///tmp/a.mp4"}, "video"),
    ("video s3", {"video": "s3://bucket/a.mp4"}, "video"),
    ("video no scheme", {"video": "media.test/a.mp4"}, "video"),
    ("video relative", {"video": "/tmp/a.mp4"}, "video"),
    ("video data", {"video": "data:video/mp4;base64,AAAA"}, "video"),
    ("video javascript", {"video": "javascript:alert(1)"}, "video"),
    # video: host, whitespace, size, port
    ("video missing host", {"video": "http://"}, "video"),
    ("video empty host", {"video": "https:///a.mp4"}, "video"),
    ("video empty", {"video": ""}, "video"),
    ("video blank", {"video": "   \t"}, "video"),
    ("video inner space", {"video": "https://media.test/my clip.mp4"}, "video"),
    ("video newline", {"video": "https://media.test/a\n.mp4"}, "video"),
    ("video oversized", {"video": "https://media.test/" + "a" * 3000}, "video"),
    ("video bad port", {"video": "https://media.test:99999/a.mp4"}, "video"),
    # prompt
    ("prompt None", {"prompt": None}, "prompt"),
    ("prompt int", {"prompt": 7}, "prompt"),
    ("prompt list", {"prompt": ["pixel"]}, "prompt"),
    ("prompt empty", {"prompt": ""}, "prompt"),
    ("prompt blank", {"prompt": " \n\t "}, "prompt"),
    ("prompt oversized", {"prompt": "x" * (MAX_PROMPT_CHARS + 1)}, "prompt"),
    # model
    ("model None", {"model": None}, "model"),
    ("model empty", {"model": ""}, "model"),
    ("model blank", {"model": "  "}, "model"),
    ("model int", {"model": 4}, "model"),
    # options: shape
    ("options str", {"options": "flip"}, "options"),
    ("options list", {"options": [("flip", True)]}, "options"),
    ("options int", {"options": 1}, "options"),
    ("options int key", {"options": {1: "x"}}, "options"),
    ("options tuple key", {"options": {("a",): 1}}, "options"),
    ("options object value", {"options": {"extra": Unserializable()}}, "options"),
    ("options set value", {"options": {"extra": {1, 2}}}, "options"),
    ("options bytes value", {"options": {"extra": b"x"}}, "options"),
    ("options nan value", {"options": {"motion": math.nan}}, "options"),
    ("options inf value", {"options": {"motion": math.inf}}, "options"),
    # structure_transformation
    ("st string", {"options": {"structure_transformation": "0.5"}}, "structure_transformation"),
    ("st bool", {"options": {"structure_transformation": True}}, "structure_transformation"),
    ("st negative", {"options": {"structure_transformation": -0.1}}, "structure_transformation"),
    ("st above one", {"options": {"structure_transformation": 1.5}}, "structure_transformation"),
    ("st nan", {"options": {"structure_transformation": math.nan}}, "structure_transformation"),
    ("st inf", {"options": {"structure_transformation": math.inf}}, "structure_transformation"),
    ("st -inf", {"options": {"structure_transformation": -math.inf}}, "structure_transformation"),
    ("st list", {"options": {"structure_transformation": [0.5]}}, "structure_transformation"),
    # flip
    ("flip string", {"options": {"flip": "yes"}}, "flip"),
    ("flip int", {"options": {"flip": 1}}, "flip"),
    ("flip zero", {"options": {"flip": 0}}, "flip"),
    # seconds
    ("seconds zero", {"options": {"seconds": 0}}, "seconds"),
    ("seconds too long", {"options": {"seconds": 61}}, "seconds"),
    ("seconds string", {"options": {"seconds": "5"}}, "seconds"),
    ("seconds bool", {"options": {"seconds": True}}, "seconds"),
    ("seconds nan", {"options": {"seconds": math.nan}}, "seconds"),
    ("seconds inf", {"options": {"seconds": math.inf}}, "seconds"),
    # callback_url
    ("callback ftp", {"callback_url": "ftp://hooks.test/x"}, "callback_url"),
    ("callback not a url", {"callback_url": "not a url"}, "callback_url"),
    ("callback int", {"callback_url": 123}, "callback_url"),
    ("callback no host", {"callback_url": "https://"}, "callback_url"),
    ("callback file", {"callback_url": "file:///tmp/hook"}, "callback_url"),
    ("callback no scheme", {"callback_url": "hooks.test/x"}, "callback_url"),
    ("callback blank", {"callback_url": "   "}, "callback_url"),
    ("callback bool", {"callback_url": True}, "callback_url"),
]


def test_table_is_big_enough() -> None:
    assert len(INVALID) >= 40


@pytest.mark.parametrize(("case", "overrides", "field"), INVALID, ids=[row[0] for row in INVALID])
def test_invalid_input_names_the_field(case: str, overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(CometValidationError) as info:
        build_video2video_payload(**{**VALID, **overrides})
    error = info.value
    assert error.field == field
    assert field in str(error)
    assert isinstance(error, ValueError)
    assert not error.retryable


def test_scheme_error_says_what_to_do() -> None:
    with pytest.raises(CometValidationError, match="http") as info:
        build_video2video_payload(**{**VALID, "video": "s3://bucket/a.mp4"})
    assert "'s3'" in str(info.value)
    with pytest.raises(CometValidationError, match="'none'"):
        build_video2video_payload(**{**VALID, "video": "media.test/a.mp4"})


def test_minimal_valid_body() -> None:
    assert build_video2video_payload(**VALID) == {
        "video": VIDEO,
        "prompt": "pixelated style",
        "model": "gen4",
        "options": {},
    }


def test_full_valid_body_is_cleaned() -> None:
    body = build_video2video_payload(
        video=f"  {VIDEO} ",
        prompt="  noir film  ",
        model=" gen4 ",
        options={"structure_transformation": 0.5, "flip": True, "seconds": 5, "extra": {"a": [1, 2]}, "dropped": None},
        callback_url=" https://hooks.test/done?x=1 ",
    )
    assert body == {
        "video": VIDEO,
        "prompt": "noir film",
        "model": "gen4",
        "options": {"structure_transformation": 0.5, "flip": True, "seconds": 5, "extra": {"a": [1, 2]}},
        "callback_url": "https://hooks.test/done?x=1",
    }


@pytest.mark.parametrize("value", [0, 0.0, 1, 1.0, 0.25])
def test_structure_transformation_bounds_are_inclusive(value: float) -> None:
    body = build_video2video_payload(**VALID, options={"structure_transformation": value})
    assert body["options"]["structure_transformation"] == value


@pytest.mark.parametrize("value", [1, 5, 10.5, 60])
def test_seconds_in_range(value: float) -> None:
    assert build_video2video_payload(**VALID, options={"seconds": value})["options"]["seconds"] == value


def test_prompt_at_the_limit_is_accepted() -> None:
    prompt = "x" * MAX_PROMPT_CHARS
    assert build_video2video_payload(video=VIDEO, prompt=prompt)["prompt"] == prompt


@pytest.mark.parametrize("callback_url", [None, ""])
def test_callback_url_absent(callback_url: Any) -> None:
    assert "callback_url" not in build_video2video_payload(**VALID, callback_url=callback_url)


def test_options_mapping_is_copied_not_mutated() -> None:
    options = {"flip": False, "drop": None}
    body = build_video2video_payload(**VALID, options=options)
    assert body["options"] == {"flip": False}
    assert options == {"flip": False, "drop": None}


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8765/media/a.mp4", "https://cdn.test/a.mp4?sig=abc&x=1", "HTTPS://CDN.TEST/A.MP4"]
)
def test_check_http_url_accepts(url: str) -> None:
    assert check_http_url("url", url) == url


@pytest.mark.parametrize("value", [None, "", "   ", 12, ["id"], {"id": "x"}, b"abc"])
def test_bad_task_ids(value: Any) -> None:
    with pytest.raises(CometValidationError) as info:
        check_task_id(value)
    assert info.value.field == "runway_task_id"
    assert "runway_task_id" in str(info.value)


def test_task_id_field_name_is_configurable_and_id_is_trimmed() -> None:
    with pytest.raises(CometValidationError) as info:
        check_task_id("", field="task_id")
    assert info.value.field == "task_id"
    assert check_task_id("  abc-123 ") == "abc-123"
