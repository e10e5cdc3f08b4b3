#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
# trustme end to end: install, build, generate a development PKI, build and sign a busybox
# GuestOS, start trustmed (and its token and TPM services, the TPM an embedded swtpm) in a scratch
# directory trusting that PKI, provision the device's attestation key and its vTPM issuer, show a
# tampered GuestOS refused and install the real one, create a container on it whose data is
# encrypted under a PIN (and bound to the TPM) and that has a vTPM and a keystore of its own, start
# it, run commands in it, show its vTPM (PCRs that replay its event log, an EK certificate that
# chains to the PKI), list, stop it and show that its data is ciphertext on the disk, sign inside
# the container with a keystore key (through PKCS#11) and verify that key's attestation against the
# PKI, verify the audit log, and end with trustme-verify checking the running device against
# signed reference values. The container is bridged and reaches a web server on the host. Cleans
# up.
#   scripts/demo.sh [--keep] [--installed]
# --keep leaves trustmed and the container running at the end; --installed runs the installed
# programs (/usr/sbin/trustmed, /usr/bin/trustme, ...: the Debian packages, docs/PACKAGING.md)
# instead of building them (scripts/package-test.sh).
set -eu
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "demo.sh: run as root" >&2; exit 1; }
keep=no; installed=no
for opt in "$@"; do
    case $opt in
        --keep) keep=yes ;;
        --installed) installed=yes ;;
        *) echo "usage: $0 [--keep] [--installed]" >&2; exit 2 ;;
    esac
done
if [ "$installed" = yes ]; then
    TRUSTMED=/usr/sbin/trustmed TRUSTME=/usr/bin/trustme PKI=/usr/bin/trustme-pki
    GUESTOS=/usr/bin/trustme-guestos VERIFY=/usr/bin/trustme-verify
    SCD=/usr/libexec/trustme/trustme-scd TPMD=/usr/libexec/trustme/trustme-tpmd
    P11MOD=/usr/lib/$(gcc -print-multiarch)/pkcs11/libtrustme-pkcs11.so
else
    TRUSTMED=build/src/daemon/trustmed TRUSTME=build/src/cli/trustme PKI=build/src/tools/pki/trustme-pki
    GUESTOS=build/src/tools/guestos/trustme-guestos VERIFY=build/src/verify/trustme-verify
    SCD=build/src/scd/trustme-scd TPMD=build/src/tpmd/trustme-tpmd
    P11MOD=build/src/keystore/pkcs11/libtrustme-pkcs11.so
fi

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

if [ "$installed" = yes ]; then
    step "installing dependencies (the programs are the installed ones)"
    scripts/install-deps.sh
else
    step "installing dependencies and building"
    scripts/install-deps.sh
    scripts/build.sh >/dev/null
fi

