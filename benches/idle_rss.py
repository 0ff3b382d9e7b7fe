#!/usr/bin/env python3
"""RSS per idle connection of a broker, and whether RSS comes back after the connections close.

Starts the broker itself (pinned with `taskset -c 1` unless --cpu says otherwise), reads its
VmRSS from /proc before and after opening N sockets, then closes them and reads it again,
for --rounds rounds. Each socket either sends an MQTT v5 CONNECT (clean start, session
expiry 0, keep alive 600 s) and waits for CONNACK (`--mode connect`), or sends nothing
(`--mode raw`: the pre-CONNECT cost). Sockets are spread over several 127.0.0.x source
addresses so ephemeral ports do not run out.

    python3 benches/idle_rss.py --mode connect -n 5000 --rounds 7
    python3 benches/idle_rss.py --mode raw -n 5000
    python3 benches/idle_rss.py --broker mosquitto --mode connect -n 5000

Both processes need N file descriptors (the script raises its own soft limit to the hard
one; the broker inherits it). Prints one line per measurement and a JSON summary.
"""

import argparse
import json
import os
import resource
import selectors
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time


def varint(n):
    out = bytearray()
    while True:
        b = n % 128
        n //= 128
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def utf8(s):
    b = s.encode()
    return struct.pack("!H", len(b)) + b


def connect_packet(client_id, keep_alive=600):
    # Variable header: protocol name, level 5, flags (clean start), keep alive, no properties.
    var = utf8("MQTT") + bytes([5, 0x02]) + struct.pack("!H", keep_alive) + varint(0)
    payload = utf8(client_id)
    body = var + payload
    return bytes([0x10]) + varint(len(body)) + body


def rss_kb(pid, field="VmRSS"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field}")


def anon_kb(pid):
    """The anonymous part of RSS (heap, stacks): what connections cost. VmRSS also counts
    the pages of the executable mapped so far, which differ from build to build."""
    return rss_kb(pid, "RssAnon")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, proc, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"broker exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    sys.exit("broker did not open its port")


def start_broker(args, work):
    port = free_port()
    cpu = ["taskset", "-c", args.cpu] if args.cpu else []
    if args.broker == "mosquitto":
        conf = os.path.join(work, "mosquitto.conf")
        with open(conf, "w") as f:
            f.write(f"listener {port} 127.0.0.1\nallow_anonymous true\nmax_connections -1\n")
        cmd = cpu + ["mosquitto", "-c", conf]
    else:
        conf = os.path.join(work, "gatehouse.yaml")
        n = max(args.n + 100, 20000)
        with open(conf, "w") as f:
            f.write(
                f"""dataDir: {work}/data
listeners:
  - name: bench
    bindAddress: 127.0.0.1
    ports: [{{port: {port}}}]
broker:
  maxConnections: {n}
  maxPendingConnections: {n}
  maxPendingConnectionsPerAddress: {n}
  maxSessions: {n}
  connectTimeout: 3600s
diagnostics:
  metrics: {{prometheusPort: 0}}
"""
            )
        cmd = cpu + [args.gatehouse, "--config", conf]
    env = dict(os.environ)
    env.update(dict(kv.split("=", 1) for kv in args.env))
    log = open(os.path.join(work, "broker.log"), "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    wait_port(port, proc)
    return proc, port


def open_all(args, port, round_no):
    socks = []
    for i in range(args.n):
        s = socket.socket()
        s.bind((f"127.0.0.{2 + i % args.sources}", 0))
        s.connect(("127.0.0.1", port))
        if args.mode == "connect":
            s.sendall(connect_packet(f"idle-{round_no}-{i}"))
        socks.append(s)
    if args.mode == "connect":
        # Every CONNACK, read without blocking on one slow socket.
        sel = selectors.DefaultSelector()
        for s in socks:
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ)
        waiting = len(socks)
        deadline = time.time() + 120
        while waiting and time.time() < deadline:
            for key, _ in sel.select(timeout=1):
                data = key.fileobj.recv(64)
                if not data or data[0] != 0x20:
                    sys.exit(f"expected CONNACK, got {data!r}")
                if data[3] != 0:
                    sys.exit(f"CONNACK reason {data[3]:#x}")
                sel.unregister(key.fileobj)
                waiting -= 1
        sel.close()
        if waiting:
            sys.exit(f"{waiting} CONNACKs missing")
    return socks


