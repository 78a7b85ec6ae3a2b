"""Table-driven tests of the runc argument parser (no root needed)."""

import pytest

from runctrace.runc.args import parse_runc_args

SHIM = (
    "runc --root /run/containerd/runc/default --log /run/containerd/io.containerd.runtime.v2.task/default/c1/log.json "
    "--log-format json create --bundle /run/containerd/io.containerd.runtime.v2.task/default/c1 "
    "--pid-file /run/containerd/io.containerd.runtime.v2.task/default/c1/init.pid c1"
)
B = "/run/containerd/io.containerd.runtime.v2.task/default/c1"

# argv, cwd -> command, id, bundle, pid_file, root, detach, creates
CASES = [
    # containerd's shim, exactly as PLATFORM.md captured it
    (SHIM, "/", "create", "c1", B, f"{B}/init.pid", "/run/containerd/runc/default", False, True),
    ("runc create --bundle /b c2", "/", "create", "c2", "/b", None, "/run/runc", False, True),
    ("runc create c3", "/srv/b3", "create", "c3", "/srv/b3", None, "/run/runc", False, True),
    ("runc run c4", "/srv/b4", "run", "c4", "/srv/b4", None, "/run/runc", False, True),
    ("runc run -d c5", "/srv/b5", "run", "c5", "/srv/b5", None, "/run/runc", True, True),
    ("runc run --detach=true c5", "/x", "run", "c5", "/x", None, "/run/runc", True, True),
    ("runc run --detach=false c5", "/x", "run", "c5", "/x", None, "/run/runc", False, True),
    ("/usr/sbin/runc --root=/tmp/r create --bundle=b --pid-file=p.pid c6", "/w", "create", "c6", "/w/b", "/w/p.pid", "/tmp/r", False, True),
    ("runc -root /r -debug create -b /b -pid-file /p c7", "/", "create", "c7", "/b", "/p", "/r", False, True),
    ("runc --debug --systemd-cgroup --log-format=json run -b ../b c8", "/a/w", "run", "c8", "/a/b", None, "/run/runc", False, True),
    ("runc --root rel run c9", "/home", "run", "c9", "/home", None, "/home/rel", False, True),
    ("runc run --console-socket /s.sock --no-pivot --preserve-fds 2 c10", "/b", "run", "c10", "/b", None, "/run/runc", False, True),
    ("runc run -- c11", "/b", "run", "c11", "/b", None, "/run/runc", False, True),
    ("runc restore --image-path /img --bundle /b -d c12", "/", "restore", "c12", "/b", None, "/run/runc", True, True),
    ("runc create --bundle= c13", "/cwd", "create", "c13", "/cwd", None, "/run/runc", False, True),
    # not creations
    ("runc start c1", "/", "start", "c1", None, None, "/run/runc", False, False),
    ("runc --root /r delete --force c1", "/", "delete", "c1", None, None, "/r", False, False),
    ("runc init", "/", "init", None, None, None, "/run/runc", False, False),
    ("runc", "/", None, None, None, None, "/run/runc", False, False),
    ("runc --version", "/", None, None, None, None, "/run/runc", False, False),
    # malformed: runc itself would refuse these
    ("runc create", "/", "create", None, None, None, "/run/runc", False, False),
    ("runc create a b", "/", "create", None, None, None, "/run/runc", False, False),
    ("runc create --bundle", "/", "create", None, None, None, "/run/runc", False, False),
    ("runc --root", "/", None, None, None, None, "/run/runc", False, False),
    ("runc create ../x", "/", "create", None, None, None, "/run/runc", False, False),
    ("runc run --detach=maybe c1", "/", "run", None, None, None, "/run/runc", False, False),
]


@pytest.mark.parametrize("line,cwd,command,cid,bundle,pid_file,root,detach,creates", CASES, ids=[c[0][:60] for c in CASES])
def test_parse(line, cwd, command, cid, bundle, pid_file, root, detach, creates):
    call = parse_runc_args(line.split(), cwd)
    assert call.command == command
    assert call.creates_container is creates, call.error
    if creates:
        assert call.container_id == cid
        assert call.bundle == bundle
        assert call.pid_file == pid_file
        assert call.detach is detach
    else:
        assert call.container_id in (cid, None)
    assert call.root == root


def test_state_dir_and_error_message():
    call = parse_runc_args(["runc", "--root", "/r", "create", "x"], "/b")
    assert call.state_dir == "/r/x"
    bad = parse_runc_args(["runc", "create", "a", "b"], "/")
    assert "exactly one container ID" in bad.error


def test_flags_after_id_are_positional_like_go_flag():
    # Go's flag package stops at the first positional: runc would reject this call.
    call = parse_runc_args(["runc", "create", "id", "--bundle", "/b"], "/")
    assert not call.creates_container
