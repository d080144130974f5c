"""The plant's load run (docs/fleet.md, "Capacity"): one Mosquitto, one ``station collect`` and
one PostgreSQL on this machine, fed by simulated booths, each a real store (SQLite outbox) and
a real publisher thread, at ``--stations`` x ``--rate`` parts/s; then, step by step, more.

    python -m bench.fleet_load --stations 50 --rate 6 --seconds 60 --steps 1,2,4 \\
        --json bench/results/fleet-load.json

Per step it reports what the verdicts saw (rows/s reaching PostgreSQL, the latency from a
verdict's ``finished_at`` to its row's ``received_at``, the outbox backlog of all booths) and
what each server did, in their own figures: the broker's ``$SYS`` tree (messages and bytes
in and out per second, heap, clients, stored messages), PostgreSQL's statistics views
(transactions, rows inserted, WAL bytes, table and index size per row), and the CPU seconds
of each process (``/proc``) per verdict.

Everything runs on 127.0.0.1 (tests/servers.py starts the servers on free ports) and stops by
itself; each step is bounded by ``--seconds`` and a drain of at most ``--drain`` seconds.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.plant import ROOT as TOPIC_ROOT  # noqa: E402
from tests.plant import USERS, collector_yaml  # noqa: E402
from tests.servers import Listener, Mosquitto, Postgres, wait_for  # noqa: E402

CLK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK


def children(pid: int) -> list[int]:
    """``pid`` and every process below it."""
    out = [pid]
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            ppid = int((p / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError):
            continue
        if ppid == pid:
            out.extend(children(int(p.name)))
    return out


def templates(station: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Two realistic verdict headers of ``station``: a PASS without defects, and a FAIL with two
    defects whose outlines have 32 points (the ids and times are set per part)."""
    from station.messaging.wire import CameraOut, DefectOut, ModelOut, VerdictHeader

    out = []
    for fail in (False, True):
        defects = [DefectOut(camera="cam0", class_name="Crack", class_index=1, area_px=420,
                             area_mm2=4.2, box=(100, 200, 40, 30), centroid=(120.5, 215.0),
                             mean_score=0.81, max_score=0.97,
                             outline=[(100 + i, 200 + i % 7) for i in range(32)])
                   for _ in range(2)] if fail else []
        h = VerdictHeader(
            station=station, inspection_id="x", part_id="x", verdict="FAIL" if fail else "PASS",
            reasons=["Crack 420 px > 64 px"] if fail else [], started_at="x", finished_at="x",
            duration_ms=160.0, timings_ms={"acquire": 40.0, "pipeline": 110.0},
            model=ModelOut(model_id="default-2026-11", trained=True, operating_point="op-3f2a"),
            calibration_id="cal-2026-11-30", maps=[], map_downscale=4,
            cameras=[CameraOut(camera="cam0", frame_id=1, width=5472, height=3648,
                               defects=defects),
                     CameraOut(camera="cam1", frame_id=1, width=5472, height=3648)],
        )
        out.append(h.model_dump(by_alias=True, mode="json"))
    return out[0], out[1]


def header(station: str, n: int, rng: random.Random,
           made: tuple[dict[str, Any], dict[str, Any]]) -> dict[str, Any]:
    """Part ``n``'s verdict: 90 % PASS, 10 % FAIL (``made``: the two templates)."""
    now = time.time()
    iso = (time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now))
           + f".{int(now % 1 * 1000):03d}+00:00")
    h = dict(made[1] if rng.random() < 0.1 else made[0])
    h["inspection_id"] = f"{station}-{n:08d}-{rng.getrandbits(16):04x}"
    h["part_id"] = f"{station}-P{n}"
    h["started_at"] = h["finished_at"] = iso
    return h