work=$(mktemp -d /tmp/trustme-demo.XXXXXX)
chmod 0711 "$work"   # the TPM service's own user must reach its directories inside
trustmed_pid=
web_pid=
cleanup() {
    [ -n "$web_pid" ] && kill "$web_pid" 2>/dev/null
    [ "$keep" = yes ] && return
    mountpoint -q "$work/look" 2>/dev/null && umount "$work/look"
    if [ -n "$trustmed_pid" ] && kill -0 "$trustmed_pid" 2>/dev/null; then
        kill -TERM "$trustmed_pid"    # trustmed stops its containers, then exits
        wait "$trustmed_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

step "building a busybox guest root file system (with Debian's tpm2-tools for its vTPM)"
scripts/mkrootfs.sh "$work/rootfs"
# with Debian's pkcs11-tool and openssl, and the keystore's PKCS#11 module (docs/KEYSTORE.md)
scripts/rootfs-add-pkcs11.sh "$work/rootfs" "$P11MOD"
# tpm2-tools and the swtpm TCTI with the libraries they load, at the same paths inside.
for bin in /usr/bin/tpm2 /usr/lib/x86_64-linux-gnu/libtss2-tcti-swtpm.so.0; do
    for f in "$bin" $(ldd "$bin" | sed -n 's/.*=> \(\/[^ ]*\) .*/\1/p; s/^[[:space:]]*\(\/[^ ]*\) .*/\1/p'); do
        mkdir -p "$work/rootfs$(dirname "$f")"
        cp -L "$f" "$work/rootfs$f"
    done
done
for t in pcrread nvread readpublic; do ln -sf tpm2 "$work/rootfs/usr/bin/tpm2_$t"; done
du -sh "$work/rootfs"

step "generating a development PKI (Software Signing and Customer hierarchies, docs/PKI.md)"
# The release engineer's passphrase; a person would be asked on the terminal.
echo "demo PKI passphrase" > "$work/pki.pass"
chmod 600 "$work/pki.pass"
"$PKI" init "$work/pki" --passphrase-file "$work/pki.pass"
find "$work/pki" -name '*.pem' ! -path '*/crl/*' | sed "s|$work/||" | sort

step "building and signing a busybox GuestOS with the GuestOS Signing key"
mkdir "$work/build"
PATH="$(dirname "$PKI"):$PATH" "$GUESTOS" build "$work/rootfs" \
    --name busybox --version 1 --out "$work/build" --pki "$work/pki" --signer guestos \
    --passphrase-file "$work/pki.pass" --init /bin/sh \
    --arg -c --arg 'echo guest up; while :; do sleep 3600; done' --data /var/lib/app
ls -l "$work/build/busybox-1"
cat "$work/build/busybox-1/guestos.json"

step "the device trusts only that PKI's roots (device.json)"
mkdir -p "$work/data"
pki=$work/pki
cat > "$work/data/device.json" <<JSON
{
  "trust": {
    "software_signing_root": "$pki/software-signing/root-ca.pem",
    "general_root": "$pki/customer/general-root-ca.pem",
    "crls": ["$pki/crl/root-ca.pem", "$pki/crl/sub-ca.pem", "$pki/crl/general-root-ca.pem",
             "$pki/crl/guestos-ca.pem", "$pki/crl/device-ca.pem"]
  },
  "policy": {"allow_unsigned": false},
  "tpm": {"attest_address": "127.0.0.1:0"},
  "network": {"bridge": "tmdemo0", "subnet": "10.224.0.0/24"}
}
JSON
cat "$work/data/device.json"

step "starting trustmed (data and run dirs in $work)"
# A scratch device: its embedded TPM's state is scratch too (by default it would outlive the demo
# in /var/lib/trustme-swtpm, and the next run's fresh anchor table would not match it).
"$TRUSTMED" --data-dir "$work/data" --run-dir "$work/run" \
    --swtpm-state-dir "$work/swtpm" --cgroup-parent trustme-demo --log-level warn &
trustmed_pid=$!
i=0; until [ -S "$work/run/control.sock" ]; do
    i=$((i + 1)); [ $i -lt 500 ] || { echo "trustmed did not start" >&2; exit 1; }; sleep 0.01
done
trustme() { echo "\$ trustme $*"; "$TRUSTME" --run-dir "$work/run" "$@"; }

step "what trustmed measured into the TPM at start (the virtualization layer, boot PCR)"
trustme measurements

step "manufacturing: the TPM manufacturer CA (here the provisioning station) certifies the EK"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
    -keyout "$work/manufacturer.key" -out "$work/manufacturer.pem" \
    -subj "/CN=demo TPM manufacturer CA" -addext basicConstraints=critical,CA:TRUE \
    -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
"$TRUSTME" --run-dir "$work/run" device info --json |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["ek_public_pem"], end="")' > "$work/ek.pem"
"$PKI" ek-cert --ek "$work/ek.pem" --key "$work/manufacturer.key" \
    --cert "$work/manufacturer.pem" --out "$work/ek-cert.pem"
trustme device cert install "$work/ek-cert.pem" >/dev/null

step "provisioning the device: its TPM attestation key, certified by the Device CA"
echo "(the CA checks the EK certificate and the AK, and encrypts the certificate to the EK:"
echo " only this TPM can decrypt it, through TPM2_ActivateCredential)"
trustme device csr --out "$work/device.csr"
"$PKI" issue --pki "$pki" --ca device --csr "$work/device.csr" \
    --ek-anchor "$work/manufacturer.pem" --out "$work/device.pem" --passphrase-file "$work/pki.pass"
