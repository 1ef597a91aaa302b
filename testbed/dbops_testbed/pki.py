"""The test bed control plane's credentials: a CA, serving and client certificates, the service-account keys, kubeconfigs."""

from __future__ import annotations

import base64
import datetime
import ipaddress
import subprocess
from pathlib import Path
from typing import Any

import yaml

KUBERNETES_SERVICE_IP = "10.0.0.1"
ADMIN_USER = "dbops-admin"
KUBELET_CLIENT_USER = "kube-apiserver-kubelet-client"
"""Who the API server is to the node's kubelet API (`kubectl logs`), as kubeadm names it."""


def kubeconfig_yaml(server: str, pki: dict[str, Path], cert: str, user: str) -> str:
    """A kubeconfig for ``server`` as ``user``, with the client certificate ``cert`` of ``pki`` inlined."""

    def b64(path: Path) -> str:
        return base64.b64encode(path.read_bytes()).decode()

    return yaml.safe_dump({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "dbops-testbed", "cluster": {
            "server": server, "certificate-authority-data": b64(pki["ca.crt"])}}],
        "users": [{"name": user, "user": {
            "client-certificate-data": b64(pki[f"{cert}.crt"]),
            "client-key-data": b64(pki[f"{cert}.key"])}}],
        "contexts": [{"name": "dbops-testbed", "context": {"cluster": "dbops-testbed", "user": user}}],
        "current-context": "dbops-testbed",
    })


SERVING_SANS = (
    "IP:127.0.0.1", f"IP:{KUBERNETES_SERVICE_IP}", "DNS:localhost", "DNS:kubernetes", "DNS:kubernetes.default",
    "DNS:kubernetes.default.svc", "DNS:kubernetes.default.svc.cluster.local",
)


def make_pki(directory: Path) -> dict[str, Path]:
    """Make a CA, the API server's serving cert, client certs and the service-account key pair."""
    try:
        import cryptography  # noqa: F401
    except ImportError:
        return _make_pki_with_openssl(directory)
    return _make_pki_with_cryptography(directory)


def _make_pki_with_openssl(directory: Path) -> dict[str, Path]:
    directory.mkdir(parents=True)

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)

    ec_key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    openssl("req", "-x509", *ec_key, "-keyout", "ca.key", "-out", "ca.crt", "-days", "7",
            "-subj", "/CN=dbops-testbed-ca", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,digitalSignature,keyCertSign,cRLSign")
    leaves = {
        "apiserver": ("/CN=kube-apiserver", f"extendedKeyUsage=serverAuth\nsubjectAltName={','.join(SERVING_SANS)}"),
        "admin": (f"/CN={ADMIN_USER}/O=system:masters", "extendedKeyUsage=clientAuth"),
        "kcm": ("/CN=system:kube-controller-manager", "extendedKeyUsage=clientAuth"),
        "kubelet-client": (f"/CN={KUBELET_CLIENT_USER}", "extendedKeyUsage=clientAuth"),
    }
    for name, (subject, extensions) in leaves.items():
        (directory / f"{name}.ext").write_text(f"basicConstraints=critical,CA:FALSE\n{extensions}\n")
        openssl("req", "-new", *ec_key, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                "-days", "7", "-out", f"{name}.crt", "-extfile", f"{name}.ext")
    openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", "sa.key")
    openssl("pkey", "-in", "sa.key", "-pubout", "-out", "sa.pub")
    paths = {f"{name}.{kind}": directory / f"{name}.{kind}" for name in ("ca", *leaves) for kind in ("crt", "key")}
    paths.update({"sa.key": directory / "sa.key", "sa.pub": directory / "sa.pub"})
    for name, path in paths.items():
        if name.endswith(".key"):
            path.chmod(0o600)
    return paths


def _make_pki_with_cryptography(directory: Path) -> dict[str, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    directory.mkdir(parents=True)
    paths: dict[str, Path] = {}
    now = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
    expiry = now + datetime.timedelta(days=7)

    def write_key(name: str, key: Any) -> None:
        paths[f"{name}.key"] = directory / f"{name}.key"
        paths[f"{name}.key"].write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        paths[f"{name}.key"].chmod(0o600)

    def write_cert(name: str, cert: x509.Certificate) -> None:
        paths[f"{name}.crt"] = directory / f"{name}.crt"
        paths[f"{name}.crt"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    def subject(common_name: str, organization: str | None = None) -> x509.Name:
        parts = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
        if organization:
            parts.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
        return x509.Name(parts)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = subject("dbops-testbed-ca")
    ca_cert = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(expiry)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False,
            encipher_only=False, decipher_only=False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    write_key("ca", ca_key)
    write_cert("ca", ca_cert)

    def issue(name: str, common_name: str, organization: str | None, usage: Any,
              sans: list[x509.GeneralName] | None = None) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder().subject_name(subject(common_name, organization))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(expiry)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        write_key(name, key)
        write_cert(name, builder.sign(ca_key, hashes.SHA256()))

    sans: list[x509.GeneralName] = [
        x509.IPAddress(ipaddress.ip_address(value)) if kind == "IP" else x509.DNSName(value)
        for kind, value in (san.split(":", 1) for san in SERVING_SANS)
    ]
    issue("apiserver", "kube-apiserver", None, ExtendedKeyUsageOID.SERVER_AUTH, sans)
    issue("admin", ADMIN_USER, "system:masters", ExtendedKeyUsageOID.CLIENT_AUTH)
    issue("kcm", "system:kube-controller-manager", None, ExtendedKeyUsageOID.CLIENT_AUTH)
    issue("kubelet-client", KUBELET_CLIENT_USER, None, ExtendedKeyUsageOID.CLIENT_AUTH)

    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    write_key("sa", sa_key)
    paths["sa.pub"] = directory / "sa.pub"
    paths["sa.pub"].write_bytes(sa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return paths
