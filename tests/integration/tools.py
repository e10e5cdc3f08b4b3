# SPDX-License-Identifier: GPL-2.0-or-later
"""The host programs the integration tests call, and the Debian package of each.

Every test reaches an external program through tool() (or argv()), never by a bare name: a program
missing on the machine then fails the test with the package that provides it, instead of an
obscure FileNotFoundError or a skip. test_tools.py checks that every package named here is in
scripts/install-deps.sh's default list, so that the README's `scripts/test.sh` installs them.
"""
import os
import shutil

import pytest

# program -> Debian 12 package that provides it
PACKAGES = {
    # TPM: the tests talk to swtpm behind trustme-tpmd's back
    "tpm2_create": "tpm2-tools",
    "tpm2_createprimary": "tpm2-tools",
    "tpm2_flushcontext": "tpm2-tools",
    "tpm2_getcap": "tpm2-tools",
    "tpm2_pcrextend": "tpm2-tools",
    "tpm2_makecredential": "tpm2-tools",
    "tpm2_pcrread": "tpm2-tools",
    "tpm2_readpublic": "tpm2-tools",
    "tpm2_startauthsession": "tpm2-tools",
    "tpm2_create": "tpm2-tools",
    "tpm2_flushcontext": "tpm2-tools",
    "tpm2_makecredential": "tpm2-tools",
    "tpm2_readpublic": "tpm2-tools",
    "swtpm": "swtpm",  # started by trustme-tpmd, not by the tests
    "tpm2": "tpm2-tools",  # test_vtpm.py copies it into its guest's root
    "ldd": "libc-bin",  # ...with the libraries it names
    # crypto and tokens
    "openssl": "openssl",
    "softhsm2-util": "softhsm2",
    "pkcs11-tool": "opensc",
    "p11-kit": "p11-kit",  # test_keystore_pkcs11.py copies it into its guest's root
    # images and file systems
    "zstd": "zstd",  # zstd-compressed OCI layers
    "umoci": "umoci",  # the reference OCI unpacker the import is compared with
    "debootstrap": "debootstrap",  # a real Debian root file system as an OCI image
    "unsquashfs": "squashfs-tools",
    "mksquashfs": "squashfs-tools",
    "mkfs.erofs": "erofs-utils",
    "mkfs.ext4": "e2fsprogs",
    "chattr": "e2fsprogs",
    "busybox": "busybox-static",  # scripts/mkrootfs.sh copies /bin/busybox into the guests
    "mount": "mount",
    "umount": "mount",
    "losetup": "mount",
    # network
    "ip": "iproute2",
    "ss": "iproute2",
    "nft": "nftables",
    # processes and namespaces
    "setpriv": "util-linux",
    "setsid": "util-linux",
    "prlimit": "util-linux",
    "nsenter": "util-linux",
    "ps": "procps",
    # the fleet's database (test_fleet.py; initdb and pg_ctl come with postgresql)
    "psql": "postgresql-client",
    # the fleet's status page, rendered by a real browser (test_fleet.py)
    "chromium": "chromium",
    # files
    "cp": "coreutils",
    "mv": "coreutils",
    "rm": "coreutils",
    "mktemp": "coreutils",
    "mv": "coreutils",
    "rm": "coreutils",
    "sha256sum": "coreutils",
    # the CLI's generated man page and completions (test_cli.py)
    "bash": "bash",
    "zsh": "zsh",
    "groff": "groff-base",
    "true": "coreutils",
    # the house rules (test_house_rules.py)
    "clang-format": "clang-format",
    "git": "git",
    # the build's objects (scripts/check-layers, test_layers.py)
    "nm": "binutils",
    "ar": "binutils",
    "readelf": "binutils",  # what the CLI links (test_cli.py)
    "cc": "gcc",
    # the installation and its systemd unit (test_packaging.py)
    "meson": "meson",
    "systemd-analyze": "systemd",
    "systemd-sysusers": "systemd",
}

# Shared library a test copies into a guest's root -> its Debian package
LIBRARIES = {
    # OpenSSL's PKCS#11 engine (libp11), for openssl inside a container with the keystore's
    # PKCS#11 module (test_keystore_pkcs11.py)
    "/usr/lib/x86_64-linux-gnu/engines-3/pkcs11.so": "libengine-pkcs11-openssl",
    # OpenSSL 3's tpm2 provider, for openssl inside a container with a vTPM (test_vtpm.py)
    "/usr/lib/x86_64-linux-gnu/ossl-modules/tpm2.so": "tpm2-openssl",
}

# Python module (not in the standard library) a test imports -> its Debian package
MODULES = {
    "pytest": "python3-pytest",
    "cryptography": "python3-cryptography",
}


def tool(name):
    """The absolute path of host program `name`; fails the calling test, naming the Debian
    package, if it is not installed. A name not in PACKAGES is an error of the test itself."""
    if name not in PACKAGES:
        raise KeyError(f"tools.py: {name!r} is not in PACKAGES: add it with its Debian package "
                       "(and the package to scripts/install-deps.sh's default list)")
    # sbin too: a root shell without it on PATH still has the programs
    path = shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/usr/bin:/sbin:/bin")
    if path is None:
        pytest.fail(f"{name} is not installed: it comes with the Debian package {PACKAGES[name]} "
                    f"(scripts/install-deps.sh installs it)", pytrace=False)
    return path


def library(path):
    """A library file of LIBRARIES; fails the calling test, naming its package, if it is missing."""
    if path not in LIBRARIES:
        raise KeyError(f"tools.py: {path!r} is not in LIBRARIES: add it with its Debian package")
    if not os.path.exists(path):
        pytest.fail(f"{path} is not installed: it comes with the Debian package {LIBRARIES[path]} "
                    f"(scripts/install-deps.sh installs it)", pytrace=False)
    return path


def argv(*args):
    """A command line as strings, its program resolved through tool() when it is a bare name
    (a path, such as a build output, is taken as it is)."""
    args = [str(a) for a in args]
    if "/" not in args[0]:
        args[0] = tool(args[0])
    return args
