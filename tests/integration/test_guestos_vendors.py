"""GuestOS trust between vendors and over time (issue 14): two GuestOS vendors under one General
root, names bound to their first signer, CAs marked for GuestOS signing, revocation of what is
installed, and replays of old signed configs. The attacker is a vendor holding a registered
GuestOS Signing CA, or someone replaying old validly signed files."""
import hashlib
import json
import ssl

import pytest

from conftest import wait_for
from test_guestos import (PKI_TOOL, container, create, env, gdaemon, gentry, glist,  # noqa: F401
                          install, logs_show, run, start_with_device, store)


def cert_sha256(path):
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(path.read_text())).hexdigest()


class Vendor:
    """A second GuestOS vendor: its own GuestOS Signing CA, issued by the same General root
    (trustme-pki issue --ca general-root --profile guestos-ca), and a signing key below it."""

    def __init__(self, env, name):
        d = env.tmpdir(f"vendor-{name}-")
        self.ca_key, ca_csr, self.ca = d / "ca.key", d / "ca.csr", d / "ca.pem"
        run("openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-aes-256-cbc", "-pass", f"file:{env.passfile}", "-out", self.ca_key)
        run("openssl", "req", "-new", "-key", self.ca_key, "-passin", f"file:{env.passfile}",
            "-out", ca_csr, "-subj", f"/O={name}/CN={name} GuestOS Signing CA")
        run(PKI_TOOL, "issue", "--pki", env.pki, "--ca", "general-root", "--profile", "guestos-ca",
            "--csr", ca_csr, "--out", self.ca, "--passphrase-file", env.passfile)
        key, csr, cert, ext = d / "key.pem", d / "csr.pem", d / "cert.pem", d / "ext"
        ext.write_text("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                       "extendedKeyUsage=codeSigning\nsubjectKeyIdentifier=hash\n"
                       "authorityKeyIdentifier=keyid:always\n")
        run("openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-aes-256-cbc", "-pass", f"file:{env.passfile}", "-out", key)
        run("openssl", "req", "-new", "-key", key, "-passin", f"file:{env.passfile}", "-out", csr,
            "-subj", f"/O={name}/CN={name}")
        run("openssl", "x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey", self.ca_key,
            "-passin", f"file:{env.passfile}", "-days", "30", "-extfile", ext, "-out", cert)
        self.key = (key, cert, self.ca)
        self.sha256 = cert_sha256(self.ca)


@pytest.fixture(scope="module")
def vendor_x(env):
    return Vendor(env, "vendorX")


def refused(d, src, *needles):
    before = (glist(d), store(d))
    r = install(d, src, check=False)
    assert r.returncode != 0, r.stdout
    for n in needles:
        assert n in r.stderr, r.stderr
    assert (glist(d), store(d)) == before
    return r.stderr


# ---- §2: a GuestOS name belongs to whoever signs it first -----------------------------------------

def test_name_belongs_to_its_first_signer(gdaemon, env, vendor_x):
    ours = cert_sha256(env.cert("guestos-ca"))
    d = gdaemon(guestos_cas=[str(env.cert("guestos-ca")), str(vendor_x.ca)])
    install(d, env.build("bb", 1))
    create(d, "c")
    d.cli("start", "c")
    logs_show(d, "c", "marker-v1")
    # vendorX signs a higher version of our name: refused, with both CAs named
    err = refused(d, env.build("bb", 2, tree="v2", key=vendor_x.key), "not installed",
                  f"belongs to the GuestOS Signing CA with SHA-256 {ours}", vendor_x.sha256,
                  "trust.guestos_owners")
    assert "CN=vendorX" in err
    events = [e for e in d.audit_events() if e["event"] == "guestos.install"]
    assert events[-1]["result"] == "fail"
    # vendorX's own names are its own
    assert install(d, env.build("vx", 1, key=vendor_x.key)).stdout.startswith("installed vx-1")
    # and ours stay ours, also after a restart and after every version of bb is gone
    d.cli("stop", "--kill", "c")
    d.cli("remove", "c")
    d.cli("guestos", "remove", "bb")
    d.restart()
    refused(d, env.build("bb", 2, tree="v2", key=vendor_x.key), "belongs to the GuestOS Signing CA")
    refused(d, env.build("vx", 2, tree="v2"), f"SHA-256 {vendor_x.sha256}")
    assert install(d, env.build("bb", 2, tree="v2")).stdout.startswith("installed bb-2")


def test_name_handed_over_by_device_json(gdaemon, env, vendor_x):
    d = gdaemon(guestos_cas=[str(env.cert("guestos-ca")), str(vendor_x.ca)])
    install(d, env.build("bb", 1))
    refused(d, env.build("bb", 2, tree="v2", key=vendor_x.key), "belongs to")
    # the device owner hands bb to vendorX
    dev = json.loads((d.data_dir / "device.json").read_text())
    dev["trust"]["guestos_owners"] = {"bb": vendor_x.sha256}
    d.stop()
    (d.data_dir / "device.json").write_text(json.dumps(dev))
    d.start()
    assert install(d, env.build("bb", 2, tree="v2", key=vendor_x.key)).stdout.startswith("installed bb-2")
    refused(d, env.build("bb", 3), "bound by device.json")
    # a malformed binding is a device config error naming the path
    dev["trust"]["guestos_owners"] = {"bb": "ABC"}
    d.stop()
    (d.data_dir / "device.json").write_text(json.dumps(dev))
    with pytest.raises(RuntimeError, match=r"\$\.trust\.guestos_owners\.bb"):
        d.start()


def test_only_marked_cas_register(gdaemon, env, vendor_x):
    d = gdaemon(guestos_cas=[])
    cas = d.data_dir / "trust/cas"

    def ca_refused(cert, *needles):
        r = d.cli("ca", "register", cert, check=False)
        assert r.returncode != 0
        for n in needles:
            assert n in r.stderr, r.stderr
        assert not cas.exists() or list(cas.iterdir()) == []
        assert [e for e in d.audit_events() if e["event"] == "ca.register"][-1]["result"] == "fail"

    ca_refused(env.cert("general-root-ca"), "CA not registered", "the trust anchor itself")
    ca_refused(env.cert("device-ca"), "CA not registered", "not marked for GuestOS signing")
    out = d.cli("ca", "register", vendor_x.ca).stdout
    assert vendor_x.sha256 in out, out


def test_unmarked_ca_in_device_json_signs_nothing(gdaemon, env):
    """A Device CA listed as a GuestOS CA in device.json, and a codeSigning leaf it issued: the
    chain passes through a listed CA, which lacks the mark."""
    key = env.issue(ca="device", profile="signing")
    d = gdaemon(guestos_cas=[str(env.cert("device-ca"))])
    refused(d, env.build("bb", 7, key=key), "signature rejected", "not marked for GuestOS signing")
