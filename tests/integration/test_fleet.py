# SPDX-License-Identifier: GPL-2.0-or-later
"""trustme-fleet (docs/FLEET.md) against a real PostgreSQL (pgcluster.py) and real devices
(trustmed with its trustme-tpmd and embedded swtpm, AKs certified by the test PKI): enrollment
refuses what does not chain to the fleet's anchors; workers claim due devices and record a
verdict naming the failing checks; a changed trustmed fails "reference values", another TPM
passing itself off fails "quote signature"; a silent device raises an alert within two
intervals; a worker killed mid-attestation loses no verdict and double-counts none; pushed
evidence is good once, for an enrolled device; bad input on every endpoint gets a 4xx and
changes nothing.

Device A sits behind a relay (the network, under the test's control): it forwards, drops, delays
or passes another device's quote off as A's, so one device serves every scenario."""
import base64
import http.client as http_client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from unittest import mock

import pytest

import conftest
from conftest import BUILD, wait_for
from pb import encode, frame, parse
from pgcluster import Cluster, conninfo_env
from test_attestation import make_refs, module_daemon, pki_of, read_frame
from test_device import PKI_TOOL, TPMD, SCD
from test_guestos import env  # noqa: F401
from tools import tool

FLEET = BUILD / "src/fleet/trustme-fleet"
INTERVAL = 2  # seconds: the group's attestation interval

pytestmark = pytest.mark.skipif(not FLEET.exists(), reason="trustme-fleet is not built")


# ---- the database and the service -------------------------------------------------------------

@pytest.fixture(scope="module")
def pg():
    """One cluster for the fleet's tests (this module), stopped before test_zz_leaks.py looks."""
    c = Cluster(prefix=f"{conftest.TEST_PREFIX}-pg-")
    try:
        yield c.start()
    finally:
        c.stop()


class Fleet:
    def __init__(self, pg, conninfo, work, env):
        self.pg, self.conninfo, self.work, self.env = pg, conninfo, work, env
        self.alert_log = work / "alerts.log"
        self.alert_cmd = f'printf "%s %s\\n" "$FLEET_ALERT_KIND" "$FLEET_ALERT_DEVICE" >> {self.alert_log}'
        self.workers = {}
        self.server = None

    def run(self, *args, check=True):
        r = subprocess.run([str(FLEET), *map(str, args)], capture_output=True, text=True, timeout=60,
                           env=conninfo_env(self.conninfo))
        if check and r.returncode != 0:
            raise AssertionError(f"trustme-fleet {' '.join(map(str, args))} -> {r.returncode}\n{r.stderr}")
        return r

    def sql(self, q):
        return self.pg.psql(q, db=self.conninfo.rsplit("=", 1)[1])

    def serve(self):
        log = open(self.work / "serve.log", "a")
        self.server = subprocess.Popen([str(FLEET), "serve", "--listen", "127.0.0.1:0", "--alert-command",
                                        self.alert_cmd], stdout=subprocess.PIPE, stderr=log, text=True,
                                       env=conninfo_env(self.conninfo))
        log.close()
        line = self.server.stdout.readline()
        assert line.startswith("listening on "), line
        self.url = "http://" + line.split()[-1]

    def worker(self, name, *extra):
        log = open(self.work / f"worker-{name}.log", "a")
        self.workers[name] = subprocess.Popen(
            [str(FLEET), "worker", "--name", name, "--poll-ms", "100", "--alert-command", self.alert_cmd,
             *extra],
            stdout=log, stderr=log, env=conninfo_env(self.conninfo))
        log.close()
        return self.workers[name]

    def stop_worker(self, name, sig=signal.SIGTERM):
        p = self.workers.pop(name)
        p.send_signal(sig)
        p.wait(timeout=30)

    def close(self):
        for name in list(self.workers):
            self.stop_worker(name, signal.SIGKILL)
        if self.server:
            self.server.terminate()
            self.server.wait(timeout=30)

    def api(self, method, path, body=None, raw=None, ctype="application/json"):
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        rq = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            rq.add_header("Content-Type", ctype)
        try:
            with urllib.request.urlopen(rq, timeout=30) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            text = e.read()
            return e.code, json.loads(text) if text else None

    def alerts(self):
        try:
            return [tuple(line.split(" ", 1)) for line in self.alert_log.read_text().splitlines()]
        except OSError:
            return []

    def verdicts(self, device):
        """(id, trusted, failed_check, attempt, worker) of the device's verdicts, oldest first."""
        return self.sql(f"SELECT v.id, v.trusted, coalesce(v.failed_check, ''), coalesce(v.attempt, -1), v.worker "
                        f"FROM verdicts v JOIN devices d ON d.id = v.device_id WHERE d.name = '{device}' "
                        f"ORDER BY v.id")

    def next_verdict(self, device, timeout=30, after=None):
        """The first verdict of the device newer than `after` (an id; default: its newest now)."""
        if after is None:
            seen = self.verdicts(device)
            after = int(seen[-1][0]) if seen else 0
        return wait_for(lambda: next((v for v in self.verdicts(device) if int(v[0]) > after), None),
                        timeout=timeout, what=f"a verdict of {device}")


@pytest.fixture(scope="module")
def fleet(pg, env, test_root):  # noqa: F811
    work = Path(test_root) / "fleet"
    work.mkdir()
    f = Fleet(pg, pg.create_db(f"fleet_{os.getpid()}"), work, env)
    try:
        first = f.run("migrate").stdout
        assert re.fullmatch(r"schema version \d+\n", first), first
        assert f.run("migrate").stdout == first  # idempotent
        f.run("trust", "--ak-anchor", env.cert("general-root-ca"), "--device-ca", env.cert("device-ca"),
              "--rim-anchor", env.cert("root-ca"), "--rim-ca", env.cert("sub-ca"), "--crl", env.pki / "crls.pem")
        f.serve()
        yield f
    finally:
        f.close()


# ---- the network between the fleet and device A ------------------------------------------------

class Relay:
    """Forwards attestation exchanges to `target`; mode "drop" closes each connection unanswered
    (a silent device), a delay holds the response back, and `impersonate` (a quote of A) makes it
    pass the target's quote off as that device's: its AK, certificate and SRK name swapped in."""

    def __init__(self, target):
        self.target = target
        self.mode = "forward"
        self.delay = 0
        self.impersonate = None
        self.srv = socket.socket()
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(16)
        self.address = f"127.0.0.1:{self.srv.getsockname()[1]}"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                client, _ = self.srv.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(client,), daemon=True).start()

    def _one(self, client):
        try:
            with client:
                if self.mode == "drop":
                    return
                host, port = self.target.rsplit(":", 1)
                with socket.create_connection((host, int(port)), timeout=10) as up:
                    up.sendall(frame(read_frame(client)))
                    resp = read_frame(up)
                if self.impersonate:
                    top = parse(resp)
                    q = parse(top[11][0])
                    q[5], q[6], q[140] = self.impersonate[5], self.impersonate[6], self.impersonate[140]
                    top[11] = [encode(q)]
                    resp = encode(top)
                time.sleep(self.delay)
                client.sendall(frame(resp))
        except (OSError, EOFError, KeyError):
            pass

    def close(self):
        self.srv.close()


def attest_address(d):
    return json.loads(d.cli("device", "info", "--json").stdout)["attest_address"]


def device_info_file(d, path):
    path.write_text(d.cli("device", "info", "--json").stdout)
    return path


