"""Every reader checks type and size before reading, and streams what it accepts: memory stays
flat whatever it is given (a device that never ends, a FIFO, a sparse 1 GB file, a 50 MB line,
an oversized API body)."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import tempfile
import tracemalloc
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from pipeline.collections import create_collection
from pipeline.models import Collection, Document
from tests.conftest import ROOT, database_url

HANG_GUARD_SECONDS = 120
# Headroom over a normal enqueue's peak: far below what reading any of these inputs would take.
MEMORY_HEADROOM_MB = 50


# Runs manage.py and writes its peak RSS (VmHWM: this process's own high-water mark since exec)
# to a file. Not ru_maxrss: Linux carries the parent's high-water mark across fork and exec.
PEAK_RSS_WRAPPER = """
import atexit, re, runpy, sys
peak_file = sys.argv.pop(1)
def report():
    status = open("/proc/self/status").read()
    open(peak_file, "w").write(re.search(r"VmHWM:\\s+(\\d+) kB", status).group(1))
atexit.register(report)
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def measured(*args: str) -> tuple[int, str, float]:
    """Run `manage.py ARGS` in a child process: its exit code, output and peak RSS in MB."""
    with tempfile.TemporaryDirectory() as scratch:
        peak_file = Path(scratch) / "peak"
        env = {**os.environ, "DATABASE_URL": database_url()}
        command = [sys.executable, "-c", PEAK_RSS_WRAPPER, str(peak_file), str(ROOT / "manage.py"), *args]
        with tempfile.TemporaryFile() as out:
            child = subprocess.Popen(
                command, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
            try:
                # A guard against a hang, not a timing assertion: a reader that blocks never finishes.
                child.wait(timeout=HANG_GUARD_SECONDS)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
                out.seek(0)
                raise AssertionError(f"manage.py {args} never finished (blocked?): {out.read().decode()}") from None
            out.seek(0)
            output = out.read().decode()
        return child.returncode, output, int(peak_file.read_text()) / 1024


@pytest.fixture
def sink(db) -> Collection:
    return create_collection(name="sink", model="local/hash-16", chunk_unit="characters", chunk_size=200)


@pytest.fixture(scope="module")
def baseline_cache() -> dict[str, float]:
    return {}


@pytest.fixture
def baseline_mb(sink, tmp_path, baseline_cache) -> float:
    """Peak RSS of a normal enqueue of one small file (Django, the ORM and psycopg loaded)."""
    if "mb" not in baseline_cache:
        small = tmp_path / "small.txt"
        small.write_text("A small, ordinary document.")
        code, output, peak = measured("enqueue", str(small), "--collection", "sink", "--no-progress")
        assert code == 0, output
        baseline_cache["mb"] = peak
        print(f"\nbaseline enqueue peak RSS: {peak:.0f} MB")
    return baseline_cache["mb"]


def enqueue_cmd(*paths: Path | str, base: Path | None = None) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    options = {"collection": "sink", "no_progress": True, "stdout": out, "stderr": err}
    if base is not None:
        options["base"] = str(base)
    try:
        call_command("enqueue", *map(str, paths), **options)
    finally:
        enqueue_cmd.last = (out.getvalue(), err.getvalue())
    return out.getvalue(), err.getvalue()


# -- files: type and size before reading -------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_enqueue_of_dev_zero_is_refused_at_once_with_flat_memory(baseline_mb, tmp_path):
    good = tmp_path / "good.txt"
    good.write_text("Enqueued although /dev/zero was named beside it.")
    code, output, peak = measured("enqueue", "/dev/zero", str(good), "--collection", "sink", "--no-progress")
    print(f"enqueue /dev/zero peak RSS: {peak:.0f} MB (baseline {baseline_mb:.0f} MB)")
    assert code == 1, output
    assert "rejected /dev/zero: a character device, not a regular file" in output
    assert "1 document(s) rejected (listed above); the 1 others were enqueued" in output
    assert peak < baseline_mb + MEMORY_HEADROOM_MB
    assert Document.objects.filter(external_id__endswith="good.txt").count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_fifo_is_refused_without_opening_it_named_or_met_in_a_folder(baseline_mb, tmp_path):
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "note.txt").write_text("A note beside a pipe.")
    os.mkfifo(folder / "pipe")
    named = tmp_path / "named.fifo"
    os.mkfifo(named)
    # No writer ever opens either FIFO: a reader that opened one would wait forever.
    code, output, _ = measured("enqueue", str(named), str(folder), "--collection", "sink", "--no-progress")
    assert code == 1, output
    assert f"rejected {named}: a FIFO (named pipe), not a regular file" in output
    assert "Skipped 1 while walking folders and globs: 1 not a regular file." in output
    assert Document.objects.get().text == "A note beside a pipe."