def booths(index: int, names: list[str], port: int, folder: str, rate: mp.Value,
           stop: Any, backlog: Any, recorded: Any, cpu: Any) -> None:
    """One simulator process: a store and a publisher per booth, verdicts recorded at
    ``rate`` parts/s per booth (changed between steps by the parent)."""
    from config import load_config
    from station.logs import setup_logging
    from station.plant.publisher import Publisher
    from station.store import Store

    setup_logging("warning", "console")
    pw = Path(folder) / "station.password"
    running = []
    for name in names:
        cfg = load_config("default", [
            f"name={name}", "mqtt.enabled=true", f"mqtt.port={port}", "mqtt.username=station",
            f"mqtt.password_file={pw}", f"mqtt.topic_root={TOPIC_ROOT}/{{station}}",
            "mqtt.retry_first_s=0.2", "mqtt.retry_max_s=2", "mqtt.max_inflight=100",
        ], env={})
        store = Store(Path(folder) / name, outbox=True)
        pub = Publisher(cfg, store, store.data_dir)
        pub.start()
        running.append((name, store, pub, templates(name)))
    rng = random.Random(index)
    n = 0
    next_t = time.monotonic()
    last_report = 0.0
    while not stop.is_set():
        r = rate.value
        if r <= 0:
            time.sleep(0.05)
            next_t = time.monotonic()
            continue
        for name, store, _, made in running:  # one part at each booth per round
            store.record(header(name, n, rng, made), {})
        n += 1
        recorded[index] = n * len(running)
        next_t += 1.0 / r
        now = time.monotonic()
        if now - last_report > 0.5:
            backlog[index] = sum(r[1].backlog() for r in running)
            cpu[index] = cpu_s(os.getpid())
            last_report = now
        if next_t > now:
            time.sleep(next_t - now)
    for r in running:
        r[2].stop()
    backlog[index] = sum(r[1].backlog() for r in running)
    for r in running:
        r[1].close()


class SysWatch:
    """The broker's own figures: its $SYS tree, latest value per topic."""

    def __init__(self, port: int) -> None:
        self.listener = Listener(port, "collector", USERS["collector"], ["$SYS/#"])

    def values(self) -> dict[str, str]:
        with self.listener._lock:
            return {t.removeprefix("$SYS/broker/"): p.decode(errors="replace")
                    for t, p, _ in self.listener.messages}


def pg_stats(monitor: Any) -> dict[str, float]:
    """PostgreSQL's own counters (cumulative) for the database ``plant``, read from another
    database (``postgres``) so that reading them adds no transaction to ``plant``'s."""
    db = monitor.execute(
        "SELECT xact_commit, tup_inserted, blks_read, blks_hit, blk_write_time "
        "FROM pg_stat_database WHERE datname = 'plant'").fetchone()
    wal = monitor.execute("SELECT wal_records, wal_bytes, wal_write, wal_sync, "
                          "wal_write_time, wal_sync_time FROM pg_stat_wal").fetchone()
    assert db and wal
    names = ("xact_commit", "tup_inserted", "blks_read", "blks_hit", "blk_write_time_ms",
             "wal_records", "wal_bytes", "wal_write", "wal_sync", "wal_write_time_ms",
             "wal_sync_time_ms")
    return dict(zip(names, [float(v) for v in (*db, *wal)], strict=True))


def table_figures(dsn: str) -> dict[str, float]:
    """Rows and bytes of the verdict table (queried in ``plant``: at a step's ends only)."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        size = conn.execute(
            "SELECT pg_total_relation_size('inspection_verdicts'), "
            "pg_relation_size('inspection_verdicts'), "
            "(SELECT count(*) FROM inspection_verdicts)").fetchone()
    assert size
    return dict(zip(("total_bytes", "heap_bytes", "rows"), [float(v) for v in size],
                    strict=True))


def latency(dsn: str, since_row: int) -> dict[str, float]:
    """Seconds from finished_at to received_at of the rows after ``since_row``."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            "SELECT percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP (ORDER BY d), max(d), "
            "count(*) FROM (SELECT extract(epoch FROM received_at - finished_at) AS d "
            "FROM inspection_verdicts WHERE received_order > %s) x", (since_row,)).fetchone()
    assert row
    p, mx, n = row
    if not n:
        return {"n": 0}
    return {"p50_s": round(float(p[0]), 3), "p95_s": round(float(p[1]), 3),
            "p99_s": round(float(p[2]), 3), "max_s": round(float(mx), 3), "n": int(n)}