def quote_of(address, nonce, pcrs):
    """Ask a device's tpmd for a quote of pcrs with this nonce (proto/attest.proto), as a device
    pushing its evidence does: the AttestResponse's bytes."""
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(frame(encode({1: [1], 2: [7], 3: [nonce], 4: list(pcrs)})))
        return read_frame(s)


@pytest.fixture(scope="module")
def devices(fleet, env, test_root, rootfs):  # noqa: F811
    """A (pull, behind the relay), B (push; another TPM, same software) and C (pull, its trustmed
    binary changed), all in group "g" whose reference values are this build's software."""
    made = []
    try:
        a = module_daemon(test_root, rootfs, "fa")
        made.append(a)
        conftest.provisioned_device(a, env, "fleet-a")
        refs = make_refs(env, a.base / "refs.json", configs=[("device-config", a.data_dir / "device.json")])
        fleet.run("group", "g", "--reference", refs, "--interval", INTERVAL)

        b = module_daemon(test_root, rootfs, "fb")
        made.append(b)
        conftest.provisioned_device(b, env, "fleet-b", like=a)

        # C: the same device.json, a trustmed whose bytes differ (one byte appended: it still
        # runs, and measures itself as another binary)
        c = module_daemon(test_root, rootfs, "fc")
        made.append(c)
        changed = c.base / "trustmed"
        shutil.copy(conftest.TRUSTMED, changed)
        with open(changed, "ab") as fh:
            fh.write(b"\0changed")
        c.extra_args += ["--scd-binary", SCD, "--tpmd-binary", TPMD]
        with mock.patch.object(conftest, "TRUSTMED", changed):
            conftest.provisioned_device(c, env, "fleet-c", like=a, secret=False)

        relay = Relay(attest_address(a))
        fleet.run("enroll", "a", "--group", "g", "--info", device_info_file(a, a.base / "info.json"),
                  "--address", relay.address)
        fleet.run("enroll", "b", "--group", "g", "--info", device_info_file(b, b.base / "info.json"))
        fleet.run("enroll", "c", "--group", "g", "--info", device_info_file(c, c.base / "info.json"),
                  "--address", attest_address(c))
        yield {"a": a, "b": b, "c": c, "relay": relay}
        relay.close()
    finally:
        for d in made:
            d.teardown()


@pytest.fixture(scope="module")
def worker(fleet, devices):
    """One worker for the module; tests that kill workers start their own."""
    fleet.worker("w0")
    yield
    if "w0" in fleet.workers:
        fleet.stop_worker("w0")


# ---- enrollment -------------------------------------------------------------------------------

def test_enrollment_refuses_foreign_chains(fleet, devices, env):  # noqa: F811
    a = devices["a"]
    info = json.loads(a.cli("device", "info", "--json").stdout)
    # the same device again: its name and its AK are taken
    s, r = fleet.api("POST", "/api/v1/devices", {"name": "a2", "group": "g", "ak_name": info["ak_name"],
                                                 "cert_chain_pem": info["cert_chain_pem"]})
    assert s == 409 and "enrolled already" in r["error"], r
    # a chain of another PKI (the second PKI's root certifies its own Device CA)
    foreign = env.cert("device-ca", env.local_pki).read_text()
    s, r = fleet.api("POST", "/api/v1/devices", {"name": "x", "group": "g", "ak_name": info["ak_name"],
                                                 "cert_chain_pem": foreign})
    assert s in (400, 403), r
    # the Device CA's own certificate, and the GuestOS-signing CA's (both chain to the roots)
    for ca in ("device-ca", "guestos-ca"):
        s, r = fleet.api("POST", "/api/v1/devices", {"name": "x", "group": "g", "ak_name": info["ak_name"],
                                                     "cert_chain_pem": env.cert(ca).read_text()})
        assert s == 403, (ca, r)
    assert fleet.sql("SELECT count(*) FROM devices") == [["3"]]


# ---- pull verification --------------------------------------------------------------------------

def test_healthy_device_is_trusted(fleet, devices, worker):
    v = fleet.next_verdict("a")
    assert v[1] == "t" and v[2] == "", v
    s, r = fleet.api("GET", "/api/v1/devices/a")
    assert s == 200 and r["last_verdict"] == "trusted" and r["last_seen"], r
    assert r["verdicts"][0]["report"]["verdict"] == "trusted", r
    # A trusted verdict keeps its event count and the quote's clock, not the eight "ok" details.
    rep = r["verdicts"][0]["report"]
    assert set(rep) == {"verdict", "events", "clock"} and rep["events"] > 0, rep
    assert set(rep["clock"]) == {"clock", "reset_count", "restart_count", "safe"} and rep["clock"]["safe"], rep


def test_changed_trustmed_fails_reference_values(fleet, devices, worker):
    v = fleet.next_verdict("c")
    assert v[1] == "f" and v[2] == "reference values", v
    wait_for(lambda: ("verdict-failed", "c") in fleet.alerts(), timeout=10, what="the alert on c")
    s, r = fleet.api("GET", "/api/v1/devices/c")
    detail = next(c["detail"] for c in r["verdicts"][0]["report"]["checks"] if c["name"] == "reference values")
    assert "trustmed" in detail, detail


def test_another_tpm_fails_quote_signature(fleet, devices, worker):
    """B's genuine quote passed off as A's at A's address: A's AK, certificate and SRK name
    claimed, but B's TPM signed."""
    relay = devices["relay"]
    rq_nonce = os.urandom(32)
    relay.impersonate = parse(parse(quote_of(attest_address(devices["a"]), rq_nonce, [11, 12]))[11][0])
    relay.target = attest_address(devices["b"])
    try:
        v = fleet.next_verdict("a")
        assert v[1] == "f" and "quote signature" in v[2].split(", "), v
    finally:
        relay.impersonate = None
        relay.target = attest_address(devices["a"])
    v = fleet.next_verdict("a")
    assert v[1] == "t", v


def test_running_workers_see_rollouts_and_new_trust(fleet, devices, env, worker, tmp_path):  # noqa: F811
    """Workers keep a group's reference values and the fleet's trust between verdicts (keyed by
    their rows' versions): a roll-out and a change of trust reach the next verdict of a running
    worker, and so does the way back."""
    a = devices["a"]
    assert fleet.next_verdict("a")[1] == "t"
    # reference values without A's device.json: its config event is no longer approved
    fleet.run("group", "g", "--reference", make_refs(env, tmp_path / "refs.json"), "--interval", INTERVAL)
    try:
        v = fleet.next_verdict("a")
        assert v[1] == "f" and v[2] == "reference values", v
    finally:
        fleet.run("group", "g", "--reference", a.base / "refs.json", "--interval", INTERVAL)
    assert fleet.next_verdict("a")[1] == "t"
    # trust whose only Device CA is another PKI's: A's AK certificate is no longer the fleet's
    trust = ["--ak-anchor", env.cert("general-root-ca"), "--rim-anchor", env.cert("root-ca"), "--rim-ca",
             env.cert("sub-ca"), "--crl", env.pki / "crls.pem"]
    fleet.run("trust", *trust, "--device-ca", env.cert("device-ca", env.local_pki))
    try:
        v = fleet.next_verdict("a")
        assert v[1] == "f" and v[2], v
    finally:
        fleet.run("trust", *trust, "--device-ca", env.cert("device-ca"))
    assert fleet.next_verdict("a")[1] == "t"


