"""Image pipeline: a photo lands in S3, a grey thumbnail of it goes to another bucket.

For each record of the S3 event the function gets the object, writes it to ``/tmp``, runs the
``thumbnail`` tool shipped in the deployment package (``bin/thumbnail``, copied to ``/tmp`` once
per sandbox and run from there, as functions do with ImageMagick or ffmpeg) and puts the result
to ``THUMBNAIL_BUCKET`` under ``thumbnails/``. lambdascope reports the ``S3.GetObject`` and
``S3.PutObject`` calls (with their buckets and keys), the tool's run as a ``subprocess
thumbnail`` span (with its exit code), ``/tmp`` use, and the custom metric ``bytes_processed``.

Environment: ``THUMBNAIL_BUCKET`` (default ``photos-thumbnails``), ``THUMBNAIL_MAX_SIDE``
(default 128).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import tempfile
import urllib.parse
from pathlib import Path
from typing import Any

import boto3

import lambdascope

log = logging.getLogger("image_pipeline")
log.setLevel(logging.INFO)

OUTPUT_BUCKET = os.environ.get("THUMBNAIL_BUCKET", "photos-thumbnails")
MAX_SIDE = int(os.environ.get("THUMBNAIL_MAX_SIDE", "128"))
#: The tool as deployed (read-only on Lambda, under /var/task).
PACKAGED_TOOL = Path(__file__).resolve().parent / "bin" / "thumbnail"
#: Lambda's only writable place is /tmp (``tempfile`` finds it; ``TMPDIR`` moves it locally).
WORK_DIR = Path(tempfile.gettempdir()) / "thumbnailer"

s3 = boto3.client("s3")  # at init: reused by every warm invocation


class ThumbnailError(RuntimeError):
    """The tool refused the file (not an image) or failed."""


def tool() -> Path:
    """The tool, copied to /tmp the first time a sandbox needs it (it stays there for the warm
    invocations). The copy is renamed into place, so sandboxes sharing a /tmp on a laptop never
    run a half-written file."""
    target = WORK_DIR / "bin" / PACKAGED_TOOL.name
    if not os.access(target, os.X_OK):
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.{os.getpid()}")
        shutil.copyfile(PACKAGED_TOOL, partial)
        partial.chmod(0o755)
        partial.replace(target)
        log.info("copied %s to %s", PACKAGED_TOOL.name, target)
    return target


def thumbnail_key(key: str) -> str:
    stem = key.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    return f"thumbnails/{stem}.pgm"


def make_thumbnail(bucket: str, key: str, request_id: str, seconds_left: float
                   ) -> dict[str, Any]:
    source = WORK_DIR / f"{request_id}-source"
    result = WORK_DIR / f"{request_id}-thumbnail.pgm"
    try:
        # The whole object in memory, as most handlers do: fine for photos, fatal for a huge
        # upload at 128 MB (README.md: "Out of memory").
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        lambdascope.metric("bytes_processed", len(body), "Bytes")
        WORK_DIR.mkdir(parents=True, exist_ok=True)
        source.write_bytes(body)
        run = subprocess.run(
            [str(tool()), "--max-side", str(MAX_SIDE), str(source), str(result)],
            capture_output=True, text=True, timeout=max(1.0, seconds_left - 0.5),
        )
        if run.returncode != 0:
            raise ThumbnailError(f"thumbnail exited with {run.returncode}: "
                                 f"{run.stderr.strip()}")
        done = json.loads(run.stdout)
        out_key = thumbnail_key(key)
        s3.put_object(Bucket=OUTPUT_BUCKET, Key=out_key, Body=result.read_bytes(),
                      ContentType="image/x-portable-graymap",
                      Metadata={"source": f"s3://{bucket}/{key}"})
        lambdascope.metric("thumbnail_bytes", done["output_bytes"], "Bytes")
        log.info("s3://%s/%s (%dx%d) -> s3://%s/%s (%dx%d)", bucket, key, done["width"],
                 done["height"], OUTPUT_BUCKET, out_key, done["out_width"], done["out_height"])
        return {"source": f"s3://{bucket}/{key}", "thumbnail": f"s3://{OUTPUT_BUCKET}/{out_key}",
                "width": done["out_width"], "height": done["out_height"]}
    finally:
        # /tmp outlives the invocation: what is left there fills it, warm start after warm start.
        source.unlink(missing_ok=True)
        result.unlink(missing_ok=True)


@lambdascope.monitor
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    records = event.get("Records") or []
    lambdascope.label(f"photos={len(records)}")
    done = []
    for record in records:
        bucket = record["s3"]["bucket"]["name"]
        key = urllib.parse.unquote_plus(record["s3"]["object"]["key"])  # keys arrive encoded
        seconds_left = context.get_remaining_time_in_millis() / 1000.0
        done.append(make_thumbnail(bucket, key, context.aws_request_id, seconds_left))
    return {"thumbnails": done}
