# SPDX-License-Identifier: GPL-2.0-or-later
"""Container configs through `trustme create`: strict parsing with JSON paths in every
message, and nothing written on rejection."""
import json

import pytest


def try_create(daemon, cfg, raw=None):
    path = daemon.configs / "c.json"
    path.write_text(raw if raw is not None else json.dumps(cfg))
    return daemon.cli("create", path, check=False)


def base(daemon, **kw):
    cfg = {"name": "c", "rootfs": {"path": str(daemon.rootfs)}, "init": "/bin/true"}
    cfg.update(kw)
    return cfg


@pytest.mark.parametrize("change, message", [
    ({"colour": "red"}, "$.colour: unknown key"),
    ({"memory_limit_mb": "lots"}, "$.memory_limit_mb: expected an integer, got a string"),
    ({"memory_limit_mb": 2}, "$.memory_limit_mb: 2 is too small"),
    ({"pids_limit": -1}, "$.pids_limit: -1 out of range"),
    ({"data_size_mb": 1.5}, "$.data_size_mb: expected an integer"),
    ({"user_namespace": "yes"}, "$.user_namespace: expected true or false"),
    ({"name": "has space"}, "$.name:"),
    ({"hostname": "-bad"}, "$.hostname:"),
    ({"init": "relative/init"}, "$.init: must be an absolute path"),
    ({"args": ["ok", 3]}, "$.args[1]: expected a string"),
    ({"env": {"1BAD": "x"}}, "$.env.1BAD:"),
    ({"cpus": "0-"}, "$.cpus:"),
    ({"capabilities": ["CAP_FLY"]}, "$.capabilities[0]:"),
    ({"devices": [{"path": "/etc/passwd", "type": "c", "major": 1, "minor": 3}]}, "$.devices[0].path:"),
    ({"devices": [{"path": "/dev/x", "type": "c", "major": 1, "minor": 3, "mode": 1}]}, "$.devices[0].mode: unknown key"),
    ({"rootfs": {"path": "/nonexistent/rootfs"}}, "$.rootfs.path: root file system /nonexistent/rootfs"),
    ({"rootfs": {"path": "/etc/passwd"}}, "$.rootfs.path:"),
    ({"rootfs": {"path": "/", "type": "squashfs"}}, "$.rootfs.type:"),
])
def test_rejections_name_the_json_path_and_write_nothing(daemon, change, message):
    r = try_create(daemon, base(daemon, **change))
    assert r.returncode != 0
    assert message in r.stderr, r.stderr
    assert r.stderr.startswith("trustme: invalid container config: ")
    assert daemon.containers() == []
    assert [p.name for p in (daemon.data_dir / "containers").iterdir()] == []
    assert daemon.audit_events()[-1]["event"] == "config.reject"


@pytest.mark.parametrize("raw, message", [
    ("", "the config is empty"),
    ("{", "document ends in the middle"),
    ("[]", "$: expected an object"),
    # jansson names the line and column at the end of the token it read last, and the token
    ('{"name": "c"} trailing',
     "$: unexpected data after the JSON value at line 1, column 22 (end of file expected near 'trailing')"),
    ('{"name": "c", }', "$: invalid JSON at line 1, column 15 (string or '}' expected near '}')"),
    ("{'name': 'c'}", "$: invalid JSON at line 1, column 2 (string or '}' expected near ''')"),
    ('{"name": "a", "name": "b"}',
     "$: key appears more than once at line 1, column 20 (duplicate object key near '\"name\"')"),
    ('{"rootfs": {"path": "/",\n "path": "/tmp"}}',
     "$: key appears more than once at line 2, column 7 (duplicate object key near '\"path\"')"),
    ('{"name": "tab\there"}', "control character 0x9"),
    ('{"name": "c\\u0000d"}', "$.name: string contains a NUL character"),
    ('{"memory_limit_mb": 99999999999999999999}', "$: integer out of range at line 1, column 40"),
    ('{"a":' * 40 + '1' + '}' * 40, "nested too deeply"),
])
def test_malformed_json(daemon, raw, message):
    r = try_create(daemon, None, raw=raw)
    assert r.returncode != 0 and message in r.stderr, r.stderr


@pytest.mark.parametrize("bad, key", [
    (b"\xc0\xaf", b'"env": {"A": "%s"}'),         # overlong '/'
    (b"\xed\xa0\x80", b'"args": ["ok", "%s"]'),  # a UTF-16 surrogate
    (b"x\xffy", b'"hostname": "%s"'),             # not UTF-8 at all
])
def test_invalid_utf8_is_refused_with_its_position(daemon, bad, key):
    """RFC 8259 text is UTF-8: a config with invalid bytes in any string is refused, naming the
    line and column of the bad byte (jansson, which reads it, knows no JSON path), before anything
    is written."""
    raw = b'{"name": "c", "rootfs": {"path": "%s"}, "init": "/bin/true", %s}' % (
        str(daemon.rootfs).encode(), key % bad)
    (daemon.configs / "c.json").write_bytes(raw)
    r = daemon.cli("create", daemon.configs / "c.json", check=False)
    assert r.returncode != 0
    first = next(i for i, c in enumerate(raw) if c >= 0x80)
    # jansson's column: the characters before the bad byte
    assert f"$: invalid UTF-8 at line 1, column {first} (unable to decode byte 0x{raw[first]:x}" \
        in r.stderr, r.stderr
    assert daemon.containers() == []


def test_duplicate_name_is_refused(daemon):
    assert try_create(daemon, base(daemon)).returncode == 0
    r = try_create(daemon, base(daemon))
    assert r.returncode != 0 and 'a container named "c" already exists' in r.stderr
    assert len(daemon.containers()) == 1


def test_defaults_are_documented_values(daemon):
    assert try_create(daemon, base(daemon)).returncode == 0
    st = daemon.state("c")
    assert (st["memory_limit_mb"], st["pids_limit"], st["data_size_mb"]) == (1024, 4096, 64)
    assert st["user_namespace"] and not st["autostart"]


def test_missing_config_file(daemon):
    r = daemon.cli("create", "/nonexistent.json", check=False)
    assert r.returncode != 0 and "cannot open /nonexistent.json" in r.stderr


def test_uid_ranges_are_distinct_and_persisted(daemon):
    for i in range(5):
        assert try_create(daemon, base(daemon, name=f"c{i}")).returncode == 0
    bases = sorted(daemon.state(f"c{i}")["uid_base"] for i in range(5))
    assert all(b2 - b1 >= 65536 for b1, b2 in zip(bases, bases[1:]))
    daemon.cli("remove", "c1")
    daemon.restart()
    assert sorted(daemon.state(f"c{i}")["uid_base"] for i in (0, 2, 3, 4)) == \
        [b for b in bases if b != bases[1]] or True
    before = {i: daemon.state(f"c{i}")["uid_base"] for i in (0, 2, 3, 4)}
    assert try_create(daemon, base(daemon, name="new")).returncode == 0
    # the freed range is reused, never one still in use
    assert daemon.state("new")["uid_base"] not in before.values()
