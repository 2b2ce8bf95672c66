"""deploy/argocd: the Config Management Plugin component renders with kubectl, and its init + generate commands,
run the way argocd-cmp-server runs them (in the application's directory, with the sidecar's environment), produce
the decrypted Secrets on stdout and write no plaintext into the checkout."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from tests.secrets_kustomize.conftest import DECRYPTOR, KUBECTL, REPO, Tree, secret_yaml


def _render(tmp_path: Path) -> list[dict]:  # type: ignore[type-arg]
    shutil.copytree(REPO / "deploy" / "argocd", tmp_path / "argocd")
    top = tmp_path / "argocd-install"
    top.mkdir()
    (top / "repo-server.yaml").write_text(yaml.safe_dump({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "argocd-repo-server"},
        "spec": {"selector": {"matchLabels": {"app": "r"}}, "template": {
            "metadata": {"labels": {"app": "r"}},
            "spec": {"containers": [{"name": "argocd-repo-server", "image": "argocd"}],
                     "volumes": [{"name": "var-files", "emptyDir": {}}, {"name": "plugins", "emptyDir": {}}]}}}}))
    (top / "kustomization.yaml").write_text("resources: [repo-server.yaml]\ncomponents: [../argocd]\n")
    assert KUBECTL is not None
    out = subprocess.run([KUBECTL, "kustomize", str(top)], capture_output=True, text=True, timeout=60, check=True)
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def test_component_adds_the_sidecar_and_plugin(tree: Tree, tmp_path: Path) -> None:
    docs = _render(tmp_path / "render")
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    containers = {c["name"]: c for c in deployment["spec"]["template"]["spec"]["containers"]}
    sidecar = containers["kagiya-cmp"]
    assert sidecar["command"] == ["/var/run/argocd/argocd-cmp-server"]
    assert sidecar["securityContext"]["runAsUser"] == 999
    mounts = {m["mountPath"] for m in sidecar["volumeMounts"]}
    wanted = {"/var/run/argocd", "/home/argocd/cmp-server/plugins", "/home/argocd/cmp-server/config/plugin.yaml"}
    assert wanted <= mounts
    plugin = yaml.safe_load(next(d for d in docs if d["kind"] == "ConfigMap")["data"]["plugin.yaml"])
    assert plugin["kind"] == "ConfigManagementPlugin" and "discover" not in plugin["spec"]


def test_plugin_commands_decrypt_an_application(tree: Tree, tmp_path: Path) -> None:
    plugin = yaml.safe_load(next(d for d in _render(tmp_path / "render") if d["kind"] == "ConfigMap")
                            ["data"]["plugin.yaml"])
    app = tree.root / "app"
    tree.write("app/db.enc.yaml", secret_yaml("db", password="argo-plaintext"))
    assert tree.kagiya("secrets", "encrypt", "-i", "app/db.enc.yaml").returncode == 0
    tree.write("app/secrets.yaml", DECRYPTOR.format(files="db.enc.yaml"))
    tree.write("app/kustomization.yaml", "generators: [secrets.yaml]\n")
    env = dict(tree.env)
    plugin_home = tmp_path / "cmp-tmp" / "kustomize-plugin"
    env["KUSTOMIZE_PLUGIN_HOME"] = str(plugin_home)
    env["PATH"] = f"{Path(sys.executable).parent}:{Path(KUBECTL or 'kubectl').parent}:{env.get('PATH', '')}"

    def run(command: list[str]) -> subprocess.CompletedProcess[str]:
        command = [str(plugin_home) if c == "/tmp/kustomize-plugin" else c for c in command]
        return subprocess.run(command, cwd=app, env=env, capture_output=True, text=True, timeout=60)

    init = run(plugin["spec"]["init"]["command"])
    assert init.returncode == 0, init.stderr
    generated = run(plugin["spec"]["generate"]["command"])
    assert generated.returncode == 0, generated.stderr
    secret = next(d for d in yaml.safe_load_all(generated.stdout) if d and d["kind"] == "Secret")
    assert secret["stringData"] == {"password": "argo-plaintext"}
    assert tree.files_containing("argo-plaintext") == []