@pytest.mark.django_db(transaction=True)
def test_a_sparse_1_gb_file_is_refused_by_its_size_without_reading_it(baseline_mb, tmp_path):
    sparse = tmp_path / "huge.txt"
    with sparse.open("wb") as fh:
        fh.truncate(1 << 30)
    code, output, peak = measured("enqueue", str(sparse), "--collection", "sink", "--no-progress")
    print(f"enqueue of a 1 GB sparse file peak RSS: {peak:.0f} MB (baseline {baseline_mb:.0f} MB)")
    assert code == 1, output
    assert re.search(r"huge\.txt: file is 1073741824 bytes, over the limit of 4000000 bytes", output), output
    assert peak < baseline_mb + MEMORY_HEADROOM_MB
    assert not Document.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_50_mb_jsonl_line_is_refused_with_its_line_number_and_the_others_are_enqueued(baseline_mb, tmp_path):
    lines = tmp_path / "lines.jsonl"
    with lines.open("w") as fh:
        fh.write(json.dumps({"id": "before", "text": "The line before."}) + "\n")
        huge = '{"id": "huge", "text": "' + "x" * (50 << 20) + '"}\n'
        fh.write(huge)
        fh.write(json.dumps({"id": "after", "text": "The line after."}) + "\n")
    code, output, peak = measured("enqueue", str(lines), "--collection", "sink", "--no-progress")
    print(f"enqueue of a 50 MB .jsonl line peak RSS: {peak:.0f} MB (baseline {baseline_mb:.0f} MB)")
    assert code == 1, output
    assert f"lines.jsonl:2: line is {len(huge)} bytes, over the limit of 7048576 bytes" in output
    assert peak < baseline_mb + MEMORY_HEADROOM_MB
    assert set(Document.objects.values_list("external_id", flat=True)) == {"before", "after"}


def test_a_file_over_the_limit_is_refused_before_reading(sink, tmp_path, settings):
    settings.EMBEDPORTAL_MAX_DOCUMENT_CHARS = 10
    (tmp_path / "big.txt").write_text("z" * 41)
    (tmp_path / "fits.txt").write_text("é" * 10)  # 20 bytes, 10 characters
    with pytest.raises(CommandError, match=r"1 document\(s\) rejected .* the 1 others were enqueued"):
        enqueue_cmd(tmp_path, base=tmp_path)
    assert "big.txt: file is 41 bytes, over the limit of 40 bytes" in enqueue_cmd.last[1]
    assert Document.objects.get().external_id == "fits.txt"


# -- named paths are never silently dropped; every skip is reported ----------------------------


def test_a_named_file_inside_a_dot_folder_is_enqueued(sink, tmp_path):
    hidden = tmp_path / ".venv" / "lib" / "notes.md"
    hidden.parent.mkdir(parents=True)
    hidden.write_text("Named explicitly, so read although its folder is hidden.")
    out, _ = enqueue_cmd(hidden, base=tmp_path)
    assert "1 new" in out
    assert Document.objects.get().external_id == ".venv/lib/notes.md"


def test_a_named_dot_folder_is_walked_but_hidden_entries_inside_it_are_skipped_and_counted(sink, tmp_path):
    root = tmp_path / ".local"
    (root / "share" / ".cache").mkdir(parents=True)
    (root / "share" / "doc.txt").write_text("Inside a folder the user named.")
    (root / "share" / ".cache" / "x.txt").write_text("Hidden below the named folder.")
    (root / ".hidden.txt").write_text("A hidden file below the named folder.")
    out, _ = enqueue_cmd(root, base=tmp_path)
    assert "1 new" in out
    assert "Skipped 2 while walking folders and globs: 2 hidden." in out
    assert Document.objects.get().external_id == ".local/share/doc.txt"