trustme device cert install "$work/device.pem" --chain "$pki/customer/device-ca.pem"

step "provisioning the device's vTPM issuer: a TPM key the AK vouches for, certified by the Device CA"
echo "(it signs the EK certificates of the containers' vTPMs: docs/VTPM.md \"EK certificates\")"
trustme device csr --vtpm-issuer --out "$work/vtpm-issuer.csr"
"$PKI" issue --pki "$pki" --ca device --profile vtpm-issuer --csr "$work/vtpm-issuer.csr" \
    --out "$work/vtpm-issuer.pem" --passphrase-file "$work/pki.pass"
trustme device cert install "$work/vtpm-issuer.pem" --chain "$pki/customer/device-ca.pem" >/dev/null
trustme device info

step "installing the GuestOS: a tampered copy is refused, the signed one accepted"
trustme ca register "$pki/customer/guestos-ca.pem"
cp -a "$work/build/busybox-1" "$work/tampered"
printf 'X' | dd of="$work/tampered/root.img" bs=1 seek=4096 conv=notrunc 2>/dev/null
echo "(one byte of root.img changed)"
trustme guestos install "$work/tampered" || true
trustme guestos install "$work/build/busybox-1"
trustme guestos list

cat > "$work/demo.json" <<JSON
{
  "name": "demo",
  "guestos": {"name": "busybox"},
  "hostname": "demo-guest",
  "memory_limit_mb": 128,
  "pids_limit": 256,
  "data_size_mb": 32,
  "keystore": true,
  "vtpm": true,
  "env": {"LD_LIBRARY_PATH": "/lib/x86_64-linux-gnu:/usr/lib/x86_64-linux-gnu"},
  "network": {"mode": "bridged", "dns": ["10.224.0.1"], "host_ports": [8000]}
}
JSON
# The demo runs without a terminal, so its secrets come from files (a person is asked instead).
printf '%s\n' 2468 24682468 > "$work/pair.pins"     # the first PIN, then the PUK
printf '%s\n' 2468 > "$work/pin"
printf '%s\n' 1111 > "$work/wrong-pin"
chmod 600 "$work/pair.pins" "$work/pin" "$work/wrong-pin"

step "creating a container: its data volume will be encrypted, unlocked by a PIN"
cat "$work/demo.json"
trustme create --pin-file "$work/pair.pins" "$work/demo.json"

step "starting it: a wrong PIN starts nothing, the right one unlocks its data key"
trustme start --pin-file "$work/wrong-pin" demo || true
trustme start --pin-file "$work/pin" demo

step "running commands inside it"
trustme run demo -- sh -c 'echo "hostname: $(hostname)"; echo "whoami:   $(id)"; echo "uid map:  $(cat /proc/self/uid_map)"'
trustme run demo -- ps
trustme run demo -- ip addr show eth0
trustme run demo -- ip route

step "its network: a veth on the bridge tmdemo0, isolated from other containers"
ip -brief addr show tmdemo0
trustme run demo -- ping -c 2 -W 1 10.224.0.1
# A host service on the bridge address: the container may reach it because its config opens
# port 8000 (network.host_ports); every other host port is dropped (docs/NETWORK.md).
mkdir -p "$work/www"
echo "hello from the host" > "$work/www/index.html"
python3 -m http.server 8000 --bind 10.224.0.1 --directory "$work/www" >/dev/null 2>&1 &
web_pid=$!
i=0; until python3 -c 'import socket; socket.create_connection(("10.224.0.1", 8000), 1)' 2>/dev/null; do
    i=$((i + 1)); [ $i -lt 100 ] || break; sleep 0.05
done
trustme run demo -- wget -qO- http://10.224.0.1:8000/
kill "$web_pid"; wait "$web_pid" 2>/dev/null || true
web_pid=
trustme run demo -- sh -c 'echo "a secret written by the guest" > /root/hello; cat /root/hello'
pid=$("$TRUSTME" --run-dir "$work/run" state demo | awk '/^init pid:/ {print $3}')
echo "on the host, the guest's root (init, pid $pid) is uid $(awk '/^Uid:/ {print $2}' /proc/$pid/status)"

