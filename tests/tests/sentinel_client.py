"""What a redis-py client in Sentinel mode sees at vigil's Sentinel endpoint; used by sentinel.rs.

Each subcommand prints JSON on stdout, one object per line:

  events PORT SECONDS          RESP3, PSUBSCRIBE *: every message, and whether it came as a push
                               frame; ends 1.5 s after +switch-master, or after SECONDS
  replicas PORT NAME PROTO     SENTINEL REPLICAS as redis-py parses it, what discover_slaves keeps,
                               and the master discover_master finds (null when it finds none)
  info PORT PROTO              INFO sentinel and a few INFO server fields as redis-py parses them
  client PORT PROTO            CLIENT ID, GETNAME, SETNAME as redis-py calls them
"""
import json
import sys
import time

import redis
from redis.sentinel import MasterNotFoundError, Sentinel


def say(obj):
    print(json.dumps(obj), flush=True)


def events(port, seconds):
    pushed = []

    # redis-py calls this only for RESP3 push frames ('>'), never for arrays.
    def on_push(response):
        pushed.append([x.decode() if isinstance(x, bytes) else x for x in response])
        return response

    r = redis.Redis(port=port, protocol=3, socket_timeout=5)
    p = r.pubsub(push_handler_func=on_push)
    p.psubscribe("*")
    deadline = time.monotonic() + seconds
    switched = None
    while time.monotonic() < deadline and (switched is None or time.monotonic() < switched + 1.5):
        m = p.get_message(timeout=0.2)
        if m is None:
            continue
        m = {k: v.decode() if isinstance(v, bytes) else v for k, v in m.items()}
        if m["type"] == "pmessage":
            frame = [m["type"], m["pattern"], m["channel"], m["data"]]
        else:
            frame = [m["type"], m["channel"], m["data"]]
        push = frame in pushed
        if push:
            pushed.remove(frame)
        say({"push": push, **m})
        if m["channel"] == "+switch-master" and switched is None:
            switched = time.monotonic()


def replicas(port, name, proto):
    s = Sentinel(
        [("127.0.0.1", port)],
        sentinel_kwargs={"protocol": proto, "socket_timeout": 2},
        socket_timeout=2,
    )
    listed = []
    for r in s.sentinels[0].sentinel_slaves(name):
        flags = r["flags"]
        if isinstance(flags, str):
            flags = flags.split(",")
        listed.append(
            {
                "port": int(r["port"]),
                "flags": sorted(flags),
                "is_sdown": r["is_sdown"],
                "link": r["master-link-status"],
            }
        )
    try:
        master = int(s.discover_master(name)[1])
    except MasterNotFoundError:
        master = None
    say(
        {
            "replicas": listed,
            "discovered": [int(port) for _, port in s.discover_slaves(name)],
            "master": master,
        }
    )


def info(port, proto):
    r = redis.Redis(port=port, protocol=proto, decode_responses=True)
    server = r.info("server")
    say(
        {
            "sentinel": r.info("sentinel"),
            "server": {k: server.get(k) for k in ("redis_mode", "redis_version", "tcp_port")},
        }
    )


def client(port, proto):
    r = redis.Redis(port=port, protocol=proto, decode_responses=True)
    other = redis.Redis(port=port, protocol=proto, decode_responses=True)
    before = r.client_getname()
    r.client_setname("vigil-test")
    say(
        {
            "id": r.client_id(),
            "other": other.client_id(),
            "before": before,
            "after": r.client_getname(),
        }
    )


if __name__ == "__main__":
    cmd, port = sys.argv[1], int(sys.argv[2])
    if cmd == "events":
        events(port, float(sys.argv[3]))
    elif cmd == "replicas":
        replicas(port, sys.argv[3], int(sys.argv[4]))
    elif cmd == "info":
        info(port, int(sys.argv[3]))
    elif cmd == "client":
        client(port, int(sys.argv[3]))
    else:
        sys.exit(f"unknown subcommand {cmd}")
