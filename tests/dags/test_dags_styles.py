"""The media pipeline's styles (a prompt, or the operator's arguments for one) and where clips are staged.

A style may be a prompt (gen4) or an object such as ``{"prompt", "model": "gen4_aleph",
"references", "seed", "ratio"}``; the settings check it with the provider's own request
checks and name the field. Without ``public_url_template`` a clip is handed to the operator
as its storage location. The runs against the emulator are in test_dags_pipeline_e2e.py.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import clip_staging
import pipeline_settings as ps
import pytest
import spend_plan as sp

CDN = {"public_url_template": "https://cdn.example.com/{key}"}
ALEPH = {"prompt": "x", "model": "gen4_aleph"}


@pytest.fixture
def reference(tmp_path: Path) -> Path:
    from PIL import Image

    path = tmp_path / "refs" / "look.png"
    path.parent.mkdir()
    Image.new("RGB", (64, 48), (230, 90, 60)).save(path)
    return path


def _aleph(reference: Path, **extra: Any) -> dict[str, Any]:
    return {"prompt": "match the reference", "model": "gen4_aleph", "references": [str(reference)], **extra}


def _resolve(configured: dict[str, Any], **params: Any) -> dict[str, Any]:
    cfg, _ = ps.resolve_settings(configured, params, airflow_home="/opt/airflow")
    return cfg


# ------------------------------------------------------------------------------------------- styles


def test_every_style_comes_out_as_the_restyle_arguments_it_sets(reference: Path) -> None:
    styles = {"Neon Glow": "neon glow", "Look": _aleph(reference, seed=42, ratio="1280:720")}
    cfg = _resolve({**CDN, "styles": styles})
    assert cfg["styles"] == {
        "neon-glow": {"prompt": "neon glow", "model": "gen4", "structure_transformation": 0.5},
        # the Variable's structure_transformation is a gen4 option: not given to the official route
        "look": {
            "prompt": "match the reference",
            "model": "gen4_aleph",
            "references": [str(reference)],
            "seed": 42,
            "ratio": "1280:720",
        },
    }
    assert [ps.style_route(s) for s in cfg["styles"].values()] == ["pro", "official"]
    assert json.loads(json.dumps(cfg)) == cfg  # the settings task's XCom
    # one reference may be given as a string; a style's own model and structure_transformation win
    cfg = _resolve({**CDN, "model": "gen4_aleph", "styles": {"a": "plain", "b": {"prompt": "x", "model": "gen4"}}})
    assert cfg["styles"]["a"] == {"prompt": "plain", "model": "gen4_aleph"}
    cfg = _resolve({**CDN, "styles": {"a": {"prompt": "x", "structure_transformation": 0.9}}})
    assert cfg["styles"]["a"]["structure_transformation"] == 0.9
    one = _resolve({**CDN, "styles": {"look": {**_aleph(reference), "references": str(reference)}}})
    assert one["styles"]["look"]["references"] == [str(reference)]


@pytest.mark.parametrize(
    ("style", "field"),
    [
        ({**ALEPH, "seed": -1}, "styles.look.seed"),
        ({**ALEPH, "seed": True}, "styles.look.seed"),
        ({**ALEPH, "ratio": "wide"}, "styles.look.ratio"),
        ({**ALEPH, "content_moderation": {"x": 1}}, "styles.look.content_moderation"),
        ({**ALEPH, "structure_transformation": 0.2}, "styles.look.structure_transformation"),
        ({"prompt": "x", "seed": 4}, "styles.look.seed"),  # gen4: an official-route argument
        ({"prompt": "x", "references": ["https://example.com/a.png"]}, "styles.look.references"),
        ({"prompt": "x", "model": "gen9"}, "styles.look.route"),
        ({"prompt": ""}, "styles.look.prompt"),
        ({"model": "gen4"}, "styles.look.prompt"),
        ({"prompt": "x", "colour": "red"}, r"styles.look: unknown keys \['colour'\]"),
        ({**ALEPH, "references": ["/nowhere/look.png"]}, r"styles.look.references\[0\]"),
        ({**ALEPH, "references": ["/nowhere/look.gif"]}, r"styles.look.references\[0\]"),
        (42, "styles.look must be a prompt or an object"),
    ],
)
def test_a_bad_style_names_its_field(style: Any, field: str) -> None:
    with pytest.raises(ps.SettingsError, match=field):
        _resolve({**CDN, "styles": {"look": style}})


def test_a_reference_image_must_exist(tmp_path: Path, reference: Path) -> None:
    found = _resolve({**CDN, "styles": {"look": _aleph(reference) | {"references": [f"file://{reference}"]}}})
    assert found["styles"]["look"]["references"] == [f"file://{reference}"]
    with pytest.raises(ps.SettingsError, match=r"styles.look.references\[0\]: .*gone.png"):
        _resolve({**CDN, "styles": {"look": _aleph(reference) | {"references": [f"file://{tmp_path}/gone.png"]}}})
    # in object storage (checked by the pipeline, the provider reads no storage before submitting)
    with pytest.raises(ps.SettingsError, match=r"styles.look.references\[0\]: no reference image at 'file://"):
        ps._check_reference_exists("styles.look.references[0]", f"file://{tmp_path}/gone.png")
    ps._check_reference_exists("styles.look.references[0]", "https://example.com/look.png")  # not read


# ------------------------------------------------------------------------------------------ staging


def test_public_url_template_is_optional_with_object_storage() -> None:
    cfg = _resolve({"storage_root": "s3://aws_default@studio/runway"})
    assert cfg["public_url_template"] is None
    assert cfg["staging_root"] == "s3://aws_default@studio/runway/staging"


def test_local_staging_without_a_template_is_refused_for_the_gen4_route(reference: Path) -> None:
    with pytest.raises(ps.SettingsError) as caught:
        _resolve({"storage_root": "/srv/media", "styles": {"neon": "neon", "look": _aleph(reference)}})
    message = str(caught.value)
    assert "Set 'public_url_template'" in message and "object storage that signs URLs" in message
    assert "styles ['neon']" in message and "'file:///srv/media/staging' is local" in message
    # official-route styles only: local clips are sent as data: URIs
    cfg = _resolve({"storage_root": "/srv/media", "styles": {"look": _aleph(reference)}})
    assert cfg["public_url_template"] is None


def test_staging_on_storage_that_cannot_sign_is_refused() -> None:
    with pytest.raises(ps.SettingsError, match="memory:// storage cannot sign URLs"):
        _resolve({"storage_root": "/srv/media", "staging_root": "memory://staging"})


def test_without_a_template_clips_are_handed_over_at_their_storage_location(sample_video: Path, tmp_path: Path) -> None:
    source = tmp_path / "storage" / "incoming" / "city-walk.mp4"
    source.parent.mkdir(parents=True)
    source.write_bytes(sample_video.read_bytes())
    cfg = {
        "date": "2025-06-01",
        "storage_root": f"file://{tmp_path}/storage",
        "staging_root": f"file://{tmp_path}/staging",
        "public_url_template": None,
        "clip_seconds": 4,
        "min_clip_seconds": 1,
        "max_width": 1280,
    }
    video = {"video_id": "city-walk", "source": f"file://{source}"}
    staged = clip_staging.stage_video(cfg, video)
    assert [c["location"] for c in staged["clips"]] == [
        f"file://{tmp_path}/staging/2025-06-01/city-walk/clip_00{i}.mp4" for i in range(3)
    ]
    assert all(Path(c["location"].removeprefix("file://")).is_file() for c in staged["clips"])
    # the clips' locations depend on staging_root: another root stages them again, there
    moved = clip_staging.stage_video({**cfg, "staging_root": f"file://{tmp_path}/other"}, video)
    assert moved["clips"][0]["location"] == f"file://{tmp_path}/other/2025-06-01/city-walk/clip_000.mp4"


def test_clips_recorded_with_a_url_are_kept_and_handed_over(sample_video: Path, tmp_path: Path) -> None:
    """A staging record written before clips had a ``location`` (it said ``url``) still counts."""
    source = tmp_path / "storage" / "incoming" / "city-walk.mp4"
    source.parent.mkdir(parents=True)
    source.write_bytes(sample_video.read_bytes())
    cfg = {
        "date": "2025-06-01",
        "storage_root": f"file://{tmp_path}/storage",
        "staging_root": f"file://{tmp_path}/staging",
        **CDN,
        "clip_seconds": 4,
        "min_clip_seconds": 1,
        "max_width": 1280,
    }
    video = {"video_id": "city-walk", "source": f"file://{source}"}
    clip_staging.stage_video(cfg, video)
    index = tmp_path / "storage" / "clips" / "2025-06-01" / "city-walk.json"
    record = json.loads(index.read_text())
    for clip in record["video"]["clips"]:
        clip["url"] = clip.pop("location")
    index.write_text(json.dumps(record))
    kept = clip_staging.stage_video(cfg, video)
    assert kept["clips"][2]["location"] == "https://cdn.example.com/2025-06-01/city-walk/clip_002.mp4"


# ------------------------------------------------------------------------------ renders, spend plan


def test_render_arguments_carry_the_styles_own(reference: Path) -> None:
    cfg = _resolve({**CDN, "styles": {"neon": "neon", "look": _aleph(reference, seed=7, ratio="960:960")}})
    out = "file:///srv/renders/2025-06-01/city-walk/look/clip_000.mp4"
    kwargs = ps.render_kwargs(cfg, "look", "https://cdn.example.com/c.mp4", out)
    assert kwargs == {
        "video": "https://cdn.example.com/c.mp4",
        "prompt": "match the reference",
        "model": "gen4_aleph",
        "references": [str(reference)],
        "seed": 7,
        "ratio": "960:960",
        "force_render": False,
        "comet_conn_id": "comet_default",
        "poll_interval": 10,
        "timeout": 1800,
        "output_path": out,
    }
    gen4 = ps.render_kwargs(cfg, "neon", "https://cdn.example.com/c.mp4", out)
    assert (gen4["model"], gen4["structure_transformation"]) == ("gen4", 0.5) and "seed" not in gen4


def test_the_spend_plan_asks_the_provider_with_the_styles_arguments(
    monkeypatch: pytest.MonkeyPatch, reference: Path
) -> None:
    from comet_provider.utils import pay_once

    seen: list[dict[str, Any]] = []

    @functools.wraps(pay_once.preview_render)
    def fake_preview(**kwargs: Any) -> pay_once.RenderDecision:
        seen.append(kwargs)
        return pay_once.RenderDecision(pay_once.Decision.SUBMIT, "new", None)

    monkeypatch.setattr(pay_once, "preview_render", fake_preview)
    cfg = _resolve({**CDN, "styles": {"look": _aleph(reference, seed=7, ratio="960:960")}})
    sp.preview([ps.render_kwargs(cfg, "look", "https://cdn.example.com/c.mp4", "file:///r/v/look/clip_000.mp4")])
    (asked,) = seen
    assert {k: asked[k] for k in ("model", "references", "seed", "ratio")} == {
        "model": "gen4_aleph",
        "references": [str(reference)],
        "seed": 7,
        "ratio": "960:960",
    }
    assert "structure_transformation" not in asked and "timeout" not in asked


def test_the_providers_preview_takes_a_local_clip_and_reference_on_the_official_route(
    sample_video: Path, tmp_path: Path, reference: Path
) -> None:
    """No fake: the provider's own preview_render, with what plan_renders hands the restyle tasks."""
    cfg = _resolve({"storage_root": str(tmp_path), "styles": {"look": _aleph(reference, seed=7)}})
    out = f"file://{tmp_path}/renders/2025-06-01/city-walk/look/clip_000.mp4"
    (decided,) = sp.preview([ps.render_kwargs(cfg, "look", f"file://{sample_video}", out)])
    assert decided["decision"] == "submit"
