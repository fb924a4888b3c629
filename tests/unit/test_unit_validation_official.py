"""The request per route: gen4's dict exactly as before, the official route's own fields, and the wire body."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from comet_provider.exceptions import CometValidationError
from comet_provider.utils.sources import Source
from comet_provider.utils.validation import (
    MAX_SEED,
    build_video2video_payload,
    request_route,
    request_sources,
    video2video_request,
)

VIDEO = "https://media.test/clip.mp4"
ALEPH: dict[str, Any] = {"video": VIDEO, "prompt": "match the reference", "model": "gen4_aleph"}


@pytest.fixture(autouse=True)
def cloud_filesystems(monkeypatch: pytest.MonkeyPatch) -> None:
    """s3, gs and abfs count as having an Airflow filesystem (their providers need not be installed)."""
    import airflow.sdk.io

    real = airflow.sdk.io.has_fs
    monkeypatch.setattr(airflow.sdk.io, "has_fs", lambda scheme: scheme in ("s3", "gs", "abfs") or real(scheme))


def fail(field: str, **arguments: Any) -> str:
    with pytest.raises(CometValidationError) as info:
        video2video_request(**arguments)
    assert info.value.field == field
    return str(info.value)


# -- gen4: unchanged ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "arguments",
    [
        {"video": VIDEO, "prompt": "noir"},
        {"video": f" {VIDEO} ", "prompt": " noir ", "model": " gen4 ", "callback_url": "https://hooks.test/x"},
        {"video": VIDEO, "prompt": "noir", "options": {"seconds": 5, "flip": None}, "callback_url": ""},
    ],
)
def test_gen4_request_is_todays_body(arguments: dict[str, Any]) -> None:
    """Fingerprints stored before the official route existed must still match."""
    assert video2video_request(**arguments) == build_video2video_payload(**arguments)


def test_gen4_request_with_every_argument() -> None:
    request = video2video_request(
        video=VIDEO, prompt="noir", structure_transformation=0.4, flip=True, options={"seconds": 5}, route="pro"
    )
    assert request == {
        "video": VIDEO,
        "prompt": "noir",
        "model": "gen4",
        "options": {"seconds": 5, "structure_transformation": 0.4, "flip": True},
    }
    assert request_route(request) == "pro"


def test_gen4_takes_a_storage_location() -> None:
    request = video2video_request(video="s3://studio@bucket/clips/a.mp4", prompt="noir")
    assert request["video"] == "s3://studio@bucket/clips/a.mp4"
    assert list(request) == ["video", "prompt", "model", "options"]


def test_gen4_refuses_a_local_file(tmp_path: Path) -> None:
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"x")
    text = fail("video", video=str(clip), prompt="noir")
    assert "public_url_template" in text and "gen4_aleph" in text


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("seed", 7),
        ("seed", 0),
        ("references", [VIDEO]),
        ("references", VIDEO),
        ("ratio", "1280:720"),
        ("content_moderation", {"publicFigureThreshold": "low"}),
    ],
)
def test_official_only_fields_on_gen4(field: str, value: Any) -> None:
    text = fail(field, video=VIDEO, prompt="noir", **{field: value})
    assert "only on the official route" in text and "gen4_aleph" in text


@pytest.mark.parametrize("unset", [None, "", [], {}, "  "])
def test_unset_official_fields_on_gen4(unset: Any) -> None:
    """Templates render an unset argument as "" (or an empty list or dict)."""
    fields = ("seed", "references", "ratio", "content_moderation")
    assert video2video_request(video=VIDEO, prompt="noir", **dict.fromkeys(fields, unset))["model"] == "gen4"


# -- official route -------------------------------------------------------------------------------


def test_minimal_official_request() -> None:
    request = video2video_request(**ALEPH)
    assert request == {"route": "official", "video": VIDEO, "prompt": "match the reference", "model": "gen4_aleph"}
    assert request_route(request) == "official"


def test_full_official_request(tmp_path: Path) -> None:
    still = tmp_path / "palette.PNG"
    still.write_bytes(b"png")
    request = video2video_request(
        video="s3://studio@bucket/clips/a.mp4",
        prompt="  in this palette ",
        model="gen4_aleph",
        seed="42",  # as a template renders it
        references=[str(still), "gs://refs/b.webp", "https://cdn.test/c.jpg"],
        ratio=" 1280:720 ",
        content_moderation={"public_figure_threshold": " LOW "},
    )
    assert request == {
        "route": "official",
        "video": "s3://studio@bucket/clips/a.mp4",
        "prompt": "in this palette",
        "model": "gen4_aleph",
        "seed": 42,
        "references": [str(still), "gs://refs/b.webp", "https://cdn.test/c.jpg"],
        "ratio": "1280:720",
        "content_moderation": {"publicFigureThreshold": "low"},
    }


def test_explicit_route_for_a_new_model() -> None:
    request = video2video_request(video=VIDEO, prompt="x", model="gen5_future", route="official", seed=1)
    assert (request["route"], request["model"], request["seed"]) == ("official", "gen5_future", 1)
    assert "route='official'" in fail("route", video=VIDEO, prompt="x", model="gen5_future")


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("flip", False),
        ("structure_transformation", 0.5),
        ("options", {"seconds": 5}),
        ("callback_url", "https://hooks.test/x"),
    ],
)
def test_gen4_only_fields_on_the_official_route(field: str, value: Any) -> None:
    assert "only on the gen4 route" in fail(field, **ALEPH, **{field: value})


def test_unset_gen4_fields_on_the_official_route() -> None:
    assert video2video_request(**ALEPH, flip=None, options={}, callback_url="", structure_transformation=None)


def test_a_single_reference_is_a_list_of_one() -> None:
    assert video2video_request(**ALEPH, references="https://cdn.test/a.png")["references"] == ["https://cdn.test/a.png"]
    assert video2video_request(**ALEPH, references=("s3://b/a.png",))["references"] == ["s3://b/a.png"]


@pytest.mark.parametrize("seed", [0, 1, MAX_SEED, str(MAX_SEED), " 7 "])
def test_good_seeds(seed: Any) -> None:
    assert video2video_request(**ALEPH, seed=seed)["seed"] == int(seed)


BAD: list[tuple[str, dict[str, Any], str]] = [
    ("seed", {"seed": -1}, "from 0"),
    ("seed", {"seed": MAX_SEED + 1}, "from 0"),
    ("seed", {"seed": True}, "whole number"),
    ("seed", {"seed": 1.5}, "whole number"),
    ("seed", {"seed": "-3"}, "whole number"),
    ("seed", {"seed": "seven"}, "whole number"),
    ("seed", {"seed": "²"}, "whole number"),  # a digit to str.isdigit, not to int()
    ("ratio", {"ratio": "16/9"}, "WIDTH:HEIGHT"),
    ("ratio", {"ratio": "0:720"}, "WIDTH:HEIGHT"),
    ("ratio", {"ratio": "1280:-720"}, "WIDTH:HEIGHT"),
    ("ratio", {"ratio": "1280:720:1"}, "WIDTH:HEIGHT"),
    ("ratio", {"ratio": 1.78}, "WIDTH:HEIGHT"),
    ("content_moderation", {"content_moderation": "low"}, "dict"),
    ("content_moderation", {"content_moderation": {"publicFigureThreshold": "high"}}, "'auto' or 'low'"),
    ("content_moderation", {"content_moderation": {"publicFigureThreshold": 1}}, "'auto' or 'low'"),
    ("content_moderation", {"content_moderation": {"nudity": "low"}}, "unknown keys ['nudity']"),
    (
        "content_moderation",
        {"content_moderation": {"publicFigureThreshold": "low", "public_figure_threshold": "auto"}},
        "once",
    ),
    ("references", {"references": 5}, "list"),
    ("references", {"references": {"uri": VIDEO}}, "list"),
    ("references[1]", {"references": [VIDEO, 7]}, "int"),
    ("references[0]", {"references": ["s3://bucket"]}, "no object"),
    ("references[0]", {"references": ["/no/such/still.png"]}, "No such file"),
    ("references[0]", {"references": ["https://cdn.test/a b.png"]}, "whitespace"),
    ("video", {"video": "/no/such/clip.mp4"}, "No such file"),
    ("video", {"video": None}, "NoneType"),
    ("prompt", {"prompt": "x" * 1001}, "1000"),
    ("prompt", {"prompt": " "}, "empty"),
    ("model", {"model": ""}, "model name"),
]


@pytest.mark.parametrize(("field", "overrides", "says"), BAD, ids=[f"{row[0]}-{row[1]}" for row in BAD])
def test_bad_official_input_names_the_field(field: str, overrides: dict[str, Any], says: str) -> None:
    assert says in fail(field, **{**ALEPH, **overrides})


def test_a_reference_over_the_image_limit(tmp_path: Path) -> None:
    still = tmp_path / "big.png"
    with still.open("wb") as handle:
        handle.truncate(4_000_000)
    assert "5.0 MB" in fail("references[0]", **ALEPH, references=[str(still)])


# -- sources ------------------------------------------------------------------------------------


def test_request_sources_are_the_video_then_each_reference(tmp_path: Path) -> None:
    still = tmp_path / "a.png"
    still.write_bytes(b"png")
    request = video2video_request(**ALEPH, references=[str(still), "s3://b/k.png"])
    assert request_sources(request) == [
        Source("video", VIDEO, "url", "video"),
        Source("references[0]", str(still), "local", "image"),
        Source("references[1]", "s3://b/k.png", "storage", "image"),
    ]
    still.unlink()  # checked again when resolving: the file is gone
    with pytest.raises(CometValidationError, match="references\\[0\\]"):
        request_sources(request)
