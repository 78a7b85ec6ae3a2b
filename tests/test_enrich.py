"""Enrichment and redaction, on hand-made inputs (no root needed)."""

import pytest

from runctrace.runc import enrich, proc

CONTAINERD_ANN = {
    "io.kubernetes.cri.container-type": "container",
    "io.kubernetes.cri.container-name": "web",
    "io.kubernetes.cri.sandbox-name": "web-7d4b9-x2x",
    "io.kubernetes.cri.sandbox-namespace": "shop",
    "io.kubernetes.cri.sandbox-uid": "1b2c",
    "io.kubernetes.cri.sandbox-id": "abc123",
    "io.kubernetes.cri.image-name": "docker.io/library/nginx:1.25",
}
CRIO_ANN = {
    "io.kubernetes.cri-o.ContainerType": "sandbox",
    "io.kubernetes.cri-o.KubeName": "db-0",
    "io.kubernetes.cri-o.Namespace": "data",
    "io.kubernetes.cri-o.SandboxID": "def456",
    "io.kubernetes.cri-o.ImageName": "registry.k8s.io/pause:3.9",
    "io.kubernetes.pod.uid": "9f9f",
}


def test_k8s_fields_containerd():
    assert enrich.k8s_fields(CONTAINERD_ANN) == {
        "pod_name": "web-7d4b9-x2x", "pod_namespace": "shop", "pod_uid": "1b2c", "container_name": "web",
        "sandbox_id": "abc123", "image_name": "docker.io/library/nginx:1.25", "is_sandbox": False,
    }


def test_k8s_fields_crio_and_none():
    fields = enrich.k8s_fields(CRIO_ANN)
    assert fields["pod_name"] == "db-0" and fields["pod_namespace"] == "data" and fields["pod_uid"] == "9f9f"
    assert fields["is_sandbox"] is True and fields["container_name"] is None
    assert set(enrich.k8s_fields(None).values()) == {None}


@pytest.mark.parametrize("root,caller,ann,expected", [
    ("/run/containerd/runc/k8s.io", "containerd-shim", None, "containerd"),
    ("/run/docker/runtime-runc/moby", "containerd-shim", None, "docker"),
    ("/run/containerd/runc/moby", "containerd-shim", None, "docker"),
    ("/run/runc", "conmon", CRIO_ANN, "cri-o"),
    ("/run/runc", "conmon", None, "conmon"),
    ("/run/runc", "bash", None, "by-hand"),
    (None, None, None, "by-hand"),
])
def test_manager(root, caller, ann, expected):
    assert enrich.manager_of(root, caller, ann) == expected


def test_redact_env_copies_and_keeps_keys():
    spec = {"process": {"env": ["A=1", "B=x=y", 7]}, "hooks": {"prestart": [{"path": "/h", "env": ["T=s"]}, "junk"]}}
    red = enrich.redact_env(spec)
    assert red["process"]["env"] == ["A=<redacted>", "B=<redacted>", 7]
    assert red["hooks"]["prestart"][0]["env"] == ["T=<redacted>"] and red["hooks"]["prestart"][1] == "junk"
    assert spec["process"]["env"] == ["A=1", "B=x=y", 7]  # the original is untouched
    assert enrich.redact_env({"process": {}}) == {"process": {}}
    assert enrich.redact_env(None) is None


def test_cgroup_prefers_unified_then_memory(monkeypatch):
    contents = {
        "hybrid": b"12:memory:/runc/c1\n1:name=systemd:/user.slice\n0::/\n",
        "unified": b"0::/system.slice/c2\n",
    }
    # /proc/PID/cgroup as each layout writes it
    monkeypatch.setattr(proc, "read_proc", lambda path: contents[path.split("-")[1].split("/")[0]])
    assert proc.cgroup_of("fake-hybrid") == "/runc/c1"
    assert proc.cgroup_of("fake-unified") == "/system.slice/c2"