def test_silent_device_raises_an_alert_within_two_intervals(fleet, devices, worker):
    relay = devices["relay"]
    relay.mode = "drop"
    silent_since = time.monotonic()
    try:
        wait_for(lambda: ("device-missing", "a") in fleet.alerts(), timeout=6 * INTERVAL,
                 what="the device-missing alert")
        took = time.monotonic() - silent_since
        # two intervals since it was last seen, plus a sweep (1 s) and a claim's poll
        assert took <= 2 * INTERVAL + 3, took
        v = fleet.verdicts("a")[-1]
        assert v[1] == "f" and v[2] == "no evidence", v
    finally:
        relay.mode = "forward"
    assert fleet.next_verdict("a")[1] == "t"


def test_killed_worker_loses_no_verdict(fleet, devices, worker):
    """w0 stops; w1 claims A, whose response the relay holds back, and is killed mid-attestation;
    w2 picks A up once the claim runs out (an interval, at least 3 s). Every claim has at most one
    verdict, and w1's claim none."""
    fleet.stop_worker("w0")
    relay = devices["relay"]
    relay.delay = 2.5
    try:
        w1 = fleet.worker("w1")
        claimed = wait_for(lambda: fleet.sql("SELECT w.attempt FROM work w JOIN devices d ON d.id = w.device_id "
                                             "WHERE d.name = 'a' AND w.claimed_by = 'w1'") or None,
                           timeout=20, what="w1 to claim A")
        attempt = claimed[0][0]
        time.sleep(0.5)  # w1 is inside the exchange now
        w1.kill()
        fleet.workers.pop("w1").wait()
        killed_at = time.monotonic()
        relay.delay = 0
        fleet.worker("w2")
        v = fleet.next_verdict("a", timeout=30)
        picked = time.monotonic() - killed_at
        assert v[4] == "w2" and v[1] == "t", v
        assert int(v[3]) > int(attempt), (v, attempt)
        assert picked <= max(INTERVAL, 3) + 3, picked
    finally:
        relay.delay = 0
    assert not [v for v in fleet.verdicts("a") if v[4] == "w1"]
    dup = fleet.sql("SELECT device_id, attempt FROM verdicts WHERE mode = 'pull' "
                    "GROUP BY 1, 2 HAVING count(*) > 1")
    assert dup == [], dup
    fleet.stop_worker("w2")
    fleet.worker("w0")


def test_two_workers_share_the_work(fleet, devices, worker):
    """w0 and a second process of two threads (w3.1, w3.2: a worker each, own connection)."""
    fleet.worker("w3", "--threads", "2")
    try:
        first = fleet.verdicts("a")[-1]
        wait_for(lambda: len({v[4] for v in fleet.verdicts("a") + fleet.verdicts("c")
                              if int(v[0]) > int(first[0])} & {"w0", "w3.1", "w3.2"}) >= 2,
                 timeout=40, what="verdicts of two workers")
        assert {v[4] for v in fleet.verdicts("a") + fleet.verdicts("c")} <= {"w0", "w1", "w2", "w3.1", "w3.2"}
    finally:
        fleet.stop_worker("w3")
    # a clean stop says so: no worker-missing alert for w3's threads, their rows are gone
    assert fleet.sql("SELECT name FROM workers WHERE name LIKE 'w3%'") == []
    dup = fleet.sql("SELECT device_id, attempt FROM verdicts WHERE mode = 'pull' GROUP BY 1, 2 HAVING count(*) > 1")
    assert dup == [], dup


def test_no_worker_raises_an_alert(fleet, devices, worker):
    fleet.stop_worker("w0")
    try:
        wait_for(lambda: ("work-overdue", "a") in fleet.alerts(), timeout=8 * INTERVAL,
                 what="the work-overdue alert")
    finally:
        fleet.worker("w0")


# ---- push ---------------------------------------------------------------------------------------

def push(fleet, device, address):
    s, r = fleet.api("POST", "/api/v1/push/nonce", {"device": device})
    assert s == 200, r
    resp = quote_of(address, bytes.fromhex(r["nonce"]), r["pcrs"])
    body = {"device": device, "nonce": r["nonce"], "response": base64.b64encode(resp).decode()}
    return fleet.api("POST", "/api/v1/push/evidence", body), body


def test_push_once_per_nonce(fleet, devices):
    (s, r), body = push(fleet, "b", attest_address(devices["b"]))
    assert s == 200 and r["verdict"] == "trusted", r
    assert fleet.verdicts("b")[-1][1] == "t"
    n = len(fleet.verdicts("b"))
    # the same evidence again: the nonce is spent
    s, r = fleet.api("POST", "/api/v1/push/evidence", body)
    assert s == 409 and "used already" in r["error"], r
    assert len(fleet.verdicts("b")) == n


def test_push_client(fleet, devices):
    """`trustme-fleet push`, the device's side: no database, just the fleet's address and its
    own tpmd's."""
    server = fleet.url[len("http://"):]
    n = len(fleet.verdicts("b"))
    r = subprocess.run([str(FLEET), "push", "--server", server, "--device", "b", "--attest",
                        attest_address(devices["b"])], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and json.loads(r.stdout)["verdict"] == "trusted", (r.stdout, r.stderr)
    assert len(fleet.verdicts("b")) == n + 1
    r = subprocess.run([str(FLEET), "push", "--server", server, "--device", "stranger", "--attest",
                        attest_address(devices["b"])], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "HTTP 403" in r.stderr and "not enrolled" in r.stderr, r.stderr


def test_push_of_an_unenrolled_device(fleet, devices):
    s, r = fleet.api("POST", "/api/v1/push/nonce", {"device": "stranger"})
    assert s == 403 and "not enrolled" in r["error"], r
    # a nonce issued to B, presented by another name: refused, and the nonce stays B's
    s, r = fleet.api("POST", "/api/v1/push/nonce", {"device": "b"})
    resp = quote_of(attest_address(devices["b"]), bytes.fromhex(r["nonce"]), r["pcrs"])
    s, r2 = fleet.api("POST", "/api/v1/push/evidence", {"device": "stranger", "nonce": r["nonce"],
                                                        "response": base64.b64encode(resp).decode()})
    assert s == 403, r2
    s, r2 = fleet.api("POST", "/api/v1/push/evidence", {"device": "a", "nonce": r["nonce"],
                                                        "response": base64.b64encode(resp).decode()})
    assert s == 409, r2


def test_push_of_another_devices_evidence(fleet, devices):
    """A's genuine quote for a nonce issued to B: B's AK is pinned, so "AK binding" fails."""
    s, r = fleet.api("POST", "/api/v1/push/nonce", {"device": "b"})
    resp = quote_of(attest_address(devices["a"]), bytes.fromhex(r["nonce"]), r["pcrs"])
    s, r2 = fleet.api("POST", "/api/v1/push/evidence", {"device": "b", "nonce": r["nonce"],
                                                        "response": base64.b64encode(resp).decode()})
    assert s == 200 and r2["verdict"] == "untrusted" and "AK binding" in r2["failed_check"], r2


# ---- TLS ----------------------------------------------------------------------------------------

def openssl(*args, cwd):
    subprocess.run([tool("openssl"), *map(str, args)], check=True, capture_output=True, cwd=cwd)


def make_ca(d, name):
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
            f"{name}.key", "-out", f"{name}.pem", "-subj", f"/CN={name}", "-days", "2", "-addext",
            "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)


def make_leaf(d, name, ca, ext):
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
            f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=d)
    (d / f"{name}.ext").write_text(ext + "\n")
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key", "-CAcreateserial",
            "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext", cwd=d)


