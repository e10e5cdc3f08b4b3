# SPDX-License-Identifier: GPL-2.0-or-later
"""Container networking (docs/NETWORK.md): the bridge, veths, leases, resolv.conf, physical
interfaces moved in and given back, and nothing left behind after stop, kill -9 of a container
or of trustmed. Each daemon has its own bridge and subnet; tests touch only links they make."""
import itertools
import json
import os
import re
import signal
import subprocess
import time

import pytest

from conftest import NET_PREFIX, TERM_INIT, CliError, net_subnet, wait_for
from tools import tool

_ids = itertools.count(1)


def ip(*args, check=True):
    r = subprocess.run([tool("ip"), *args], capture_output=True, text=True)
    if check and r.returncode != 0:
        raise AssertionError(f"ip {' '.join(args)}: {r.stderr}")
    return r.stdout


def links():
    return {l.split(":")[1].strip().split("@")[0] for l in ip("-o", "link").splitlines()}


def host_if(d, name):
    uuid = d.state(name)["uuid"]
    return "tm" + uuid.replace("-", "")[:10]


def pinned(d):
    with open("/proc/self/mountinfo") as f:
        return [l.split()[4] for l in f if str(d.run_dir) in l and l.split()[4].endswith("/netns")]


@pytest.fixture
def net_daemon(make_daemon):
    """A daemon with a bridge and subnet of its own: bridge <NET_PREFIX>n<n>, 10.<160+slot>.n.0/24
    (conftest.net_subnet)."""
    made = []

    def make(prefix=24, nat=False):
        n = next(_ids)
        d = make_daemon(start=False)
        d.bridge = f"{NET_PREFIX}n{n}"
        d.net = net_subnet(0, n)
        d.data_dir.mkdir(parents=True, exist_ok=True)
        (d.data_dir / "device.json").write_text(json.dumps({
            "policy": {"allow_unsigned": True},
            "network": {"bridge": d.bridge, "subnet": f"{d.net}.0/{prefix}", "nat": nat}}))
        made.append(d)
        return d.start()

    yield make
    for d in made:
        try:
            for c in d.containers():
                d.cli("stop", "--kill", c["name"], check=False)
        except Exception:
            pass
    for d in made:
        # Whatever is left is a failure of the test, but must not stay on the host.
        for l in links():
            if l == d.bridge:
                ip("link", "del", l, check=False)


def bridged(d, name, **net):
    return d.create(name, network={"mode": "bridged", **net}, **TERM_INIT)


def address_of(d, name):
    out = d.sh(name, "ip -o -4 addr show dev eth0").stdout
    return re.search(r"inet (\S+)/", out).group(1)


def assert_clean(d, names=()):
    """No veth, bridge, pinned netns of the daemon left."""
    def clean():
        ls = links()
        return d.bridge not in ls and not any(n in ls for n in names) and not pinned(d)
    wait_for(clean, timeout=10, what="network leftovers to go")


def test_ping_both_ways_and_cleanup(net_daemon):
    d = net_daemon()
    bridged(d, "a", dns=[f"{d.net}.1"], search=["lan"])
    d.cli("start", "a")
    veth = host_if(d, "a")
    assert veth in links()
    assert ip("-o", "link", "show", veth).count(f"master {d.bridge}") == 1
    addr = address_of(d, "a")
    assert addr.startswith(d.net + ".")
    assert d.state("a")["address"] == addr
    d.sh("a", f"ping -c 2 -W 2 {d.net}.1")
    subprocess.run([tool("busybox"), "ping", "-c", "2", "-W", "2", addr], check=True, capture_output=True)
    assert d.run("a", "cat", "/etc/resolv.conf").stdout == f"nameserver {d.net}.1\nsearch lan\n"
    route = d.sh("a", "ip route").stdout
    assert f"default via {d.net}.1" in route
    assert len(pinned(d)) == 1
    d.cli("stop", "a")
    assert_clean(d, [veth])
    # The same address at the next start.
    d.cli("start", "a")
    assert address_of(d, "a") == addr
    d.cli("stop", "--kill", "a")
    assert_clean(d, [veth])


