"""odoo-front-gate: Odoo's ports shut to new connections around its stop, so that the front
door holds them (HAProxy retries a refused connection, about once a second) instead of Odoo
dropping them.

    odoo-front-gate close   the service's ExecStop= (root): new connections to Odoo's ports
                            refused, then a wait until Odoo took those already queued; the
                            service then stops (its workers finish the requests they hold)
    odoo-front-gate open    the service's first ExecStartPre= (root): the gate removed

Why: Odoo's prefork workers, told to stop, leave unaccepted the connections the kernel has
queued for them; closed with the socket, each with its request already sent, they could only
be answered 502. A refused connection is never a request Odoo received: HAProxy retries it.
"""

from __future__ import annotations

import sys
import time

from oca_france_host import config, runner

USAGE = "Usage: odoo-front-gate close|open"
TABLE = "oca_france_gate"  # nftables table (inet family), this program's alone


def log(message: str) -> None:
    print(f"odoo-front-gate: {message}", file=sys.stderr, flush=True)


def ruleset(ports: list[int]) -> str:
    """A new connection (a bare SYN) to Odoo's ports over loopback answered with a reset:
    connection refused, at once."""
    listed = ", ".join(str(port) for port in ports)
    lines = [
        f"table inet {TABLE} " + "{",
        "    chain output {",
        "        type filter hook output priority 0; policy accept;",
        '        oifname "lo" tcp dport { ' + listed + " }"
        " tcp flags & (fin | syn | rst | ack) == syn reject with tcp reset",
        "    }",
        "}",
    ]
    return "\n".join(lines) + "\n"


def remove() -> None:
    """The rule gone (a table already gone is fine; a table nft cannot delete is an error:
    Odoo would run unreachable)."""
    if runner.succeeds(["nft", "list", "table", "inet", TABLE]):
        runner.run(["nft", "delete", "table", "inet", TABLE])


def queued(ports: list[int]) -> int:
    """Connections the kernel holds for Odoo's listening sockets, not yet accepted (a
    listening socket's Recv-Q)."""
    total = 0
    for port in ports:
        listing = runner.output(["ss", "-Hltn", f"sport = :{port}"])
        for line in listing.splitlines():
            fields = line.split()
            if len(fields) >= 2 and fields[1].isdigit():
                total += int(fields[1])
    return total


def close(settings: dict) -> int:
    ports = [int(port) for port in settings["odoo_ports"]]
    remove()  # never two copies of the rule
    runner.run(["nft", "-f", "-"], input=ruleset(ports))
    deadline = time.monotonic() + int(settings["front_gate_drain_sec"])
    waiting = queued(ports)
    while waiting and time.monotonic() < deadline:
        time.sleep(0.1)
        waiting = queued(ports)
    if waiting:
        log(f"{waiting} connection(s) still queued after {settings['front_gate_drain_sec']} s")
    return 0


def main(argv: list[str]) -> int:
    settings = config.load()
    if argv in (["-h"], ["--help"]):
        print(USAGE)
        return 0
    if argv not in (["close"], ["open"]):
        print(USAGE, file=sys.stderr)
        return 2
    try:
        if argv == ["open"]:
            remove()
            return 0
        return close(settings)
    except runner.Failed as error:
        log(f"ERROR: {error}")
        return 1
