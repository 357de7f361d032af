"""examples/image_pipeline under awslambdaric, against moto on loopback: S3 event -> GetObject ->
the packaged ``thumbnail`` tool, copied to /tmp and run there -> PutObject to the output bucket,
and what the report says about each step."""

from __future__ import annotations

import os
import pathlib
import subprocess
from collections.abc import Callable
from typing import Any

from devstack import INPUT_BUCKET, SAMPLE_PHOTOS, THUMBNAIL_BUCKET, make_image
from examples_harness import (
    EXAMPLES,
    Function,
    Stack,
    invoke_cli,
    load_event,
    metrics_of,
    one_span,
    root_span,
    spans_named,
    stored,
)

TOOL = EXAMPLES / "image_pipeline" / "bin" / "thumbnail"


def pgm_size(data: bytes) -> tuple[int, int]:
    magic, width, height, maxval = data.split(maxsplit=4)[:4]
    assert magic == b"P5" and maxval == b"255", data[:20]
    return int(width), int(height)


def start(function: Callable[..., Function]) -> Function:
    return function("image_pipeline", "thumbnailer.handler", "thumbnailer")


def test_tool_greys_and_box_shrinks(tmp_path: Any) -> None:
    # 4x2 colour image: left 2x2 block pure red, right block pure white; max side 2 -> factor 2.
    red, white = b"\xff\x00\x00", b"\xff\xff\xff"
    source = tmp_path / "in.ppm"
    source.write_bytes(b"P6\n# two blocks\n4 2\n255\n" + (red * 2 + white * 2) * 2)
    out = tmp_path / "out.pgm"
    done = subprocess.run([str(TOOL), "--max-side", "2", str(source), str(out)],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert out.read_bytes() == b"P5\n2 1\n255\n" + bytes([(77 * 255) >> 8, 255])
    assert '"out_width": 2' in done.stdout

    (tmp_path / "list.txt").write_text("not a picture\n")
    refused = subprocess.run([str(TOOL), str(tmp_path / "list.txt"), str(out)],
                             capture_output=True, text=True, timeout=30)
    assert refused.returncode == 2
    assert "is not a PPM/PGM image" in refused.stderr


def test_photo_becomes_a_thumbnail_and_the_report_shows_each_step(
        function: Callable[..., Function], stack: Stack) -> None:
    fn = start(function)
    result = fn.invoke(load_event("image_pipeline", "photo_uploaded.json"))
    assert result.ok, (result.payload, fn.output)
    (done,) = result.payload["thumbnails"]
    assert done == {"source": f"s3://{INPUT_BUCKET}/uploads/harbour.ppm",
                    "thumbnail": f"s3://{THUMBNAIL_BUCKET}/thumbnails/harbour.pgm",
                    "width": 106, "height": 80}

    s3 = stack.client("s3")
    stored = s3.get_object(Bucket=THUMBNAIL_BUCKET, Key="thumbnails/harbour.pgm")
    assert pgm_size(stored["Body"].read()) == (106, 80)
    assert stored["Metadata"] == {"source": f"s3://{INPUT_BUCKET}/uploads/harbour.ppm"}

    (report,) = fn.reports(1)
    inv = report["invocation"]
    assert inv["status"] == "ok" and inv["cold_start"] is True
    assert inv["trigger"] == {"type": "s3", "source": f"arn:aws:s3:::{INPUT_BUCKET}"}
    root = root_span(report)

    get = one_span(report, "S3.GetObject")
    assert get["attributes"]["aws.s3.bucket"] == INPUT_BUCKET
    assert get["attributes"]["aws.s3.key"] == "uploads/harbour.ppm"
    assert get["attributes"]["rpc.system"] == "aws-api"
    put = one_span(report, "S3.PutObject")
    assert put["attributes"]["aws.s3.bucket"] == THUMBNAIL_BUCKET
    assert put["attributes"]["aws.s3.key"] == "thumbnails/harbour.pgm"
    tool_run = one_span(report, "subprocess thumbnail")
    assert tool_run["status"] == "ok"
    assert tool_run["attributes"]["process.executable.name"] == "thumbnail"
    assert tool_run["attributes"]["process.exit.code"] == 0
    for span in (get, put, tool_run):
        assert span["parent_span_id"] == root["span_id"]
        assert span["status"] == "ok"
    # In the order the handler made them.
    assert get["start_ms"] <= tool_run["start_ms"] <= put["start_ms"]

    photo_bytes = len(make_image(*SAMPLE_PHOTOS["uploads/harbour.ppm"]))
    metrics = metrics_of(report)
    (processed,) = metrics["bytes_processed"]
    assert (processed["value"], processed["unit"]) == (photo_bytes, "Bytes")
    (thumb,) = metrics["thumbnail_bytes"]
    assert thumb["value"] == len(b"P5\n106 80\n255\n") + 106 * 80
    assert report["labels"] == ["photos=1"]
    assert isinstance(report["resources"]["tmp_used_mb"], (int, float))

    # The tool was copied into the sandbox's /tmp and run from there; the work files are gone.
    copied = fn.tmp / "thumbnailer" / "bin" / "thumbnail"
    assert os.access(copied, os.X_OK)
    assert copied.read_bytes() == TOOL.read_bytes()
    assert sorted(p.name for p in (fn.tmp / "thumbnailer").iterdir()) == ["bin"]
    assert any("copied thumbnail to" in line["message"] for line in report["logs"])


def test_warm_batch_of_two_photos_reuses_the_tool(function: Callable[..., Function],
                                                 stack: Stack) -> None:
    fn = start(function)
    assert fn.invoke(load_event("image_pipeline", "photo_uploaded.json")).ok
    result = fn.invoke(load_event("image_pipeline", "two_photos.json"))
    assert result.ok, (result.payload, fn.output)
    assert [t["thumbnail"] for t in result.payload["thumbnails"]] == [
        f"s3://{THUMBNAIL_BUCKET}/thumbnails/portrait.pgm",
        f"s3://{THUMBNAIL_BUCKET}/thumbnails/tiny icon.pgm",  # the event's key was URL-encoded
    ]
    s3 = stack.client("s3")
    portrait = s3.get_object(Bucket=THUMBNAIL_BUCKET, Key="thumbnails/portrait.pgm")
    assert pgm_size(portrait["Body"].read()) == (90, 120)
    icon = s3.get_object(Bucket=THUMBNAIL_BUCKET, Key="thumbnails/tiny icon.pgm")
    assert pgm_size(icon["Body"].read()) == (64, 48)  # small enough already

    first, second = fn.reports(2)
    assert first["invocation"]["cold_start"] is True
    assert second["invocation"]["cold_start"] is False
    assert [s["attributes"]["aws.s3.key"] for s in spans_named(second, "S3.GetObject")] == [
        "uploads/portrait.pgm", "uploads/tiny icon.ppm"]
    assert len(spans_named(second, "subprocess thumbnail")) == 2
    assert len(spans_named(second, "S3.PutObject")) == 2
    sizes = [len(make_image(*SAMPLE_PHOTOS[k]))
             for k in ("uploads/portrait.pgm", "uploads/tiny icon.ppm")]
    assert [m["value"] for m in metrics_of(second)["bytes_processed"]] == sizes
    assert second["labels"] == ["photos=2"]
    # Warm: the copy in /tmp was still there.
    assert not any("copied thumbnail" in line["message"] for line in second["logs"])


def test_a_file_that_is_not_an_image_fails_with_the_tools_message(
        function: Callable[..., Function], stack: Stack) -> None:
    fn = start(function)
    result = fn.invoke(load_event("image_pipeline", "not_an_image.json"))
    assert result.status == "error"
    assert result.payload["errorType"] == "ThumbnailError"

    (report,) = fn.reports(1)
    assert report["invocation"]["status"] == "error"
    error = report["error"]
    assert error["type"] == "thumbnailer.ThumbnailError"  # qualified by its module
    assert "thumbnail exited with 2" in error["message"]
    assert "is not a PPM/PGM image" in error["message"]
    assert error["stack"][-1]["function"] == "make_thumbnail"
    tool_run = one_span(report, "subprocess thumbnail")
    assert tool_run["status"] == "error"
    assert tool_run["attributes"]["process.exit.code"] == 2
    assert one_span(report, "S3.GetObject")["status"] == "ok"
    assert spans_named(report, "S3.PutObject") == []
    listed = stack.client("s3").list_objects_v2(Bucket=THUMBNAIL_BUCKET, Prefix="thumbnails/notes")
    assert listed["KeyCount"] == 0
    # The failed invocation cleaned /tmp up too.
    assert sorted(p.name for p in (fn.tmp / "thumbnailer").iterdir()) == ["bin"]


def test_through_the_runner_one_sandbox_cold_then_warm(stack: Stack,
                                                      tmp_path: pathlib.Path) -> None:
    db = tmp_path / "reports.db"
    run = invoke_cli(stack, "image_pipeline/thumbnailer.py:handler", "--event",
                     str(EXAMPLES / "image_pipeline" / "events" / "two_photos.json"),
                     "--times", "3", "--containers", "1", db=db)
    assert run["function"] == "thumbnailer"
    counts = run["counts"]
    assert (counts["invocations"], counts["cold"], counts["warm"], counts["ok"]) == (3, 1, 2, 3)
    assert run["reports"]["received"] == 3 and run["reports"]["missing"] == []
    for invocation in run["invocations"]:
        assert len(invocation["response"]["thumbnails"]) == 2
    s3 = stack.client("s3")
    icon = s3.get_object(Bucket=THUMBNAIL_BUCKET, Key="thumbnails/tiny icon.pgm")
    assert pgm_size(icon["Body"].read()) == (64, 48)

    last = stored(db, run["invocations"][-1]["request_id"])
    assert last["invocation"]["cold_start"] is False
    assert [s["status"] for s in spans_named(last, "subprocess thumbnail")] == ["ok", "ok"]
    assert {s["attributes"]["aws.s3.bucket"] for s in spans_named(last, "S3.PutObject")} == {
        THUMBNAIL_BUCKET}
    photos = ("uploads/portrait.pgm", "uploads/tiny icon.ppm")
    assert sum(m["value"] for m in metrics_of(last)["bytes_processed"]) == sum(
        len(make_image(*SAMPLE_PHOTOS[k])) for k in photos)