def test_leases_many_containers_and_restart(net_daemon):
    d = net_daemon()
    names = [f"c{i}" for i in range(20)]
    for n in names:
        bridged(d, n)
    bridged(d, "fixed", address=f"{d.net}.200")
    leases = json.loads((d.data_dir / "net/leases.json").read_text())
    assert len(leases) == 21
    assert len(set(leases.values())) == 21
    assert f"{d.net}.200" in leases.values()
    assert f"{d.net}.1" not in leases.values()
    # Taken, outside the subnet, the bridge's, the broadcast: refused.
    for bad in (f"{d.net}.200", "10.1.2.3", f"{d.net}.1", f"{d.net}.255", f"{d.net}.0"):
        with pytest.raises(CliError):
            bridged(d, "bad", address=bad)
    assert "bad" not in [c["name"] for c in d.containers()]
    for n in names[:5] + ["fixed"]:
        d.cli("start", n)
    got = {n: address_of(d, n) for n in names[:5] + ["fixed"]}
    assert got["fixed"] == f"{d.net}.200"
    assert len(set(got.values())) == 6
    # Containers ping each other only if allowed: not this test's business (nft); the host can.
    d.cli("stop", "--kill", *names[:5], "fixed") if False else [d.cli("stop", "--kill", n) for n in names[:5] + ["fixed"]]
    d.restart()
    assert json.loads((d.data_dir / "net/leases.json").read_text()) == leases
    d.cli("remove", "c3")
    after = json.loads((d.data_dir / "net/leases.json").read_text())
    assert len(after) == 20 and leases[d.state("c4")["uuid"]] == after[d.state("c4")["uuid"]]
    # The freed address is given to the next container.
    bridged(d, "new")
    d.cli("start", "new")
    assert address_of(d, "new") not in [v for k, v in after.items() if k != d.state("new")["uuid"]]
    d.cli("stop", "--kill", "new")
    assert_clean(d)


def make_phys(name):
    """A "physical" interface for the tests: a veth whose peer stays on the host (no dummy
    driver in this kernel)."""
    ip("link", "add", name, "type", "veth", "peer", "name", name + "p")
    return name


@pytest.fixture
def phys():
    made = []

    def make(suffix):
        name = f"{NET_PREFIX}p{suffix}"
        made.append(name)
        return make_phys(name)

    yield make
    for n in made:
        ip("link", "del", n, check=False)


def test_interfaces_from_config_given_back(net_daemon, phys):
    d = net_daemon()
    p = phys("a")
    d.create("x", network={"interfaces": [p]}, **TERM_INIT)
    d.cli("start", "x")
    assert p not in links()
    assert p in d.sh("x", "ip -o link").stdout
    d.cli("stop", "x")
    wait_for(lambda: p in links(), what="the interface to come back")
    assert_clean(d)
    # kill -9 of the container: given back too.
    d.cli("start", "x")
    assert p not in links()
    os.kill(d.state("x")["pid"], signal.SIGKILL)
    wait_for(lambda: d.state("x")["state"] == "stopped")
    wait_for(lambda: p in links(), what="the interface to come back")
    assert not pinned(d)


def test_iface_assign_unassign(net_daemon, phys):
    d = net_daemon()
    p = phys("b")
    bridged(d, "y")
    d.cli("start", "y")
    d.cli("iface", "assign", "y", p)
    assert p not in links()
    assert p in d.sh("y", "ip -o link").stdout
    with pytest.raises(CliError):
        d.cli("iface", "assign", "y", "nosuchif0")
    d.cli("iface", "unassign", "y", p)
    assert p in links()
    assert p not in d.sh("y", "ip -o link").stdout
    # Persistent: back at the next start.
    d.cli("iface", "assign", "y", p, "--persistent")
    d.cli("stop", "y")
    assert p in links()
    d.cli("start", "y")
    assert p not in links()
    d.cli("stop", "y")
    assert p in links()
    events = [e["event"] for e in d.audit_events()]
    assert "net.iface.assign" in events and "net.iface.unassign" in events
    assert_clean(d, [host_if(d, "y")])


def test_trustmed_kill9_restart(net_daemon, phys):
    d = net_daemon()
    p, q = phys("c"), phys("d")
    bridged(d, "live")
    bridged(d, "dies", interfaces=[q])
    d.cli("start", "live")
    d.cli("start", "dies")
    d.cli("iface", "assign", "live", p)
    live_veth, dies_veth = host_if(d, "live"), host_if(d, "dies")
    dies_pid = d.state("dies")["pid"]
    d.kill9()
    os.kill(dies_pid, signal.SIGKILL)
    time.sleep(0.5)
    assert q not in links()  # held by the pinned netns until the next trustmed
    d.start()
    wait_for(lambda: q in links(), what="the dead container's interface to come back")
    assert dies_veth not in links()
    # The live one was re-adopted with its network.
    assert d.state("live")["state"] == "running"
    d.sh("live", f"ping -c 1 -W 2 {d.net}.1")
    d.cli("iface", "unassign", "live", p)
    assert p in links()
    d.cli("iface", "assign", "live", p)
    d.cli("stop", "live")
    assert p in links()
    assert_clean(d, [live_veth, dies_veth])