step "its own vTPM: PCRs that replay its event log, an EK certificate that chains to the PKI"
trustme run demo -- cat /run/tpm/event.log
pcr=$("$TRUSTME" --run-dir "$work/run" run demo -- cat /run/tpm/event.log | awk 'NR == 1 {print $1}')
trustme run demo -- tpm2_pcrread "sha256:$pcr"
"$TRUSTME" --run-dir "$work/run" run demo -- cat /run/tpm/event.log > "$work/event.log"
value=$("$TRUSTME" --run-dir "$work/run" run demo -- tpm2_pcrread "sha256:$pcr" |
    sed -n 's/.*: 0x\([0-9A-F]*\)$/\1/p' | tr 'A-F' 'a-f')
replayed=$(python3 - "$work/event.log" "$pcr" <<'PY'
import hashlib, struct, sys
value, pcr = bytes(32), int(sys.argv[2])
for line in open(sys.argv[1]):
    p, typ, sha, name = line.rstrip("\n").split(" ", 3)
    if int(p) == pcr:
        t, n = typ.encode(), name.encode()
        d = hashlib.sha256(b"trustme-event-v1" + struct.pack(">IH", pcr, len(t)) + t +
                           struct.pack(">H", len(n)) + n + bytes.fromhex(sha)).digest()
        value = hashlib.sha256(value + d).digest()
print(value.hex())
PY
)
echo "PCR $pcr in the vTPM:      $value"
echo "the event log replayed: $replayed"
[ "$value" = "$replayed" ] || { echo "the vTPM's PCR does not match its event log" >&2; exit 1; }
trustme run demo -- tpm2_nvread 0x01c0000a -o /tmp/ek-ecc.der
cp "/proc/$pid/root/tmp/ek-ecc.der" "$work/ek-ecc.der"
openssl x509 -inform DER -in "$work/ek-ecc.der" -out "$work/ek-ecc.pem"
echo "the EK certificate at NV 0x01c0000a, read inside the container:"
openssl x509 -in "$work/ek-ecc.pem" -noout -subject -issuer -nameopt RFC2253
echo "\$ openssl verify -CAfile general-root-ca.pem -untrusted device-ca.pem -untrusted vtpm-issuer.pem ek-ecc.pem"
openssl verify -CAfile "$pki/customer/general-root-ca.pem" -untrusted "$pki/customer/device-ca.pem" \
    -untrusted "$work/vtpm-issuer.pem" "$work/ek-ecc.pem"
trustme vtpm info demo

step "listing containers"
trustme list
trustme state demo

[ "$keep" = yes ] && { echo; echo "left running: trustme --run-dir $work/run ...; stop with kill $trustmed_pid"; exit 0; }