def max_order(dsn: str) -> int:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT COALESCE(max(received_order), 0) FROM inspection_verdicts"
                           ).fetchone()
    return int(row[0]) if row else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--stations", type=int, default=50, help="simulated booths")
    ap.add_argument("--rate", type=float, default=6.0, help="parts/s per booth at step 1")
    ap.add_argument("--steps", default="1,2,4", help="rate multipliers, one step each")
    ap.add_argument("--seconds", type=float, default=60.0, help="length of each step [s]")
    ap.add_argument("--drain", type=float, default=60.0, help="most wait for a backlog [s]")
    ap.add_argument("--procs", type=int, default=5, help="simulator processes")
    ap.add_argument("--fsync", action=argparse.BooleanOptionalAction, default=True,
                    help="PostgreSQL with fsync (as in a plant)")
    ap.add_argument("--json", type=Path, help="write the figures here")
    args = ap.parse_args()

    import psycopg

    work = Path(tempfile.mkdtemp(prefix="fleet-load-"))
    broker = Mosquitto(work / "broker", USERS)
    broker.conf.write_text(broker.conf.read_text() + "sys_interval 1\n")
    broker.start()
    pg = Postgres(fsync=args.fsync)
    pg.start()
    monitor = psycopg.connect(pg.dsn, autocommit=True)
    monitor.execute("CREATE DATABASE plant")
    plant = pg.dsn.rsplit("/", 1)[0] + "/plant"
    (work / "station.password").write_text(USERS["station"] + "\n")
    col_cfg = collector_yaml(work / "collector", broker.port, plant)
    col_log = (work / "collector.log").open("wb")
    collector = subprocess.Popen([sys.executable, "-m", "station.cli", "collect", "--config",
                                  str(col_cfg)], stdout=col_log, stderr=subprocess.STDOUT,
                                 env={**os.environ, "PYTHONPATH": str(ROOT)})
    wait_for(lambda: b"collector connected" in (work / "collector.log").read_bytes(), 60,
             "the collector")
    sys_watch = SysWatch(broker.port)
    counter = psycopg.connect(plant, autocommit=True)  # its statements: subtracted below
    own = [0]

    def rows_now() -> int:
        own[0] += 1
        try:
            row = counter.execute("SELECT count(*) FROM inspection_verdicts").fetchone()
        except psycopg.errors.UndefinedTable:
            return 0
        return int(row[0]) if row else 0

    postmaster = int((pg.data / "postmaster.pid").read_text().split()[0])

    names = [f"booth-{i:03d}" for i in range(args.stations)]
    groups = [names[i::args.procs] for i in range(args.procs)]
    ctx = mp.get_context("spawn")
    rate = ctx.Value("d", 0.0)
    stop = ctx.Event()
    backlog = ctx.Array("q", args.procs)
    recorded = ctx.Array("q", args.procs)
    sim_cpu = ctx.Array("d", args.procs)
    procs = [ctx.Process(target=booths, args=(i, g, broker.port, str(work), rate, stop,
                                              backlog, recorded, sim_cpu))
             for i, g in enumerate(groups)]
    for p in procs:
        p.start()
    time.sleep(10)  # every publisher connected

    def cpu_now() -> dict[str, float]:
        return {"broker": cpu_s(broker.proc.pid),  # type: ignore[union-attr]
                "collector": cpu_s(collector.pid),
                "postgres": sum(cpu_s(q) for q in children(postmaster)),
                "booths (simulator)": sum(sim_cpu)}

    steps = []
    try:
        for mult in [float(m) for m in args.steps.split(",")]:
            target = args.stations * args.rate * mult
            table0 = table_figures(plant) if steps else {"rows": 0.0, "total_bytes": 0.0,
                                                          "heap_bytes": 0.0}
            stats0, sys0, cpu0 = pg_stats(monitor), sys_watch.values(), cpu_now()
            own0, rows0 = own[0], rows_now()
            rec0 = sum(recorded)
            since = max_order(plant) if steps else 0
            t0 = time.monotonic()
            rate.value = args.rate * mult
            samples = []
            while time.monotonic() - t0 < args.seconds:
                time.sleep(1.0)
                samples.append({"t": round(time.monotonic() - t0, 1), "backlog": sum(backlog),
                                "rows": rows_now() - rows0})
            rate.value = 0.0
            elapsed = time.monotonic() - t0
            made = sum(recorded) - rec0
            in_time = samples[-1]["rows"] if samples else 0
            drain_t0 = time.monotonic()
            while time.monotonic() - drain_t0 < args.drain and rows_now() - rows0 < made:
                time.sleep(0.2)
            drained_s = time.monotonic() - drain_t0
            cpu1 = cpu_now()
            time.sleep(11)  # an idle backend flushes its statistics after 10 s
            stats1, sys1 = pg_stats(monitor), sys_watch.values()
            own_commits = own[0] - own0
            table1 = table_figures(plant)
            rows = table1["rows"] - table0["rows"]
            window = elapsed + drained_s
            cpu = {k: round(cpu1[k] - cpu0[k], 2) for k in cpu1}
            step = {
                "multiplier": mult, "target_per_s": target,
                "recorded": made, "recorded_per_s": round(made / elapsed, 1),
                "rows_written": int(rows),
                "rows_per_s_during_step": round(in_time / elapsed, 1),
                "drain_s": round(drained_s, 1), "all_arrived": rows >= made,
                "max_backlog_all_booths": max((x["backlog"] for x in samples), default=0),
                "latency_finished_to_row": latency(plant, since),
                "cpu_s": cpu,
                "cpu_ms_per_verdict": {k: round(v / max(rows, 1) * 1000, 3)
                                       for k, v in cpu.items()},
                "cpu_share_of_one_core": {k: round(v / window, 3) for k, v in cpu.items()},
                "postgres": {
                    "collector_commits": stats1["xact_commit"] - stats0["xact_commit"]
                    - own_commits,
                    "rows_inserted": stats1["tup_inserted"] - stats0["tup_inserted"],
                    "rows_per_commit": round((stats1["tup_inserted"] - stats0["tup_inserted"])
                                             / max(1.0, stats1["xact_commit"]
                                                   - stats0["xact_commit"] - own_commits), 1),
                    "wal_bytes_per_row": round((stats1["wal_bytes"] - stats0["wal_bytes"])
                                               / max(rows, 1)),
                    "wal_syncs": stats1["wal_sync"] - stats0["wal_sync"],
                    "wal_sync_ms_per_sync": round(
                        (stats1["wal_sync_time_ms"] - stats0["wal_sync_time_ms"])
                        / max(1.0, stats1["wal_sync"] - stats0["wal_sync"]), 3),
                    "table_and_index_bytes_per_row": round(
                        (table1["total_bytes"] - table0["total_bytes"]) / max(rows, 1)),
                },
                "broker_sys_at_end": {k: sys1.get(k) for k in (
                    "load/messages/received/1min", "load/messages/sent/1min",
                    "load/bytes/received/1min", "load/bytes/sent/1min", "heap/current",
                    "heap/maximum", "clients/connected", "store/messages/count",
                    "store/messages/bytes")},
                "broker_messages_in_step": {
                    "received": _delta(sys0, sys1, "messages/received"),
                    "sent": _delta(sys0, sys1, "messages/sent"),
                    "publish_bytes_received": _delta(sys0, sys1, "publish/bytes/received"),
                },
                "samples": samples,
            }
            steps.append(step)
            print(json.dumps({k: v for k, v in step.items() if k != "samples"}, indent=1,
                             default=str), flush=True)
    finally:
        stop.set()
        for p in procs:
            p.join(30)
        collector.send_signal(signal.SIGTERM)
        collector.wait(30)
        sys_watch.listener.close()
        counter.close()
        monitor.close()
        broker.stop()
        pg.remove()

    result = {
        "environment": {"machine": platform.machine(), "cpus": os.cpu_count(),
                        "loadavg_end": os.getloadavg(), "python": platform.python_version(),
                        "mosquitto": "2.0.11 (Debian)", "postgresql": "15 (Debian)",
                        "postgresql_fsync": args.fsync,
                        "note": "2 cores shared with other work; the simulated booths run on "
                                "the same machine as the broker, collector and database"},
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "steps": steps,
    }
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, default=str))
    shutil.rmtree(work, ignore_errors=True)
    return 0


def _delta(before: dict[str, str], after: dict[str, str], key: str) -> float | None:
    try:
        return float(after[key]) - float(before[key])
    except (KeyError, ValueError):
        return None


if __name__ == "__main__":
    sys.exit(main())