def settle(pid, seconds):
    time.sleep(seconds)
    return rss_kb(pid)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--broker", choices=["gatehouse", "mosquitto"], default="gatehouse")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(root, "target"))
    p.add_argument("--gatehouse", default=os.path.join(target, "release", "gatehouse"))
    p.add_argument("--mode", choices=["connect", "raw"], default="connect")
    p.add_argument("-n", type=int, default=5000)
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--sources", type=int, default=8, help="127.0.0.x source addresses")
    p.add_argument("--cpu", default="1", help="taskset CPU list for the broker ('' = none)")
    p.add_argument("--settle", type=float, default=2.0, help="seconds before each RSS reading")
    p.add_argument("--close-settle", type=float, default=None,
                   help="seconds between closing and the RSS reading after close (default: --settle)")
    p.add_argument("--env", action="append", default=[], help="KEY=VALUE for the broker")
    p.add_argument("--log", help="copy the broker's output here at the end")
    p.add_argument("--gdb-stats", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--gdb-trim", action="store_true",
                   help="experiment: call glibc malloc_trim(0) in the broker (gdb) after close")
    args = p.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if args.n + 64 > hard:
        sys.exit(f"-n {args.n} needs more file descriptors than the hard limit {hard}")

    with tempfile.TemporaryDirectory(prefix="idle-rss.") as work:
        proc, port = start_broker(args, work)
        try:
            pid = proc.pid
            if args.cpu:
                # taskset execs the broker in place: same pid.
                pass
            # One connection first, so lazily created broker-wide state is in the baseline.
            warm = open_all(argparse.Namespace(**{**vars(args), "n": 1}), port, "warm")
            for s in warm:
                s.close()
            base = settle(pid, args.settle)
            base_anon = anon_kb(pid)
            print(f"{args.broker} {args.mode} n={args.n}: baseline {base} KB (anonymous {base_anon} KB)", flush=True)
            rounds = []
            for r in range(args.rounds):
                t0 = time.time()
                socks = open_all(args, port, r)
                opened = time.time() - t0
                held = settle(pid, args.settle)
                held_anon = anon_kb(pid)
                for s in socks:
                    s.close()
                after = settle(pid, args.settle if args.close_settle is None else args.close_settle)
                if args.gdb_stats:
                    subprocess.run(["gdb", "-p", str(pid), "-batch", "-ex", "call (void)_rjem_malloc_stats_print(0,0,\"dablxe\")"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                if args.gdb_trim:
                    subprocess.run(["gdb", "-p", str(pid), "-batch", "-ex", "call (int)malloc_trim(0)"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    trimmed = settle(pid, 0.5)
                    print(f"  after malloc_trim(0): {trimmed} KB", flush=True)
                after_anon = anon_kb(pid)
                per_conn = (held - base) * 1024 / args.n
                anon_per_conn = (held_anon - base_anon) * 1024 / args.n
                rounds.append({"round": r + 1, "held_kb": held, "after_close_kb": after,
                               "bytes_per_conn": round(per_conn), "open_s": round(opened, 2),
                               "anon_bytes_per_conn": round(anon_per_conn),
                               "anon_after_close_ratio": round(after_anon / base_anon, 3)})
                print(f"  round {r + 1}: held {held} KB ({per_conn:.0f} B/conn; anonymous "
                      f"{anon_per_conn:.0f} B/conn, after close {after_anon / base_anon:.2f}x), "
                      f"after close {after} KB ({(after - base) * 100 / base:+.1f}% of baseline), "
                      f"opened in {opened:.1f}s", flush=True)
            print(json.dumps({"broker": args.broker, "mode": args.mode, "n": args.n,
                              "baseline_kb": base, "rounds": rounds}))
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
            if args.log:
                shutil.copy(os.path.join(work, "broker.log"), args.log)


if __name__ == "__main__":
    main()