step "stopping it: its files are ciphertext on the disk now"
trustme stop --timeout 2 demo
trustme list
image=$(echo "$work"/data/containers/*/data.img)
printf 'the secret in the raw image:  %s matches\n' "$(grep -c -a "a secret written by the guest" "$image" || true)"
mkdir "$work/look"
mount -o loop,ro "$image" "$work/look"
echo "the data volume, mounted on the host without the key (names and contents encrypted):"
find "$work/look/encrypted" | sed "s|$work/look/||"
file=$(find "$work/look/encrypted" -type f | head -1)
cat "$file" 2>&1 | sed "s|$work/look/||" || true
umount "$work/look"

step "starting it again with the PIN: the data is back"
trustme start --pin-file "$work/pin" demo
trustme run demo -- cat /root/hello

step "the container's keystore: a key made and used inside, through PKCS#11; it never leaves"
# pkcs11-tool and openssl are Debian's, unchanged: they reach the keystore through the module.
trustme run demo -- sh -c '. /etc/pkcs11.env; cd /tmp
    pkcs11-tool --module $P11MODULE --keypairgen --key-type EC:prime256v1 --label demo-key 2>/dev/null
    echo "signed inside the container" > msg
    openssl dgst -sha256 -engine pkcs11 -keyform engine -sign "pkcs11:object=demo-key;type=private" \
        -out msg.sig msg 2>/dev/null && echo "openssl signed msg with the keystore key demo-key"
    pkcs11-tool --module $P11MODULE --read-object --type pubkey --label demo-key -o pub.der 2>/dev/null'
pid=$("$TRUSTME" --run-dir "$work/run" state demo | awk '/^init pid:/ {print $3}')
guest=/proc/$pid/root
echo "on the host, with the exported public key:"
openssl dgst -sha256 -verify "$guest/tmp/pub.der" -keyform DER -signature "$guest/tmp/msg.sig" "$guest/tmp/msg"
echo "the key's attestation (a certificate of its public key and authorisations, signed by the"
echo "container's attestation key, which the device's AK certified), for the verifier's challenge:"
challenge=$(openssl rand -hex 16)
python3 - "$guest/run/trustme/keystore.sock" "$challenge" "$work/key-attestation.pem" <<'PY'
import base64, sys
sys.path.insert(0, "tests/integration")
from ksclient import Keystore  # the keystore protocol (proto/keystore.proto), as the guest speaks it
with Keystore(sys.argv[1]) as k:
    certs = k.attest("demo-key", bytes.fromhex(sys.argv[2]))
with open(sys.argv[3], "w") as f:
    for c in certs:
        b = base64.b64encode(c).decode()
        f.write("-----BEGIN CERTIFICATE-----\n" + "\n".join(b[i:i + 64] for i in range(0, len(b), 64)) +
                "\n-----END CERTIFICATE-----\n")
PY
echo "\$ trustme-verify --key-attestation key-attestation.pem --ak-anchor general-root-ca.pem --device-ca device-ca.pem --crl crls.pem --challenge $challenge"
"$VERIFY" --key-attestation "$work/key-attestation.pem" --ak-anchor "$pki/customer/general-root-ca.pem" \
    --device-ca "$pki/customer/device-ca.pem" --crl "$pki/crls.pem" --challenge "$challenge"

step "the release engineer's reference values: binaries, GuestOS, configs, the approved vTPM (signed)"
uuid=$("$TRUSTME" --run-dir "$work/run" state --json demo | python3 -c 'import json, sys; print(json.load(sys.stdin)["uuid"])')
# The container's vTPM EKs are measured into the device's runtime PCR (deep attestation): the
# verifier approves this vTPM by their names.
vtpm_eks=$("$TRUSTME" --run-dir "$work/run" vtpm info --json demo |
    python3 -c 'import json, sys; print(" ".join(e["kind"] + "=" + e["name"] for e in json.load(sys.stdin)["eks"]))')
set --
for ek in $vtpm_eks; do set -- "$@" --vtpm-ek "$uuid/ek-${ek%%=*}=${ek#*=}"; done
"$PKI" rim --out "$work/refs.json" --version 1 --valid-days 30 \
    --binary "$TRUSTMED" --binary "$SCD" \
    --binary "$TPMD" --guestos "$work/build/busybox-1" \
    --config device-config="$work/data/device.json" --config container-config="$work/demo.json" "$@"
"$PKI" sign "$work/refs.json" --pki "$pki" --signer software \
    --passphrase-file "$work/pki.pass"
trustme measurements

step "the audit log"
trustme audit
trustme audit --verify

step "remote attestation: trustme-verify checks the running device"
info=$("$TRUSTME" --run-dir "$work/run" device info --json)
address=$(echo "$info" | sed -n 's/.*"attest_address": *"\([^"]*\)".*/\1/p')
ak=$(echo "$info" | sed -n 's/.*"ak_name": *"\([^"]*\)".*/\1/p')
echo "\$ trustme-verify $address --ak-anchor general-root-ca.pem --device-ca device-ca.pem --rim-anchor root-ca.pem --rim-ca sub-ca.pem --reference refs.json --crl crls.pem --expect-ak ${ak%"${ak#????????????}"}..."
"$VERIFY" "$address" --ak-anchor "$pki/customer/general-root-ca.pem" \
    --device-ca "$pki/customer/device-ca.pem" --rim-anchor "$pki/software-signing/root-ca.pem" \
    --rim-ca "$pki/software-signing/sub-ca.pem" --reference "$work/refs.json" \
    --crl "$pki/crls.pem" --expect-ak "$ak"
trustme stop --kill demo
echo
echo "demo complete: everything it made is removed on exit"
