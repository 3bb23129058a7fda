"""Write ``nezha_tiny/``: a few pods in the Nezha recording layout, small enough to commit.

    .venv/bin/python tests/resources/make_nezha_tiny.py

Two days, each reproducing a quirk of the real recordings:

* ``2024-05-01`` (Online Boutique style): three pods, 160 one-minute samples, two obvious faults
  (frontend CPU at 00:20:30, cartservice latency at 00:40:30, 4 minutes each) and quiet time after
  them to train on; checkoutservice's ``TimeStamp`` is corrupted like adservice's on 2022-08-22;
  JSON logs (``"severity": "INFO"`` / ``"severity":"error"``) and plain lines without a
  level; a call graph mixing service edges with node IPs and the load generator; non-pod files.
* ``2024-05-02`` (Train Ticket style): two pods, 30 samples (too few to train on), plain log
  lines (``INFO``/``WARN``/``ERROR`` after a time of day), a line spliced into another, a
  sentinel ``TimeUnixNano``; no call graph; a fault whose ``inject_timestamp`` is 8 hours early.

gzip is written with a fixed mtime so re-running gives identical bytes.
"""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent / "nezha_tiny" / "rca_data"
COLUMNS = (
    "CpuUsage(m)",
    "CpuUsageRate(%)",
    "MemoryUsage(Mi)",
    "MemoryUsageRate(%)",
    "SyscallRead",
    "SyscallWrite",
    "NetworkReceiveBytes",
    "NetworkTransmitBytes",
    "PodClientLatencyP90(s)",
    "PodServerLatencyP90(s)",
    "PodClientLatencyP95(s)",
    "PodServerLatencyP95(s)",
    "PodClientLatencyP99(s)",
    "PodServerLatencyP99(s)",
    "PodWorkload(Ops)",
    "PodSuccessRate(%)",
    "NodeCpuUsageRate(%)",
    "NodeMemoryUsageRate(%)",
    "NodeNetworkReceiveBytes",
)


