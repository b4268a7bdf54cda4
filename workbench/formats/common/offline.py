"""Runs a tools-env script offline: `python -I offline.py SCRIPT ARGS...`.

An audit hook refuses every network connection (a converter has no reason to make one) and records every
process the script spawns; the script finds both lists as the globals `network` and `spawned` and reports
them in its result, so the workbench (and its tests) see what a converter tried.
"""

import os
import runpy
import socket
import sys

network: list = []
spawned: list = []


def _audit(event, args):
    if event in ("socket.connect", "socket.sendto", "socket.sendmsg"):
        sock = args[0]
        if getattr(sock, "family", None) != socket.AF_UNIX:
            network.append(f"{event} {args[1]!r}")
            raise ConnectionRefusedError(f"workbench runs this converter offline: {event} to {args[1]!r} refused")
    elif event == "socket.getaddrinfo":
        network.append(f"{event} {args[0]!r}")
        raise OSError(f"workbench runs this converter offline: name lookup of {args[0]!r} refused")
    elif event in ("subprocess.Popen", "os.system", "os.posix_spawn", "os.exec", "os.spawn"):
        spawned.append(f"{event} {args[0]!r}"[:200])


sys.addaudithook(_audit)
script = sys.argv[1]
# as `python SCRIPT` would: the script's folder first (its format's own helpers), then this one (_channel.py)
sys.path[:0] = [os.path.dirname(os.path.abspath(script)), os.path.dirname(os.path.abspath(__file__))]
sys.argv = sys.argv[1:]
runpy.run_path(script, init_globals={"network": network, "spawned": spawned}, run_name="__main__")
