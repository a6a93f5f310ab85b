#!/usr/bin/env python3
"""One writer of the safety suite: an application writing through redis-py.

Each attempt writes a key of its own (`<writer id>:<sequence>`, whose value is the key itself) and
prints one JSON line to --out: the key, the kind, the outcome, which server executed it and when.
Attempts are never retried under the same key, so every key has exactly one line.

Modes:
  sentinel  redis-py's Sentinel(...).master_for(...), as an application in Sentinel mode: after an
            error the next attempt connects again, and connecting asks the Sentinel endpoint(s)
            for the primary.
  direct    redis-py's Redis(host, port): a connection pool on one fixed address, reconnecting to
            that same address after an error, as a pool configured with one primary does.
Kinds:
  plain     SET; acknowledged when SET answers OK.
  wait      SET then WAIT 1 <ms>; acknowledged only when WAIT reports at least one replica.

Each write goes in one non-transactional pipeline: SET, TIME, [WAIT,] CLIENT INFO. The server's
port comes from CLIENT INFO's laddr (the address the executing server accepted the connection
on); TIME, read by that server right after the SET, dates the execution. TIME is the server's
wall clock; it is turned into CLOCK_MONOTONIC (time.monotonic_ns(), the same system-wide clock
the test reads) with the offset between the two clocks read here at the reply, and kept inside
[sent, reply] in case the wall clock was stepped meanwhile.

Outcomes: ack, unreplicated (a wait write whose SET succeeded but WAIT saw no replica), readonly,
timeout, error. Bounded: --max-seconds, --max-writes; SIGTERM ends it after the attempt in flight.
"""

import argparse
import json
import re
import signal
import sys
import time

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel

LADDR = re.compile(r"laddr=\S*:(\d+)")


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mode", choices=["sentinel", "direct"], required=True)
    p.add_argument("--kind", choices=["plain", "wait"], required=True)
    p.add_argument("--id", required=True, help="writer id, the prefix of its keys")
    p.add_argument(
        "--addr",
        action="append",
        required=True,
        help="HOST:PORT of the server (direct) or of a Sentinel endpoint (sentinel); repeatable",
    )
    p.add_argument("--service", help="the data store's name at the Sentinel endpoint")
    p.add_argument("--out", required=True, help="file for the JSON lines")
    p.add_argument("--interval-ms", type=float, default=2.0)
    p.add_argument("--error-pause-ms", type=float, default=10.0)
    p.add_argument("--socket-timeout", type=float, default=0.5)
    p.add_argument("--wait-timeout-ms", type=int, default=300)
    p.add_argument("--max-seconds", type=float, default=120.0)
    p.add_argument("--max-writes", type=int, default=200_000)
    return p.parse_args()


def host_port(addr):
    host, port = addr.rsplit(":", 1)
    return host, int(port)


def client(args):
    # The library's own retries are off: this script decides what happens after an error, and
    # an attempt is reported as it went, never quietly sent twice.
    options = dict(
        socket_timeout=args.socket_timeout,
        socket_connect_timeout=min(args.socket_timeout, 1.0),
        retry=Retry(NoBackoff(), 0),
    )
    if args.mode == "direct":
        host, port = host_port(args.addr[0])
        return redis.Redis(host=host, port=port, **options)
    sentinel = Sentinel(
        [host_port(a) for a in args.addr],
        sentinel_kwargs=dict(socket_timeout=0.2, socket_connect_timeout=0.2),
        **options,
    )
    return sentinel.master_for(args.service, **options)


def text(value):
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def server_port(info):
    """The executing server's port, from CLIENT INFO (parsed by redis-py or raw)."""
    if isinstance(info, dict):
        laddr = text(info.get("laddr", ""))
        return int(laddr.rsplit(":", 1)[1]) if ":" in laddr else None
    match = LADDR.search(text(info))
    return int(match.group(1)) if match else None


def executed_ns(server_time, sent, reply):
    """The server's TIME as CLOCK_MONOTONIC nanoseconds, kept within [sent, reply]."""
    seconds, micros = (int(text(v)) for v in server_time)
    offset = time.time_ns() - time.monotonic_ns()
    return min(max(seconds * 1_000_000_000 + micros * 1_000 - offset, sent), reply)


def classify(error):
    message = text(error)
    # redis-py in Sentinel mode turns READONLY into "The previous master is now a slave".
    if isinstance(error, redis.exceptions.ReadOnlyError) or "READONLY" in message:
        return "readonly", message
    if "previous master is now a slave" in message:
        return "readonly", message
    if isinstance(error, redis.exceptions.TimeoutError):
        return "timeout", message
    return "error", message


def attempt(r, args, key):
    record = {"key": key, "kind": args.kind}
    sent = time.monotonic_ns()
    record["sent_ns"] = sent
    try:
        pipe = r.pipeline(transaction=False)
        pipe.set(key, key)
        pipe.execute_command("TIME")
        if args.kind == "wait":
            pipe.execute_command("WAIT", 1, args.wait_timeout_ms)
        pipe.execute_command("CLIENT INFO")
        replies = pipe.execute(raise_on_error=False)
    except Exception as e:  # every failure is an outcome to report, never a crash
        record["reply_ns"] = time.monotonic_ns()
        record["outcome"], record["error"] = classify(e)
        return record
    reply = time.monotonic_ns()
    record["reply_ns"] = reply
    failed = next((v for v in replies if isinstance(v, Exception)), None)
    if failed is not None and isinstance(replies[0], Exception):
        record["outcome"], record["error"] = classify(replies[0])
        return record
    if failed is not None:
        # SET succeeded but a later command of the pipeline failed: the write cannot be placed.
        record["outcome"], record["error"] = "error", text(failed)
        return record
    record["server"] = server_port(replies[-1])
    record["exec_ns"] = executed_ns(replies[1], sent, reply)
    record["outcome"] = "ack"
    if args.kind == "wait":
        record["replicas"] = int(replies[2])
        if record["replicas"] < 1:
            record["outcome"] = "unreplicated"
    return record


def main():
    args = parse_args()
    if args.mode == "sentinel" and not args.service:
        sys.exit("--service is required in sentinel mode")
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    r = client(args)
    deadline = time.monotonic() + args.max_seconds
    with open(args.out, "w", buffering=1) as out:
        for seq in range(args.max_writes):
            if stopping or time.monotonic() >= deadline:
                break
            record = attempt(r, args, f"{args.id}:{seq}")
            out.write(json.dumps(record) + "\n")
            ok = record["outcome"] in ("ack", "unreplicated")
            pause = args.interval_ms if ok else max(args.interval_ms, args.error_pause_ms)
            time.sleep(pause / 1000.0)


if __name__ == "__main__":
    main()
