"""Operator commands on one finished job: jobs, joblog, logs, report, status --watch, config.

The job is run once per module by an in-process worker: tasks that succeed, one that fails
once then succeeds, one that always fails, one that always times out, and one whose first
claim belongs to a worker that vanished (a lost attempt, then a duplicate run).
"""

from __future__ import annotations

import io
import itertools
import json
import os
import platform
import re
import shutil
import struct
import subprocess
import time
import zlib
from pathlib import Path

import pytest
from click.testing import CliRunner

from drivemr.cli import main
from drivemr.config import SETTINGS
from drivemr.progress import follow
from drivemr.protocol import Job, claim_name, submit
from drivemr.report import COLOURS, collect, lanes, summarize
from drivemr.spec import load_job
from drivemr.stores.folder import FolderStore
from drivemr.trust import Trust, claim_body
from drivemr.worker import Worker, WorkerConfig

REPO = Path(__file__).resolve().parents[2]

TASK = """
import os, sys, time
item = sys.argv[1]
attempt = int(os.environ["DRIVEMR_ATTEMPT"])
print(f"{item} attempt {attempt} says hello")
if item == "flaky" and attempt == 1:
    print("flaky attempt 1 fails", file=sys.stderr)
    sys.exit(4)
if item == "bad":
    print(f"boom attempt {attempt}", file=sys.stderr)
    sys.exit(3)
if item == "slow":
    time.sleep(60)
time.sleep(0.1)
open("out.txt", "w").write(item)
"""

