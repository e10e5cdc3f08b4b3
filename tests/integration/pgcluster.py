# SPDX-License-Identifier: GPL-2.0-or-later
"""A real PostgreSQL from Debian's packages in a private directory, for the fleet tests
(docs/FLEET.md "Testing"): initdb as the postgres user, the server on a UNIX socket in that
directory only (no TCP), fsync off (a test cluster need not survive a power cut), removed after."""
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from tools import tool

PG_BIN = Path("/usr/lib/postgresql/15/bin")


class Cluster:
    def __init__(self, prefix="trustme-fleet-pg-"):
        for prog in ("initdb", "pg_ctl"):
            if not (PG_BIN / prog).exists():
                pytest.fail(f"{PG_BIN / prog} is missing: it comes with the Debian package "
                            "postgresql (scripts/install-deps.sh installs it)", pytrace=False)
        # the prefix names the run's processes (postgres -D BASE/data): test_zz_leaks.py finds them
        self.base = Path(tempfile.mkdtemp(prefix=prefix))
        shutil.chown(self.base, "postgres")
        self.base.chmod(0o700)
        self.data = self.base / "data"
        self.started = False

    def _as_postgres(self, *args):
        r = subprocess.run([str(a) for a in args], user="postgres", capture_output=True, text=True,
                           timeout=120, cwd=self.base)
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(map(str, args))} -> {r.returncode}\n{r.stdout}\n{r.stderr}")
        return r

    def start(self):
        self._as_postgres(PG_BIN / "initdb", "-D", self.data, "-U", "fleet", "--auth=trust", "-E", "UTF8",
                          "--no-locale", "--no-sync")
        self._as_postgres(PG_BIN / "pg_ctl", "-D", self.data, "-l", self.base / "server.log", "-w",
                          "-o", f"-k {self.base} -h '' -F -c max_connections=50", "start")
        self.started = True
        return self

    def conninfo(self, db="postgres"):
        return f"host={self.base} user=fleet dbname={db}"

    def psql(self, sql, db="postgres"):
        """One statement's rows, as lists of strings (psql -At, fields split on |)."""
        r = subprocess.run([tool("psql"), "-X", "-At", "-v", "ON_ERROR_STOP=1", "-d", self.conninfo(db),
                            "-c", sql], capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise AssertionError(f"psql {sql!r}: {r.stderr}")
        return [line.split("|") for line in r.stdout.splitlines()]

    def create_db(self, name):
        self.psql(f'CREATE DATABASE "{name}"')
        return self.conninfo(name)

    def stop(self):
        try:
            if self.started:
                self._as_postgres(PG_BIN / "pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.base, ignore_errors=True)


def server_log(cluster):
    try:
        return (cluster.base / "server.log").read_text()
    except OSError:
        return ""


def conninfo_env(conninfo):
    return dict(os.environ, TRUSTME_FLEET_DB=conninfo)