def test_tls_with_operator_certificates(fleet, devices, tmp_path):
    """serve --tls-cert --tls-key --client-ca: every endpoint but push needs an operator's
    certificate of the client CA; a device pushes without one."""
    d = tmp_path
    make_ca(d, "server-ca")
    make_ca(d, "operator-ca")
    make_ca(d, "rogue-ca")
    make_leaf(d, "server", "server-ca", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth")
    make_leaf(d, "operator", "operator-ca", "extendedKeyUsage=clientAuth")
    make_leaf(d, "rogue", "rogue-ca", "extendedKeyUsage=clientAuth")
    p = subprocess.Popen([str(FLEET), "serve", "--listen", "127.0.0.1:0", "--tls-cert", d / "server.pem",
                          "--tls-key", d / "server.key", "--client-ca", d / "operator-ca.pem"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                         env=conninfo_env(fleet.conninfo))
    try:
        line = p.stdout.readline()
        assert line.startswith("listening on "), line
        url = "https://" + line.split()[-1]

        def call(path, client=None, body=None):
            ctx = ssl.create_default_context(cafile=str(d / "server-ca.pem"))
            if client:
                ctx.load_cert_chain(str(d / f"{client}.pem"), str(d / f"{client}.key"))
            rq = urllib.request.Request(url + path, data=json.dumps(body).encode() if body else None,
                                        headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(rq, timeout=30, context=ctx) as r:
                    return r.status, json.loads(r.read())
            except urllib.error.HTTPError as e:
                return e.code, json.loads(e.read())

        s, r = call("/api/v1/devices")
        assert s == 403 and "no client certificate" in r["error"], r
        s, r = call("/api/v1/devices", "rogue")
        assert s == 403 and "does not verify" in r["error"], r
        s, r = call("/api/v1/devices", "operator")
        assert s == 200 and {x["name"] for x in r["devices"]} == {"a", "b", "c"}, r
        # push needs no client certificate: the nonce, the pinned AK and the TPM vouch for it
        s, r = call("/api/v1/push/nonce", body={"device": "b"})
        assert s == 200 and len(r["nonce"]) == 64, r
        # plain HTTP on the TLS port gets no answer
        with pytest.raises((urllib.error.URLError, ConnectionError, http_client.RemoteDisconnected)):
            urllib.request.urlopen(url.replace("https", "http") + "/api/v1/devices", timeout=10).read()
    finally:
        p.terminate()
        p.wait(timeout=30)


def test_operator_roles(fleet, devices, tmp_path):
    """serve --client-ca ADMINS --viewer-ca VIEWERS: a viewer reads the status page, devices,
    verdicts, groups and alerts; every change (enroll, group, remove) is refused to it with 403
    and changes nothing, and is an admin's. Push stays the devices'."""
    d = tmp_path
    for ca in ("server-ca", "admin-ca", "viewer-ca", "rogue-ca"):
        make_ca(d, ca)
    make_leaf(d, "server", "server-ca", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth")
    for who, ca in (("admin", "admin-ca"), ("viewer", "viewer-ca"), ("rogue", "rogue-ca")):
        make_leaf(d, who, ca, "extendedKeyUsage=clientAuth")
    p = subprocess.Popen([str(FLEET), "serve", "--listen", "127.0.0.1:0", "--tls-cert", d / "server.pem",
                          "--tls-key", d / "server.key", "--client-ca", d / "admin-ca.pem", "--viewer-ca",
                          d / "viewer-ca.pem"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                         env=conninfo_env(fleet.conninfo))
    try:
        line = p.stdout.readline()
        assert line.startswith("listening on "), line
        url = "https://" + line.split()[-1]

        def call(method, path, client=None, body=None):
            ctx = ssl.create_default_context(cafile=str(d / "server-ca.pem"))
            if client:
                ctx.load_cert_chain(str(d / f"{client}.pem"), str(d / f"{client}.key"))
            rq = urllib.request.Request(url + path, data=json.dumps(body).encode() if body is not None else None,
                                        method=method, headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(rq, timeout=30, context=ctx) as r:
                    return r.status, r.read()
            except urllib.error.HTTPError as e:
                return e.code, e.read()

        reads = ["/", "/api/v1/devices", "/api/v1/devices/a", "/api/v1/groups", "/api/v1/alerts"]
        info = json.loads(devices["a"].cli("device", "info", "--json").stdout)
        changes = [("POST", "/api/v1/devices", {"name": "v1", "group": "g", "ak_name": info["ak_name"],
                                                "cert_chain_pem": info["cert_chain_pem"]}),
                   ("POST", "/api/v1/groups", {"name": "g", "interval": 5,
                                               "reference": {"json": "{}", "sig": "AAAA", "chain": "x"}}),
                   ("DELETE", "/api/v1/devices/a", None)]
        before = snapshot(fleet)
        for path in reads:
            s, body = call("GET", path, "viewer")
            assert s == 200, (path, s, body)
        for method, path, body in changes:
            s, r = call(method, path, "viewer", body)
            assert s == 403 and b"viewer" in r, (method, path, s, r)
            for who in (None, "rogue"):
                s, r = call(method, path, who, body)
                assert s == 403, (method, path, who, s, r)
        assert snapshot(fleet) == before
        # the admin passes the role check: the same requests reach the endpoint (a name and an AK
        # taken: 409; reference values the trust refuses: 400/403); a read is fine too
        s, r = call("POST", "/api/v1/devices", "admin", changes[0][2])
        assert s == 409, r
        s, r = call("POST", "/api/v1/groups", "admin", changes[1][2])
        assert s in (400, 403) and b"viewer" not in r, r
        s, r = call("DELETE", "/api/v1/devices/nobody", "admin")
        assert s == 404, r
        assert call("GET", "/api/v1/devices", "admin")[0] == 200
        assert snapshot(fleet) == before
        # push is the devices': a viewer's certificate neither helps nor hinders
        s, r = call("POST", "/api/v1/push/nonce", "viewer", {"device": "b"})
        assert s == 200, r
    finally:
        p.terminate()
        p.wait(timeout=30)


# ---- bad input --------------------------------------------------------------------------------

SQL = "x'); DROP TABLE devices; --"
ENDPOINTS = {
    "/api/v1/devices": {"name": "n1", "group": "g", "address": "127.0.0.1:1", "ak_name": "00" * 34,
                        "cert_chain_pem": "-----BEGIN CERTIFICATE-----\n"},
    "/api/v1/groups": {"name": "g2", "interval": 5, "pcrs": [12], "pin_ak": True, "min_version": 0,
                       "reference": {"json": "{}", "sig": "AAAA", "chain": "x"}},
    "/api/v1/vtpms": {"device": "b", "ek": "0f0e0d0c-0b0a-4908-8706-050403020100/ek-ecc", "name": "00" * 32},
    "/api/v1/push/nonce": {"device": "b"},
    "/api/v1/push/evidence": {"device": "b", "nonce": "00" * 32, "response": "AAAA"},
}


def snapshot(fleet):
    """What a request could change. Of devices, what the API sets (the sweep in `serve` marks
    devices missing meanwhile, as it should)."""
    tables = ("(SELECT id, name, group_id, address, ak_name, cert_chain_pem, subject, enrolled_at FROM devices)",
              "device_groups", "push_nonces", "trust", "vtpms")
    return [fleet.sql(f"SELECT md5(coalesce(string_agg(t::text, ',' ORDER BY t::text), '')) FROM {t} t")
            for t in tables]


def strings_replaced(body, value):
    """Each string of body (nested) replaced by value, one at a time."""
    for k, v in body.items():
        if isinstance(v, str):
            yield {**body, k: value}
        elif isinstance(v, dict):
            for sub in strings_replaced(v, value):
                yield {**body, k: sub}


def oversized(fleet, path, size, chunked=False):
    """POST a body of size bytes: (status, body) of the answer, read even when the server closes
    the connection before taking all of it."""
    host, port = fleet.url[len("http://"):].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=30) as s:
        head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        head += "Transfer-Encoding: chunked\r\n\r\n" if chunked else f"Content-Length: {size}\r\n\r\n"
        s.sendall(head.encode())
        try:
            chunk = b"x" * 65536
            for _ in range(size // len(chunk)):
                s.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
            if chunked:
                s.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # closed early: the answer is waiting
        data = b""
        try:
            while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < 2:
                more = s.recv(65536)
                if not more:
                    break
                data += more
        except OSError:
            pass
    status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/") else 0
    return status, data.split(b"\r\n\r\n", 1)[-1].decode(errors="replace")


def test_bad_input_on_every_endpoint(fleet, devices):
    # No worker runs: nothing else changes the tables meanwhile (push/nonce issues nonces only
    # when it succeeds, and its valid body is not sent here).
    fleet.stop_worker("w0") if "w0" in fleet.workers else None
    before = snapshot(fleet)
    for path, good in ENDPOINTS.items():
        cases = [
            ("malformed", b'{"name": "x",', None),
            ("not an object", b'["x"]', None),
            ("duplicate key", b'{"name": "a", "name": "b"}', None),
            ("unknown field", json.dumps({**good, "admin": True}).encode(), None),
            ("wrong type", json.dumps({**good, next(iter(good)): 5}).encode(), None),
            ("nul byte", json.dumps({**good, next(iter(good)): "a\u0000b"}).encode(), None),
        ]
        cases += [("sql", json.dumps(b).encode(), None) for b in strings_replaced(good, SQL)]
        for what, raw, want in cases:
            s, r = fleet.api("POST", path, raw=raw)
            assert 400 <= s < 500 and (want is None or s == want), (path, what, s, r)
            assert r and r.get("error"), (path, what, r)
        s, r = fleet.api("POST", path, raw=json.dumps(good).encode(), ctype="text/plain")
        assert s == 415, (path, r)
        # oversized: refused on its Content-Length, before a byte of it is read; and one sent
        # in chunks (no length given), refused once it passes the bound
        status, text = oversized(fleet, path, 9 * 1024 * 1024)
        assert status == 413 and "larger than" in text, (path, status, text)
        status, text = oversized(fleet, path, 9 * 1024 * 1024, chunked=True)
        assert status == 413 and "larger than" in text, (path, status, text)
    for path in ("/api/v1/devices/" + SQL.replace(" ", "%20"), "/api/v1/nothing", "/api/v1/devices/nobody"):
        s, r = fleet.api("GET", path)
        assert s in (400, 404), (path, s, r)
    assert snapshot(fleet) == before
    assert fleet.sql("SELECT count(*) FROM devices") == [["3"]]
    fleet.worker("w0")


def test_killed_worker_is_reported_missing(fleet, devices):
    """A worker killed with -9 leaves its row: once its heartbeat is 30 s old, one worker-missing
    alert names it. w1 of test_killed_worker_loses_no_verdict is that worker when the module runs
    whole (its 30 s have mostly passed by now); run alone, this test kills one of its own. The
    workers stopped cleanly (w2, w3.*) are not reported."""
    killed = "w1"
    if not fleet.sql("SELECT name FROM workers WHERE name = 'w1'"):
        killed = "w9"
        fleet.worker(killed)
        wait_for(lambda: fleet.sql("SELECT name FROM workers WHERE name = 'w9'") or None, timeout=20,
                 what="w9's heartbeat")
        fleet.stop_worker(killed, signal.SIGKILL)

    def missing():
        s, r = fleet.api("GET", "/api/v1/alerts")
        return [a["message"] for a in r["alerts"] if a["kind"] == "worker-missing"] or None
    msgs = wait_for(missing, timeout=45, what="the worker-missing alert")
    assert len(msgs) == 1 and f"worker {killed} " in msgs[0], msgs


def test_status_page_in_a_browser(fleet, devices, worker, tmp_path):
    """The operators' page as headless Chromium renders it: every device with its last verdict,
    the failing one first with its failing check, the alerts."""
    fleet.next_verdict("a")
    fleet.next_verdict("c")
    r = subprocess.run([tool("chromium"), "--headless", "--no-sandbox", "--disable-gpu",
                        f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom", fleet.url + "/"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    dom = r.stdout
    rows = re.findall(r'<tr class="(\w+)"><td>([^<]*)</td><td>([^<]*)</td><td>(\w+)</td><td>[^<]*</td>'
                      r'<td>(\w+)</td><td>([^<]*)</td></tr>', dom)
    # B's last verdict is the push of A's evidence (test_push_of_another_devices_evidence)
    assert [(cls, name, mode, verdict) for cls, name, _, mode, verdict, _ in rows] == [
        ("untrusted", "b", "push", "untrusted"), ("untrusted", "c", "pull", "untrusted"),
        ("trusted", "a", "pull", "trusted")], dom
    assert "AK binding" in rows[0][5] and rows[1][5] == "reference values", rows
    assert re.search(r'<p id="summary">3 devices, 2 failing</p>', dom), dom
    assert "device c failed attestation: reference values" in dom


# ---- review: the push endpoints flooded ----------------------------------------------------------

def test_push_flood_is_bounded(fleet, devices):
    """Anyone on the network may ask for push nonces and push evidence under an enrolled name
    (the status page lists the names). 300 nonce requests leave at most FLEET_PUSH_NONCES_MAX (8)
    unspent nonces of the device, the newest (before: one row each, kept for a day); 15 pushes of
    garbage, each with its own nonce, are each recorded as a failing verdict but raise at most
    one verdict-failed alert, so at most one run of the alert command (before: one each)."""
    for _ in range(300):
        s, r = fleet.api("POST", "/api/v1/push/nonce", {"device": "b"})
        assert s == 200, r
    live = fleet.sql("SELECT count(*) FROM push_nonces n JOIN devices d ON d.id = n.device_id "
                     "WHERE d.name = 'b' AND n.used_at IS NULL AND n.expires_at > now()")
    assert int(live[0][0]) <= 8, live
    # the newest nonce is good, an evicted one is refused like a spent one
    s, old = fleet.api("POST", "/api/v1/push/nonce", {"device": "b"})
    for _ in range(8):
        s, new = fleet.api("POST", "/api/v1/push/nonce", {"device": "b"})
    garbage = base64.b64encode(b"not an AttestResponse").decode()
    s, r = fleet.api("POST", "/api/v1/push/evidence", {"device": "b", "nonce": old["nonce"], "response": garbage})
    assert s == 409, r

    def alert_runs():
        return sum(1 for kind, dev in fleet.alerts() if kind == "verdict-failed" and dev.strip() == "b")
    before_verdicts, before_alerts = len(fleet.verdicts("b")), alert_runs()
    for _ in range(15):
        s, n = fleet.api("POST", "/api/v1/push/nonce", {"device": "b"})
        s, r = fleet.api("POST", "/api/v1/push/evidence", {"device": "b", "nonce": n["nonce"], "response": garbage})
        assert s == 200 and r["verdict"] == "untrusted", r
        # recorded with the reason: no quote in it, and the parser's word on why
        assert r["failed_check"] == "no evidence" and r["report"]["error"], r
    assert len(fleet.verdicts("b")) == before_verdicts + 15
    assert fleet.verdicts("b")[-1][2] == "no evidence"
    time.sleep(1)  # the alert command is not waited for
    assert alert_runs() - before_alerts <= 1, fleet.alerts()


def test_no_push_for_a_pull_device(fleet, devices):
    """Every pushed verdict postpones the device's pull work by an interval: pushes of garbage
    under a pull device's name, one an interval, would keep the workers from ever attesting it.
    A pull device gets no push nonce (403), so no push is ever recorded for it."""
    s, r = fleet.api("POST", "/api/v1/push/nonce", {"device": "c"})
    assert s == 403 and "attested by pull" in r["error"], r


# ---- retention --------------------------------------------------------------------------------------

def test_retention_and_stats(fleet, devices, worker):
    """prune --days N deletes verdicts and alerts older than N days, oldest first, and nothing
    newer; the devices keep their last verdict. stats reports the history's size and its cost per
    device per day (CLI and API)."""
    fleet.next_verdict("a")
    old = [r[0] for r in fleet.sql("SELECT v.id FROM verdicts v JOIN devices d ON d.id = v.device_id "
                                   "WHERE d.name = 'a' ORDER BY v.id LIMIT 3")]
    assert len(old) == 3
    fleet.sql(f"UPDATE verdicts SET at = now() - interval '40 days' WHERE id IN ({','.join(old)})")
    fleet.sql("INSERT INTO alerts (at, kind, device, message) VALUES (now() - interval '40 days', 'test', 'a', 'old')")
    recent = int(fleet.sql("SELECT count(*) FROM verdicts WHERE at > now() - interval '30 days'")[0][0])
    r = json.loads(fleet.run("prune", "--days", "30").stdout)
    assert r == {"deleted_verdicts": 3, "deleted_alerts": 1}, r
    assert fleet.sql(f"SELECT count(*) FROM verdicts WHERE id IN ({','.join(old)})") == [["0"]]
    assert int(fleet.sql("SELECT count(*) FROM verdicts")[0][0]) >= recent
    s, dev = fleet.api("GET", "/api/v1/devices/a")
    assert s == 200 and dev["last_verdict"], dev
    assert fleet.run("prune", "--days", "0", check=False).returncode != 0
    stats = json.loads(fleet.run("stats").stdout)
    assert stats["devices"] == 3 and stats["verdicts"] >= recent, stats
    assert stats["verdicts_bytes"] > 0 and stats["bytes_per_device_per_day"] > 0, stats
    s, api_stats = fleet.api("GET", "/api/v1/stats")
    assert s == 200 and api_stats["devices"] == 3, api_stats


# ---- a device's identity on the wire: its TLS client key in its TPM --------------------------------

def tls_serve(fleet, d):
    """serve over TLS (server CA and operator CA made in d); its https URL and the process."""
    for ca in ("server-ca", "operator-ca"):
        make_ca(d, ca)
    make_leaf(d, "server", "server-ca", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth")
    p = subprocess.Popen([str(FLEET), "serve", "--listen", "127.0.0.1:0", "--tls-cert", d / "server.pem",
                          "--tls-key", d / "server.key", "--client-ca", d / "operator-ca.pem"],
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                         env=conninfo_env(fleet.conninfo))
    line = p.stdout.readline()
    assert line.startswith("listening on "), line
    return line.split()[-1], p


@pytest.fixture(scope="module")
def b_tls(devices, env, test_root):  # noqa: F811
    """B's TLS key, made in its TPM, certified by the Device CA on the word of B's AK: the
    bundle (the request with the AK's certification), and the chain (certificate, Device CA)."""
    d = Path(test_root) / "fleet-b-tls"
    d.mkdir()
    bundle = d / "tls.csr"
    devices["b"].cli("device", "csr", "--tls", "--cn", "fleet-b tls", "--out", bundle)
    pki = pki_of(env)
    r = subprocess.run([str(PKI_TOOL), "issue", "--pki", pki["dir"], "--ca", "device", "--profile", "tls", "--csr",
                        bundle, "--out", d / "tls.pem", "--passphrase-file", pki["pass"]],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    chain = d / "tls-chain.pem"
    chain.write_text((d / "tls.pem").read_text() + env.cert("device-ca").read_text())
    return {"bundle": bundle, "chain": chain}


def test_device_tls_key_lives_in_its_tpm(fleet, devices, env, b_tls, tmp_path):
    """B's TLS client key is made in its TPM and certified by the Device CA on the word of B's AK
    (trustme-pki issue --profile tls checks the AK's TPM2_Certify of it); B, enrolled with that
    certificate, pushes over TLS, its handshake signed by its TPM through trustmed. Refused: B's
    push without the certificate; the certificate used with another TPM (A's: the client sees
    the mismatch, and a copy of B's wrapped key files does not load in A's TPM); an ordinary CSR
    at the Device CA; a certificate for B's genuine TPM key from another fleet's Device CA."""
    b, a = devices["b"], devices["a"]
    d = tmp_path
    bundle, chain = b_tls["bundle"], b_tls["chain"]
    text = bundle.read_text()
    assert "TRUSTME TLS KEY CERTIFY" in text and "TRUSTME TLS KEY PUBLIC" in text, text
    pki = pki_of(env)
    # the Device CA refuses a CSR without the AK's certification: a key anyone may hold
    openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", "soft.key",
            "-out", "soft.csr", "-subj", "/CN=soft", cwd=d)
    r = subprocess.run([str(PKI_TOOL), "issue", "--pki", pki["dir"], "--ca", "device", "--profile", "tls", "--csr",
                        d / "soft.csr", "--out", d / "soft.pem", "--passphrase-file", pki["pass"]],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "no proof that the key lives in a TPM" in r.stderr, r.stderr
    # tampering with the bundle: the AK certified another key than the request's
    soft_req = (d / "soft.csr").read_text()
    forged = d / "forged.csr"
    forged.write_text(soft_req + text.split("-----END CERTIFICATE REQUEST-----\n", 1)[1])
    r = subprocess.run([str(PKI_TOOL), "issue", "--pki", pki["dir"], "--ca", "device", "--profile", "tls", "--csr",
                        forged, "--out", d / "forged.pem", "--passphrase-file", pki["pass"]],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and ("another request" in r.stderr or "not the certified TPM key" in r.stderr), r.stderr

    # B enrolled again, with its TLS certificate pinned
    fleet.run("remove", "b")
    fleet.run("enroll", "b", "--group", "g", "--info", device_info_file(b, b.base / "info.json"),
              "--tls-cert", chain)
    server, p = tls_serve(fleet, d)
    try:
        def push_b(cert, via, **kw):
            return subprocess.run([str(FLEET), "push", "--server", server, "--device", "b", "--attest",
                                   attest_address(b), "--tls-ca", d / "server-ca.pem",
                                   *(["--tls-cert", cert, "--control", via.run_dir / "control.sock"] if cert else [])],
                                  capture_output=True, text=True, timeout=60)
        n = len(fleet.verdicts("b"))
        r = push_b(chain, b)
        assert r.returncode == 0 and json.loads(r.stdout)["verdict"] == "trusted", (r.stdout, r.stderr)
        assert len(fleet.verdicts("b")) == n + 1
        # without its certificate: refused, nothing recorded
        r = push_b(None, b)
        assert r.returncode == 1 and "HTTP 403" in r.stderr and "presented none" in r.stderr, r.stderr
        # B's certificate with A's TPM: A's TPM does not hold the key
        r = push_b(chain, a)
        assert r.returncode != 0 and "does not hold the key" in r.stderr, r.stderr
        # a copy of B's key files (wrapped by B's TPM) does not load in A's TPM
        b_tpm, a_tpm = next(b.data_dir.rglob("ak.pub")).parent, next(a.data_dir.rglob("ak.pub")).parent
        for f in ("tls.pub", "tls.priv"):
            shutil.copy(b_tpm / f, a_tpm / f)
        with pytest.raises(conftest.CliError) as e:
            a.cli("device", "csr", "--tls", "--out", d / "a-tls.csr")
        assert "cannot load the TLS client key" in str(e.value), e.value
        # B's genuine TPM key, certified by another fleet's Device CA: the handshake works (B's
        # TPM signs), the fleet refuses the certificate
        make_ca(d, "other-device-ca")
        (d / "client.ext").write_text("extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature\n")
        openssl("x509", "-req", "-in", bundle, "-CA", "other-device-ca.pem", "-CAkey", "other-device-ca.key",
                "-CAcreateserial", "-out", "other.pem", "-days", "2", "-extfile", "client.ext", cwd=d)
        r = push_b(d / "other.pem", b)
        assert r.returncode == 1 and "HTTP 403" in r.stderr and "client certificate" in r.stderr, r.stderr
        assert len(fleet.verdicts("b")) == n + 1
        # the device's certificate is no operator's
        ctx = ssl.create_default_context(cafile=str(d / "server-ca.pem"))
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen("https://" + server + "/api/v1/devices", timeout=30, context=ctx)
        assert e.value.code == 403
    finally:
        p.terminate()
        p.wait(timeout=30)


class Tap:
    """The network between a worker and a device's TLS endpoint: forwards bytes both ways to
    `target` and keeps what the device's side sent (`seen`); with `flip`, changes one byte of
    every chunk the device's side sends after the first 2 KiB."""

    def __init__(self, target):
        self.target, self.flip, self.seen = target, False, bytearray()
        self.srv = socket.socket()
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(16)
        self.address = f"127.0.0.1:{self.srv.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                client, _ = self.srv.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(client,), daemon=True).start()

    def _pipe(self, src, dst, down):
        sent = 0
        try:
            while chunk := src.recv(65536):
                if down:
                    self.seen += chunk
                    if self.flip and sent + len(chunk) > 2048:
                        chunk = bytearray(chunk)
                        chunk[-1] ^= 0x01
                        chunk = bytes(chunk)
                sent += len(chunk)
                dst.sendall(chunk)
        except OSError:
            pass
        for sock in (src, dst):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _one(self, client):
        host, port = self.target.rsplit(":", 1)
        try:
            up = socket.create_connection((host, int(port)), timeout=10)
        except OSError:
            client.close()
            return
        t = threading.Thread(target=self._pipe, args=(client, up, False), daemon=True)
        t.start()
        self._pipe(up, client, True)
        t.join(timeout=15)
        client.close()
        up.close()

    def close(self):
        self.srv.close()


class MitmEndpoint:
    """An attacker's TLS endpoint with a certificate of its own (P-256, its own CA), passing each
    request on to the genuine device's plain tpmd and its answers back."""

    def __init__(self, d, device_attest):
        make_ca(d, "mitm-ca")
        make_leaf(d, "mitm", "mitm-ca", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth")
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(d / "mitm.pem", d / "mitm.key")
        self.device = device_attest
        self.srv = socket.socket()
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(16)
        self.address = f"127.0.0.1:{self.srv.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                client, _ = self.srv.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(client,), daemon=True).start()

    def _one(self, client):
        try:
            with self.ctx.wrap_socket(client, server_side=True) as tls:
                host, port = self.device.rsplit(":", 1)
                with socket.create_connection((host, int(port)), timeout=10) as up:
                    up.sendall(frame(read_frame(tls)))
                    tls.sendall(frame(read_frame(up)))
        except (OSError, EOFError, ssl.SSLError):
            pass

    def close(self):
        self.srv.close()


def attest_tls(device, chain, attest):
    """trustme-fleet attest-tls on device with its certificate chain, in front of attest."""
    p = subprocess.Popen([str(FLEET), "attest-tls", "--listen", "127.0.0.1:0", "--attest", attest, "--tls-cert", chain,
                          "--control", device.run_dir / "control.sock"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    if not line.startswith("listening on "):
        p.wait(timeout=30)
        raise AssertionError(f"attest-tls: {line!r} {p.stderr.read()}")
    return line.split()[-1], p


def test_pull_over_tls(fleet, devices, env, worker, b_tls, tmp_path):
    """B enrolled with its TLS certificate and an address is pulled over TLS: its endpoint
    (attest-tls, the handshake signed by B's TPM) must present the pinned certificate. On the
    path between worker and device: the exchange is not readable, a changed byte is no evidence,
    an attacker's endpoint with a certificate of its own or with another fleet device's genuine
    certificate (C's, its key in C's TPM) is refused with "device TLS" and an alert, although it
    passes B's own quote on."""
    b, c = devices["b"], devices["c"]
    d = tmp_path
    procs, taps = [], []
    try:
        addr, p = attest_tls(b, b_tls["chain"], attest_address(b))
        procs.append(p)
        tap = Tap(addr)
        taps.append(tap)
        fleet.run("remove", "b", check=False)
        fleet.run("enroll", "b", "--group", "g", "--info", device_info_file(b, b.base / "info.json"),
                  "--address", tap.address, "--tls-cert", b_tls["chain"])
        v = fleet.next_verdict("b")
        assert v[1] == "t", (v, fleet.sql("SELECT report FROM verdicts ORDER BY id DESC LIMIT 1"))
        # what the network saw: no quote (its TPMS_ATTEST magic), no certificate, which the plain
        # endpoint shows
        plain = quote_of(attest_address(b), os.urandom(32), [11])
        for marker in (b"\xffTCG", b"BEGIN CERTIFICATE"):
            assert marker in plain and tap.seen and marker not in bytes(tap.seen), marker

        def last_report(device):
            return json.loads(fleet.sql(f"SELECT v.report FROM verdicts v JOIN devices d ON d.id = v.device_id "
                                        f"WHERE d.name = '{device}' ORDER BY v.id DESC LIMIT 1")[0][0])

        # a changed byte on the way: no evidence, never a verdict on altered content
        tap.flip = True
        v = fleet.next_verdict("b")
        assert v[1] == "f" and v[2] == "no evidence", v
        tap.flip = False
        # an attacker's endpoint (its own certificate) that passes B's genuine quote on
        mitm = MitmEndpoint(d, attest_address(b))
        taps.append(mitm)
        tap.target = mitm.address
        v = fleet.next_verdict("b")
        assert v[1] == "f" and v[2] == "device TLS", v
        why = last_report("b")["error"]
        assert why.startswith("the certificate of its attestation endpoint: ") and "enrolled with" not in why, why
        wait_for(lambda: ("verdict-failed", "b") in fleet.alerts(), timeout=10, what="the alert for b")
        # another fleet device's genuine certificate (C's key, in C's TPM), in front of B's tpmd
        pki = pki_of(env)
        c.cli("device", "csr", "--tls", "--cn", "fleet-c tls", "--out", d / "c-tls.csr")
        subprocess.run([str(PKI_TOOL), "issue", "--pki", pki["dir"], "--ca", "device", "--profile", "tls", "--csr",
                        d / "c-tls.csr", "--out", d / "c-tls.pem", "--passphrase-file", pki["pass"]],
                       check=True, capture_output=True, timeout=60)
        (d / "c-chain.pem").write_text((d / "c-tls.pem").read_text() + env.cert("device-ca").read_text())
        c_addr, cp = attest_tls(c, d / "c-chain.pem", attest_address(b))
        procs.append(cp)
        tap.target = c_addr
        v = fleet.next_verdict("b")
        assert v[1] == "f" and v[2] == "device TLS", v
        assert "is not the TLS certificate device b enrolled with" in last_report("b")["error"], last_report("b")
        # B's endpoint again: trusted, also with its 16 connection slots held by idle clients
        # (the oldest makes room)
        tap.target = addr
        host, port = addr.rsplit(":", 1)
        idle = [socket.create_connection((host, int(port)), timeout=10) for _ in range(16)]
        try:
            time.sleep(0.5)
            v = fleet.next_verdict("b")
            assert v[1] == "t", v
        finally:
            for sock in idle:
                sock.close()
        # B's certificate where the TPM does not hold its key (C's): attest-tls refuses to start
        with pytest.raises(AssertionError) as e:
            attest_tls(c, b_tls["chain"], attest_address(c))
        assert "does not hold the key" in str(e.value), e.value
    finally:
        for t in taps:
            t.close()
        for p in procs:
            p.terminate()
            p.wait(timeout=30)
        # B back as it was: pushing, with its TLS certificate
        fleet.run("remove", "b", check=False)
        fleet.run("enroll", "b", "--group", "g", "--info", device_info_file(b, b.base / "info.json"),
                  "--tls-cert", b_tls["chain"])


# ---- containers' vTPMs --------------------------------------------------------------------------

def test_vtpm_attested_by_its_device(fleet, env, worker, tmp_path):
    """A device (a raw trustme-tpmd with its swtpm, provisioned by the test PKI) whose runtime log
    has two containers' vtpm-ek events, approved by its group's reference values. Enrolled under
    it: the first vTPM with the EK its log names ("attested"), the second with another EK
    ("another EK": its log vouches for a different vTPM under that UUID), a third never measured
    ("never seen"). Bad vTPM enrollments are refused."""
    import hashlib
    from pb import field_bytes
    from test_tpmd import BOOT, CERT_INSTALL, CSR, DEVICE_CSR, OK, RUNTIME, Tpmd, event, install_ek_cert, \
        manufacturer_ca
    d = tmp_path
    u1, u2, u3 = ("0f0e0d0c-0b0a-4908-8706-05040302010%d" % i for i in range(3))
    ek1, ek2, other = os.urandom(32), os.urandom(32), os.urandom(32)
    # not under tmp_path: tpmd's user must reach it (as test_tpmd.py's tpmd_dir)
    base = Path(tempfile.mkdtemp(prefix=f"{conftest.TEST_PREFIX}-fleet-v-", dir="/tmp"))
    os.chmod(base, 0o755)
    t = Tpmd(base / "v")
    try:
        t.start()
        boot = [event(BOOT, "binary", p.name, hashlib.sha256(p.read_bytes()).digest())
                for p in (conftest.TRUSTMED, SCD, TPMD)]
        t.measure(*boot, event(RUNTIME, "vtpm-ek", f"{u1}/ek-ecc", ek1), event(RUNTIME, "vtpm-ek", f"{u2}/ek-rsa", ek2))
        mkey, mcert = manufacturer_ca(d)
        install_ek_cert(t, d, mkey, mcert)
        (d / "v.csr").write_bytes(t.ok(DEVICE_CSR, field_bytes(1, b"fleet-v"), CSR)[1][0])
        subprocess.run([str(PKI_TOOL), "issue", "--pki", env.pki, "--ca", "device", "--csr", d / "v.csr", "--out",
                        d / "v.enc", "--passphrase-file", env.passfile, "--ek-anchor", mcert], check=True,
                       capture_output=True)
        t.ok(CERT_INSTALL, field_bytes(1, (d / "v.enc").read_bytes() + env.cert("device-ca").read_bytes()), OK)
        info = t.info()
        (d / "v.json").write_text(json.dumps({"ak_name": info[4][0].hex(), "cert_chain_pem": info[5][0].decode()}))
        refs = d / "refs.json"
        subprocess.run([str(PKI_TOOL), "rim", "--out", refs, "--version", "1", "--pcr", "11", "--pcr", "12",
                        "--binary", conftest.TRUSTMED, "--binary", SCD, "--binary", TPMD,
                        "--vtpm-ek", f"{u1}/ek-ecc=000b{ek1.hex()}", "--vtpm-ek", f"{u2}/ek-rsa={ek2.hex()}"],
                       check=True, capture_output=True)
        subprocess.run([str(PKI_TOOL), "sign", refs, "--pki", env.pki, "--signer", "software",
                        "--passphrase-file", env.passfile], check=True, capture_output=True)
        fleet.run("group", "vg", "--reference", refs, "--interval", INTERVAL)
        host, port = t.attest_address()
        fleet.run("enroll", "v", "--group", "vg", "--info", d / "v.json", "--address", f"{host}:{port}")
        fleet.run("vtpm-enroll", "v", f"{u1}/ek-ecc", "000b" + ek1.hex())
        fleet.run("vtpm-enroll", "v", f"{u2}/ek-rsa", other.hex())
        s, r = fleet.api("POST", "/api/v1/vtpms", {"device": "v", "ek": f"{u3}/ek-ecc", "name": other.hex()})
        assert s == 201, r
        # refused: a name that is no vTPM EK's, a bad name, an unknown device, the same one twice
        for body, want in (({"device": "v", "ek": "c0/ek-ecc", "name": other.hex()}, 400),
                           ({"device": "v", "ek": f"{u3}/ek-dsa", "name": other.hex()}, 400),
                           ({"device": "v", "ek": f"{u3}/ek-rsa", "name": "zz"}, 400),
                           ({"device": "nobody", "ek": f"{u3}/ek-rsa", "name": other.hex()}, 404),
                           ({"device": "v", "ek": f"{u1}/ek-ecc", "name": ek1.hex()}, 409)):
            s, r = fleet.api("POST", "/api/v1/vtpms", body)
            assert s == want, (body, s, r)
        v = fleet.next_verdict("v")
        assert v[1] == "t", v

        def states():
            got = {x["ek"]: x["state"] for x in json.loads(fleet.run("vtpms").stdout) if x["device"] == "v"}
            return got if got.get(f"{u1}/ek-ecc") == "attested" else None
        got = wait_for(states, timeout=10, what="the vTPM attested")
        assert got == {f"{u1}/ek-ecc": "attested", f"{u2}/ek-rsa": "another EK", f"{u3}/ek-ecc": "never seen"}, got
        s, r = fleet.api("GET", "/api/v1/vtpms")
        assert s == 200 and {x["ek"]: x["state"] for x in r["vtpms"]} == got, r
    finally:
        fleet.run("remove", "v", check=False)
        t.cleanup()
        shutil.rmtree(base, ignore_errors=True)