JOB = """
name = "mix"
files = ["task.py"]
[map]
command = ["python", "{files}/task.py", "{item}"]
items = ["ok0", "ok1", "ok2", "flaky", "bad", "slow"]
outputs = ["out.txt"]
timeout = "1.5s"
max_attempts = 2
"""
# t0000 ok0 (lost, then done), t0001 ok1, t0002 ok2, t0003 flaky, t0004 bad, t0005 slow


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[FolderStore, Job]:
    base = tmp_path_factory.mktemp("ops")
    store = FolderStore(base / "store", create=True)
    folder = base / "job"
    folder.mkdir()
    (folder / "task.py").write_text(TASK, encoding="utf-8")
    (folder / "job.toml").write_text(JOB, encoding="utf-8")
    job = submit(store, load_job(folder / "job.toml"))
    # Module-scoped: set up before the per-test config dir, so use the same one (its
    # keys seal the results the tests then read).
    config_dir = tmp_path_factory.getbasetemp() / "config"
    config_dir.mkdir(exist_ok=True, mode=0o700)
    # A claim by a worker that vanished without a heartbeat: its lease has long expired.
    first = job.tasks[0]
    body = claim_body(job.id, first.id, 0, "ghost", life="gone", nonce="n")
    ghost = store.create(
        job.folders["claims"],
        claim_name(first.id, 0),
        first.claim_ids[0],
        Trust.for_this_pc(config_dir).seal("claim", body),
    )
    then = time.time() - 5
    os.utime(store.path / store._rel(ghost.id), (then, then))
    config = WorkerConfig(
        worker_id="w1",
        slots=2,
        workdir=base / "work",
        lease=3.0,
        poll_interval=0.05,
        retry_backoff=0.01,
        exit_when_idle=True,
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DRIVEMR_CONFIG_DIR", str(config_dir))
        assert Worker(store, config).run() == 0
    return store, job


def test_collect_rebuilds_every_attempt(finished: tuple[FolderStore, Job]) -> None:
    store, job = finished
    record = collect(store, job.id)
    outcomes = {(a.task, a.attempt): a.outcome for a in record.attempts}
    assert outcomes == {
        ("t0000", 1): "lost",
        ("t0000", 2): "done",
        ("t0001", 1): "done",
        ("t0002", 1): "done",
        ("t0003", 1): "failed",
        ("t0003", 2): "done",
        ("t0004", 1): "failed",
        ("t0004", 2): "failed",
        ("t0005", 1): "timed out",
        ("t0005", 2): "timed out",
    }
    lost = record.of("t0000")[0]
    assert lost.worker == "ghost" and lost.start is not None and lost.end is not None
    s = summarize(record)
    assert (s["tasks"], s["done"], s["failed"], s["attempts"]) == (6, 4, 2, 10)
    assert (s["retries"], s["duplicates"], s["lost"]) == (3, 1, 1)
    assert s["attempt_seconds"] > 3.0  # two timeouts of 1.5 s each, at least
    assert "cpu_seconds" not in s  # it is summed wall time, and named so
    assert s["wall_seconds"] > 0 and s["speedup"] is not None
    # w1 ran two slots: greedy packing needs exactly two lanes for it (and one for the ghost).
    rows = lanes(record)
    assert sorted((w, i) for w, i, _ in rows) == [("ghost", 0), ("w1", 0), ("w1", 1)]
    for _w, _i, lane in rows:
        for a, b in itertools.pairwise(lane):
            assert a.end is not None and b.start is not None and a.end <= b.start + 1e-6


def test_jobs_newest_first_with_counts(finished: tuple[FolderStore, Job], tmp_path: Path) -> None:
    store, job = finished
    (tmp_path / "job.toml").write_text(
        'name = "later"\n[map]\ncommand = ["python", "-c", "pass"]\nitems = ["a"]\n'
    )
    later = submit(store, load_job(tmp_path / "job.toml"))
    try:
        code, out, _ = invoke("jobs", "--store", str(store.path), "--json")
        assert code == 0
        docs = json.loads(out)
        assert [d["job"] for d in docs] == [later.id, job.id]
        assert docs[0]["state"] == "pending" and docs[0]["total"] == 1
        assert docs[1]["state"] == "failed"
        assert docs[1]["counts"] == {
            "pending": 0,
            "running": 0,
            "done": 4,
            "failed": 2,
            "lost": 0,
            "cancelled": 0,
            "blocked": 0,
        }
        code, out, _ = invoke("jobs", "--store", str(store.path))
        lines = out.splitlines()
        assert lines[0].startswith("JOB") and "SUBMITTED" in lines[0]
        assert lines[1].startswith(later.id) and lines[2].startswith(job.id)
        assert re.search(r"failed\s+4\s+0\s+2\s+0\s+6", lines[2])
    finally:
        store.delete(later.folder)


def test_joblog_is_a_tsv_row_per_task(finished: tuple[FolderStore, Job]) -> None:
    store, job = finished
    code, out, err = invoke("joblog", job.id, "--store", str(store.path))
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split("\t") == [
        "Task", "Host", "Worker", "Starttime", "JobRuntime", "Exitval", "Signal", "Attempts",
        "Command",
    ]  # fmt: skip
    rows = {r[0]: r for r in (line.split("\t") for line in lines[1:])}
    assert sorted(rows) == [t.id for t in job.tasks]
    assert all(len(r) == 9 for r in rows.values())
    ok = rows["t0001"]
    # Host is the PC's host name (equal for workers on one PC); Worker tells them apart.
    assert ok[1] == platform.node() and ok[2]
    assert float(ok[3]) > 1e9 and float(ok[4]) > 0
    assert ok[5:8] == ["0", "0", "1"] and ok[8] == "python '{files}/task.py' ok1"
    assert rows["t0000"][5:8] == ["0", "0", "2"]  # lost once, then done
    assert rows["t0004"][5:8] == ["3", "0", "2"]  # always exit 3
    assert rows["t0005"][5:8] == ["-1", "9", "2"]  # timed out: killed
    assert float(rows["t0005"][4]) >= 1.4


def test_logs_of_a_failed_attempt(finished: tuple[FolderStore, Job]) -> None:
    store, job = finished
    s = str(store.path)
    code, out, _ = invoke("logs", job.id, "t0004", "--attempt", "1", "--store", s)
    assert code == 0
    assert "t0004 attempt 1 of 2: failed (exit code 3)" in out
    assert "bad attempt 1 says hello" in out and "boom attempt 1" in out
    assert "boom attempt 2" not in out
    code, out, _ = invoke("logs", job.id, "t0004", "--store", s)  # default: the latest
    assert "attempt 2 of 2" in out and "boom attempt 2" in out
    code, out, _ = invoke("logs", job.id, "t0004", "--only", "stderr", "--store", s)
    assert out == "boom attempt 2\n"
    code, out, _ = invoke("logs", job.id, "t0005", "--attempt", "1", "--store", s)
    assert "timed out" in out
    code, out, _ = invoke("logs", job.id, "t0000", "--attempt", "1", "--store", s)
    assert "lost" in out and "ghost" in out
    # --follow on a finished task prints every attempt and returns.
    code, out, _ = invoke("logs", job.id, "t0003", "--follow", "--store", s)
    assert code == 0 and "flaky attempt 1 fails" in out and "t0003 attempt 2: done" in out
    # Without a task: an index of every attempt.
    code, out, _ = invoke("logs", job.id, "--store", s)
    assert code == 0 and len(out.splitlines()) == 1 + 10 + 1
    assert re.search(r"t0005\s+2 timed out", out) or re.search(r"t0005\s+2 failed", out)
    code, _, err = invoke("logs", job.id, "t0004", "--attempt", "3", "--store", s)
    assert code == 1 and "2 attempt(s)" in err
    code, _, err = invoke("logs", job.id, "t9999", "--store", s)
    assert code == 1 and "no task" in err
    code, _, _ = invoke("logs", job.id, "--follow", "--store", s)
    assert code == 2


def test_report_html(finished: tuple[FolderStore, Job], tmp_path: Path) -> None:
    store, job = finished
    page = tmp_path / "report.html"
    code, out, err = invoke("report", job.id, "--html", str(page), "--store", str(store.path))
    assert code == 0, err
    assert out.strip() == str(page) and "3 retries, 1 duplicates" in err
    text = page.read_text(encoding="utf-8")
    assert text.count("<svg") == 1
    bars = re.findall(r'<rect class="attempt ([a-z-]+)"[^>]*>\s*<title>([^<]*)</title>', text)
    assert len(bars) == 10 == text.count('<rect class="attempt ')
    kinds = sorted(k for k, _ in bars)
    assert kinds == ["done"] * 4 + ["failed"] * 3 + ["lost"] + ["timed-out"] * 2
    assert f'fill="{COLOURS["done"]}"' in text
    tips = [t for _, t in bars]
    assert any(
        "t0004  attempt 2: failed" in t and "exit code 3" in t and "worker w1" in t for t in tips
    )
    summary = json.loads(re.search(r'id="summary">(.*?)</script>', text, re.S).group(1))  # type: ignore[union-attr]
    assert summary["tasks"] == 6 and summary["failed"] == 2
    assert summary["retries"] == 3 and summary["duplicates"] == 1
    assert '<b data-key="retries">3</b>' in text and '<b data-key="tasks">6</b>' in text
    assert "CPU" not in text and "attempt time (wall time of every attempt, summed)" in text
    # Self-contained: nothing to fetch.
    assert not re.search(r"""(src|href)\s*=\s*["']?https?:""", text)
    assert "<link" not in text and "@import" not in text
    assert set(re.findall(r"https?://[^\s\"'<>]+", text)) <= {"http://www.w3.org/2000/svg"}


def test_status_watch_on_a_failed_job(finished: tuple[FolderStore, Job]) -> None:
    store, job = finished
    code, out, _ = invoke("status", job.id, "--watch", "--store", str(store.path))
    assert code == 1
    assert "4/6 done, 0 running, 2 failed, 0 pending" in out
    # Why each failed, sorted by task (issue 18 point 11).
    assert f"job {job.id} failed: 2 of 6 task(s) failed\n" in out
    assert "\n  t0004    exit code 3  (bad)\n  t0005    timed out after 1.5 s  (slow)\n" in out
    assert f"drivemr logs {job.id} t0004" in out
    code, _, err = invoke("status", "--watch", "--store", str(store.path))
    assert code == 2 and "--watch" in err


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_follow_draws_a_bar_on_a_terminal(finished: tuple[FolderStore, Job]) -> None:
    store, job = finished
    out = _Terminal()
    assert follow(store, job.id, poll=0.01, out=out) == 1
    text = out.getvalue()
    assert "━" in text and "6/6" in text  # rich's bar and its M/N column
    assert "t0004" in text and "drivemr logs" in text
    plain = io.StringIO()
    assert follow(store, job.id, poll=0.01, out=plain) == 1
    assert "━" not in plain.getvalue() and "\x1b[" not in plain.getvalue()


def test_config_show_effective_values_and_sources(
    isolated_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DRIVEMR_SLOTS", "3")
    monkeypatch.delenv("DRIVEMR_LOG_LEVEL", raising=False)
    monkeypatch.delenv("DRIVEMR_POLL_INTERVAL", raising=False)
    config_file = isolated_config / "config.toml"
    config_file.write_text("lease = 60\nslots = 8\n", encoding="utf-8")
    try:
        code, out, _ = invoke("config", "show", "--json")
        assert code == 0
        doc = json.loads(out)
        assert doc["config_file"] == str(config_file) and doc["config_file_exists"]
        settings = doc["settings"]
        assert set(settings) == set(SETTINGS)
        assert settings["slots"] == {
            "value": 3, "source": "environment", "env": "DRIVEMR_SLOTS",
            "default": 0, "auto": None, "help": SETTINGS["slots"].help,
        }  # fmt: skip
        assert (settings["lease"]["value"], settings["lease"]["source"]) == (60.0, "config file")
        assert settings["poll_interval"]["source"] == "default"
        code, out, _ = invoke("config", "show")
        assert str(config_file) in out
        assert re.search(r"^slots\s+3\s+environment \(DRIVEMR_SLOTS\)$", out, re.M)
        assert re.search(r"^lease\s+60.0\s+config file$", out, re.M)
    finally:
        config_file.unlink()


def test_config_file_documents_every_setting() -> None:
    """config/drivemr.toml lists every setting, commented out, with its default."""
    import tomllib

    text = (REPO / "config" / "drivemr.toml").read_text(encoding="utf-8")
    assert tomllib.loads(text) == {}  # everything commented: copying it changes nothing
    lines = [m.group(1) for m in re.finditer(r"^# (\w+ = .*)$", text, re.M)]
    documented = tomllib.loads("\n".join(lines))
    assert documented == {name: s.default for name, s in SETTINGS.items()}
    assert "DRIVEMR_" in text and "flag" in text


def test_service_files() -> None:
    import plistlib

    service = REPO / "scripts" / "service"
    unit = (service / "drivemr-worker.service").read_text(encoding="utf-8")
    assert re.search(r"^ExecStart=@DRIVEMR@ worker$", unit, re.M)
    assert "WantedBy=default.target" in unit and "KillMode=mixed" in unit
    plist = plistlib.loads((service / "com.drivemr.worker.plist").read_bytes())
    assert plist["ProgramArguments"] == ["@DRIVEMR@", "worker"] and plist["RunAtLoad"]
    ps1 = (service / "install-windows-task.ps1").read_text(encoding="utf-8")
    assert "Register-ScheduledTask" in ps1 and "-AtLogOn" in ps1
    readme = (service / "README.md").read_text(encoding="utf-8")
    for needle in ("systemctl --user", "launchctl bootstrap", "install-windows-task.ps1"):
        assert needle in readme


# ---------------------------------------------------------------------------- Chromium


def decode_png(data: bytes) -> tuple[int, int, list[bytes], int]:
    """(width, height, rows, bytes per pixel) of an 8-bit RGB/RGBA PNG; enough for a check."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat = 8, b""
    width = height = depth = colour = interlace = 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, colour, _c, _f, interlace = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
    assert depth == 8 and colour in (2, 6) and interlace == 0, (depth, colour, interlace)
    bpp = 3 if colour == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows: list[bytes] = []
    prev = bytearray(stride)
    i = 0
    for _ in range(height):
        kind_ = raw[i]
        line = bytearray(raw[i + 1 : i + 1 + stride])
        i += 1 + stride
        if kind_ == 1:
            for x in range(bpp, stride):
                line[x] = (line[x] + line[x - bpp]) & 0xFF
        elif kind_ == 2:
            line = bytearray((a + b) & 0xFF for a, b in zip(line, prev, strict=True))
        elif kind_ == 3:
            for x in range(stride):
                left = line[x - bpp] if x >= bpp else 0
                line[x] = (line[x] + ((left + prev[x]) >> 1)) & 0xFF
        elif kind_ == 4:
            for x in range(stride):
                a = line[x - bpp] if x >= bpp else 0
                b = prev[x]
                c = prev[x - bpp] if x >= bpp else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[x] = (line[x] + pred) & 0xFF
        rows.append(bytes(line))
        prev = line
    return width, height, rows, bpp


def _hits(row: bytes, bpp: int, pattern: bytes) -> list[int]:
    """Pixel-aligned offsets of ``pattern`` in a row (Chromium fills SVG rects exactly)."""
    found, i = [], row.find(pattern)
    while i != -1:
        if i % bpp == 0:
            found.append(i)
        i = row.find(pattern, i + 1)
    return found


def count_colour(rows: list[bytes], bpp: int, rgb: tuple[int, int, int]) -> int:
    return sum(len(_hits(row, bpp, bytes(rgb))) for row in rows)


def bar_rows(rows: list[bytes], bpp: int, rgb: tuple[int, int, int], run: int = 16) -> int:
    """Rows holding a run of at least ``run`` pixels of the colour: a bar, not a 12 px swatch."""
    pixel = bytes(rgb) + (b"\xff" if bpp == 4 else b"")
    return sum(1 for row in rows if _hits(row, bpp, pixel * run))


def _rgb(hex_colour: str) -> tuple[int, int, int]:
    return (int(hex_colour[1:3], 16), int(hex_colour[3:5], 16), int(hex_colour[5:7], 16))


@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="needs /usr/bin/chromium")
def test_report_renders_in_headless_chromium(
    finished: tuple[FolderStore, Job], tmp_path: Path
) -> None:
    store, job = finished
    page = tmp_path / "report.html"
    code, _, err = invoke("report", job.id, "--html", str(page), "--store", str(store.path))
    assert code == 0, err
    png = tmp_path / "report.png"
    # A loaded machine can make headless Chromium shoot before the page is painted: give it
    # a virtual-time budget, and take up to three shots until one shows the bars.
    for _shot in range(3):
        png.unlink(missing_ok=True)
        proc = subprocess.run(
            [
                "/usr/bin/chromium",
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                f"--user-data-dir={tmp_path / 'profile'}",
                "--virtual-time-budget=5000",
                f"--screenshot={png}",
                "--window-size=1200,800",
                page.as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if png.exists():
            _w, _h, shot_rows, shot_bpp = decode_png(png.read_bytes())
            if bar_rows(shot_rows, shot_bpp, _rgb(COLOURS["done"]), run=6) >= 20:
                break
    assert png.exists(), proc.stderr[-2000:]
    keep = os.environ.get("DRIVEMR_KEEP_SCREENSHOT")
    if keep:
        shutil.copy(png, keep)
    data = png.read_bytes()
    assert len(data) > 10_000
    width, height, rows, bpp = decode_png(data)
    assert (width, height) == (1200, 800)
    # Bars are 16 px tall but may be narrow (short tasks on a long axis); the legend's
    # 12 px swatch covers 12 rows, so more than 16 rows of a colour means a bar was drawn.
    assert bar_rows(rows, bpp, _rgb(COLOURS["done"]), run=6) >= 20
    assert bar_rows(rows, bpp, _rgb(COLOURS["timed out"]), run=6) >= 20
    assert (
        count_colour(rows, bpp, _rgb(COLOURS["failed"])) > 50
    )  # a swatch, and bars as wide as their time


def test_suggested_commands_carry_the_store_flag(
    finished: tuple[FolderStore, Job], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 18 point 7: hints are copy-paste ready when the store came from --store."""
    store, job = finished
    flag = f"--store {store.url}"
    s = str(store.path)
    code, out, _ = invoke("status", job.id, "--store", s)
    assert code == 0 and f"(see: drivemr logs {job.id} TASK {flag})" in out
    code, out, _ = invoke("status", job.id, "--watch", "--store", s)
    assert code == 1 and f"see why: drivemr logs {job.id} t0004 {flag}" in out
    assert f"every task: drivemr status {job.id} {flag}" in out
    code, out, _ = invoke("logs", job.id, "--store", s)
    assert code == 0 and f"output of one: drivemr logs {job.id} TASK {flag} [--attempt N]" in out
    page = tmp_path / "r.html"
    invoke("report", job.id, "--html", str(page), "--store", s)
    assert f"drivemr logs {job.id} TASK {flag}" in page.read_text(encoding="utf-8")
    # A store from the environment (or the config file) needs no flag in the hint.
    monkeypatch.setenv("DRIVEMR_STORE", s)
    code, out, _ = invoke("status", job.id)
    assert code == 0 and f"(see: drivemr logs {job.id} TASK)" in out and "--store" not in out


def test_status_filters_and_the_input_column(finished: tuple[FolderStore, Job]) -> None:
    store, job = finished
    s = str(store.path)
    code, out, _ = invoke("status", job.id, "--failed", "--store", s)
    assert code == 0
    rows = [line.split() for line in out.splitlines() if line.startswith("  t0")]
    assert [(r[0], r[1], r[-2]) for r in rows] == [
        ("t0004", "failed", "bad"),
        ("t0005", "failed", "slow"),
    ]
    assert "(2 of 6 task(s) failed)" in out
    code, out, _ = invoke("status", job.id, "--state", "done", "--store", s, "--json")
    doc = json.loads(out)
    assert [(t["task"], t["item"]) for t in doc["tasks"]] == [
        ("t0000", "ok0"), ("t0001", "ok1"), ("t0002", "ok2"), ("t0003", "flaky")
    ]  # fmt: skip
    code, out, _ = invoke("status", job.id, "--store", s)
    assert re.search(r"^  task +state +tries +exit +secs +input +worker$", out, re.M)
    assert len([line for line in out.splitlines() if line.startswith("  t0")]) == 6
    code, _, err = invoke("status", "--failed", "--store", s)
    assert code == 2 and "one JOB" in err
    code, _, err = invoke("status", job.id, "--state", "nonsense", "--store", s)
    assert code == 2


def test_config_show_says_auto_for_computed_defaults(
    isolated_config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from drivemr.config import default_workdir

    for name in ("SLOTS", "WORKDIR", "POLL_INTERVAL"):
        monkeypatch.delenv(f"DRIVEMR_{name}", raising=False)
    code, out, _ = invoke("config", "show")
    assert code == 0
    assert f"default workdir: {default_workdir()}" in out
    assert re.search(rf"^slots\s+auto\s+default: one per CPU \({os.cpu_count()} here\)$", out, re.M)
    assert re.search(r"^workdir\s+auto\s+default: " + re.escape(str(default_workdir())), out, re.M)
    assert re.search(r"^poll_interval\s+auto\s+default: 0.5 s on folder", out, re.M)
    assert re.search(r"^lease\s+300.0\s+default$", out, re.M)
    monkeypatch.setenv("DRIVEMR_SLOTS", "3")
    doc = json.loads(invoke("config", "show", "--json")[1])
    assert doc["settings"]["slots"]["auto"] is None and doc["settings"]["workdir"]["auto"]
    assert doc["default_workdir"] == str(default_workdir())