def write_gz(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as handle:
        handle.write(text.encode("utf-8"))
    path.write_bytes(buffer.getvalue())


def metric_table(pod: str, start: str, n: int, seed: int) -> pd.DataFrame:
    """Noisy, mildly periodic samples ~19 s past each minute, like the originals."""
    rng = np.random.default_rng(seed)
    times = pd.date_range(start, periods=n, freq="1min", tz="UTC") + pd.to_timedelta(
        19.6 + rng.uniform(-0.3, 0.3, n), unit="s"
    )
    wave = 1.0 + 0.1 * np.sin(np.arange(n) * 2 * np.pi / 30)
    table = pd.DataFrame({c: np.round(wave * rng.uniform(1, 5), 4) for c in COLUMNS})
    table["CpuUsageRate(%)"] = np.round(20 * wave + rng.normal(0, 1, n), 4)
    table["PodServerLatencyP90(s)"] = np.round(0.02 * wave + rng.normal(0, 0.001, n), 5)
    table["PodSuccessRate(%)"] = 0
    text = times.strftime("%Y-%m-%d %H:%M:%S.%f").str.cat(
        [f"{rng.integers(100, 999)} +0000 UTC m=+{60.0 * i:.6f}" for i in range(n)]
    )
    table.insert(0, "PodName", pod)
    table.insert(0, "TimeStamp", (times.asi8 // 1_000_000_000).astype(np.int64))
    table.insert(0, "Time", text)
    return table


def shift(table: pd.DataFrame, column: str, start: int, steps: int, value: float) -> None:
    table.loc[start : start + steps - 1, column] = value


def online_boutique_day() -> None:
    day = ROOT / "2024-05-01"
    pods = {
        "frontend": "frontend-579b9bff58-t2dbm",
        "cartservice": "cartservice-579f59597d-wc2lz",
        "checkoutservice": "checkoutservice-578fcf4766-9csqn",
    }
    tables = {
        s: metric_table(p, "2024-05-01 00:00", 160, i) for i, (s, p) in enumerate(pods.items())
    }
    shift(tables["frontend"], "CpuUsageRate(%)", 21, 4, 95.0)
    shift(tables["cartservice"], "PodServerLatencyP90(s)", 41, 4, 2.5)
    # Like adservice on 2022-08-22: TimeStamp is not the epoch of Time.
    tables["checkoutservice"]["TimeStamp"] += 200_000_000
    for service, table in tables.items():
        write_gz(day / "metric" / f"{pods[service]}_metric.csv.gz", table.to_csv(index=False))
    write_gz(
        day / "metric" / "dependency.csv.gz",
        "Source,Target,Weight\nfrontend,cartservice,1\nfrontend,checkoutservice,1\n"
        "checkoutservice,cartservice,1\nfrontend,33.33.33.167,1\nloadgenerator,frontend,1\n",
    )
    write_gz(
        day / "metric" / "front_service.csv.gz",
        "Time,TimeStamp,ServiceName,SuccessRate(%),LatencyP50(s)\n"
        "2024-05-01 00:00:19.5 +0000 UTC m=+0.1,1714521619,Frontend,100,0.2\n",
    )
    for name, table in edge_latency_tables("2024-05-01 00:00", 160, cart_delay=(41, 4)).items():
        write_gz(day / "metric" / f"{name}.csv.gz", table.to_csv(index=False))
    inner = [
        ("frontend", '{"severity":"info","message":"GET /"}'),
        ("checkoutservice", '{"message":"PlaceOrder","severity":"error","timestamp":"x"}'),
        ("cartservice", "GetCartAsync called with userId=1"),
        ("frontend", '{"timestamp": "x", "severity": "WARNING", "message": "slow"}'),
    ]
    write_log(day / "log" / "00_20_log.csv.gz", pods, inner, "2024-05-01T00:20:4")
    faults = [
        fault("2024-05-01 00:20:30", pods["frontend"], "cpu_contention"),
        fault("2024-05-01 00:40:30", pods["cartservice"], "network_delay"),
    ]
    (day / "2024-05-01-fault_list.json").write_text(json.dumps({"00": faults}), encoding="utf-8")


def edge_latency_tables(start: str, n: int, cart_delay: tuple[int, int]) -> dict[str, pd.DataFrame]:
    """Per-edge median latency as the caller saw it (``source_50``) and as the callee's server
    measured it (``destination_50``): the caller adds ~1 ms of wire time, 200 ms more on the edges
    into cartservice while its network is delayed. Columns in different orders, samples a second
    apart and one minute without calls, like the originals."""
    rng = np.random.default_rng(99)
    edges = ["frontend_cartservice", "frontend_checkoutservice", "checkoutservice_cartservice"]
    times = pd.date_range(start, periods=n, freq="1min", tz="UTC")
    server = pd.DataFrame({e: np.round(0.003 + rng.uniform(0, 0.0005, n), 6) for e in edges})
    client = server + np.round(0.001 + rng.uniform(0, 0.0005, (n, len(edges))), 6)
    first, steps = cart_delay
    for edge in ("frontend_cartservice", "checkoutservice_cartservice"):
        client.loc[first : first + steps - 1, edge] += 0.2
    client.loc[70, "frontend_checkoutservice"] = np.nan
    server.loc[70, "frontend_checkoutservice"] = np.nan
    out = {}
    for name, table, offset in (("source_50", client, 20.0), ("destination_50", server, 19.0)):
        stamps = times + pd.Timedelta(seconds=offset)
        text = stamps.strftime("%Y-%m-%d %H:%M:%S.%f").str.cat(
            [f"123 +0000 UTC m=+{60.0 * i:.6f}" for i in range(n)]
        )
        columns = edges if name == "source_50" else edges[::-1]
        framed = table[columns].round(6)
        framed.insert(0, "timestamp", [int(t.timestamp()) for t in stamps])
        framed.insert(0, "time", text)
        out[name] = framed
    return out


def fault(time: str, pod: str, kind: str, hours_early: int = 0) -> dict[str, str]:
    epoch = int(pd.Timestamp(time, tz="UTC").timestamp()) - 3600 * hours_early
    return {
        "inject_time": time,
        "inject_timestamp": str(epoch),
        "inject_pod": pod,
        "inject_type": kind,
    }


def write_log(
    path: Path, pods: dict[str, str], inner: list[tuple[str, str]], stamp: str, extra: str = ""
) -> None:
    """One CSV line per (service, container line), wrapped like Docker's JSON log driver."""
    lines = ["Timestamp,TimeUnixNano,Node,PodName,Container,TraceID,SpanID,Log"]
    for i, (service, text) in enumerate(inner):
        when = pd.Timestamp(f"{stamp}{i}.123456789Z")
        wrapped = json.dumps({"log": text + "\n", "stream": "stdout"}, separators=(",", ":"))
        quoted = '"' + wrapped.replace('"', '""') + '"'
        lines.append(
            f"{when.strftime('%Y-%m-%dT%H:%M:%S.%f')}789Z,{when.value},33.33.33.1,"
            f"{pods[service]},server,t{i},s{i},{quoted}"
        )
    write_gz(path, "\n".join(lines) + "\n" + extra)


def train_ticket_day() -> None:
    day = ROOT / "2024-05-02"
    pods = {
        "ts-order-service": "ts-order-service-5d8b7c6d9f-abcde",
        "ts-ui-dashboard": "ts-ui-dashboard-5477b965f-2chkr",
    }
    for i, pod in enumerate(pods.values()):
        table = metric_table(pod, "2024-05-02 08:00", 30, 10 + i)
        write_gz(day / "metric" / f"{pod}_metric.csv.gz", table.to_csv(index=False))
    inner = [
        ("ts-order-service", "16:10:40.100 INFO  o.s.OrderServiceImpl#10 [getOrder]"),
        ("ts-order-service", "16:10:41.100 WARN  o.s.OrderServiceImpl#12 [slow query]"),
        ("ts-ui-dashboard", "16:10:42.100 ERROR o.a.c.c.C.[dispatcherServlet]#175 threw"),
    ]
    # A sentinel TimeUnixNano (as on some real error lines) and a line with two extra fields.
    spliced = (
        "2024-05-02T08:10:45.5Z,-6795364578871345152,33.33.33.1,ts-ui-dashboard-5477b965f-2chkr,"
        'server,t9,s9,"{""log"":""16:10:45.500 ERROR again\\n""}"\n'
        '2024-05-02T08:10:46.5Z,1714637446500000000,33.33.33.1,x,server,t,s,"{}",tail,"more"\n'
    )
    write_log(day / "log" / "08_10_log.csv.gz", pods, inner, "2024-05-02T08:10:4", spliced)
    path = day / "2024-05-02-fault_list.json"
    path.write_text(
        json.dumps({"08": [fault("2024-05-02 08:10:30", pods["ts-order-service"], "return", 8)]}),
        encoding="utf-8",
    )


if __name__ == "__main__":
    online_boutique_day()
    train_ticket_day()