def test_a_named_folder_given_where_nothing_is_readable_is_reported_not_silent(sink, tmp_path):
    root = tmp_path / "only-hidden"
    (root / ".git").mkdir(parents=True)
    (root / ".git" / "config").write_text("[core]\n")
    out, _ = enqueue_cmd(root, base=tmp_path)
    assert "0 new" in out and "Skipped 1 while walking folders and globs: 1 hidden." in out


def test_a_symlinked_folder_is_not_followed_and_is_reported(sink, tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (real / "a.txt").write_text("Reached through its real path only.")
    walked = tmp_path / "walked"
    walked.mkdir()
    (walked / "link").symlink_to(real, target_is_directory=True)
    out, _ = enqueue_cmd(walked, base=tmp_path)
    assert "0 new" in out and "1 symlinked folder (not followed)" in out


# -- API bodies ---------------------------------------------------------------------------------


@pytest.fixture
def writer_client(db, client, django_user_model):
    from django.contrib.auth.models import Permission

    user = django_user_model.objects.create_user("writer", password="pw")
    user.user_permissions.add(*Permission.objects.filter(codename__in=["add_document", "access_all_collections"]))
    client.force_login(user)
    return client


def test_an_api_body_over_the_limit_is_a_413_in_the_api_error_shape_before_it_is_read(writer_client, sink, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    body = json.dumps({"id": "big", "text": "w" * 2000})
    response = writer_client.post("/api/v1/collections/sink/documents/", body, content_type="application/json")
    assert response.status_code == 413
    error = response.json()["error"]
    assert error["status"] == 413
    assert error["message"].startswith(f"request body is {len(body)} bytes, over the limit of 1000")
    assert not Document.objects.exists()

    small = json.dumps({"id": "small", "text": "fits"})
    assert (
        writer_client.post("/api/v1/collections/sink/documents/", small, content_type="application/json").status_code
        == 202
    )


def test_an_api_body_of_millions_of_tiny_values_is_refused_before_it_is_parsed(writer_client, sink):
    """60 MB of {},{},... (under the body limit) took a web worker to 5 GB: parsed, each 3-byte object
    is an 80-byte dict. Counted before parsing, it costs a few copies of the body at most."""
    body = "[" + ",".join(["{}"] * (8 << 20)) + "]"  # 24 MB
    tracemalloc.start()
    try:
        response = writer_client.post("/api/v1/collections/sink/documents/", body, content_type="application/json")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    message = response.json()["error"]["message"]
    assert response.status_code == 400, message
    assert message == (
        "JSON holds about 16777216 values, over the limit of 1000000 (EMBEDPORTAL_MAX_JSON_VALUES); "
        "send fewer documents or smaller metadata at once"
    )
    assert peak < 6 * len(body), f"peak {peak >> 20} MB for a body of {len(body) >> 20} MB"
    assert not Document.objects.exists()


def test_a_chunked_api_body_without_a_length_is_refused_not_read_as_empty(writer_client, sink):
    body = json.dumps({"id": "chunked", "text": "sent without Content-Length"})
    response = writer_client.post(
        "/api/v1/collections/sink/documents/",
        body,
        content_type="application/json",
        CONTENT_LENGTH="",
        HTTP_TRANSFER_ENCODING="chunked",
    )
    assert response.status_code == 411
    assert "Content-Length" in response.json()["error"]["message"]
    assert not Document.objects.exists()


def test_an_admin_post_over_the_limit_is_refused_before_it_is_read(admin_client, sink, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = admin_client.post(
        "/admin/pipeline/document/add/",
        {"collection": str(sink.pk), "external_id": "big", "text": "a" * 5000, "metadata": "{}"},
    )
    assert response.status_code == 413
    assert b"over the limit of 1000" in response.content
    assert not Document.objects.exists()
