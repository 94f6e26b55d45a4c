"""``--tls-cert``, ``--tls-key``, ``--tls-ca``: a cluster whose connections are TLS.

Every node of the cluster has a certificate signed by the cluster's own CA and trusts
that CA alone, both ways (mutual TLS): a node accepts a connection only from a peer
whose certificate the CA signed, and dials only peers that show one. Names are not
checked — a pod's address changes with each restart, and no certificate can name
them all — so the CA *is* the cluster's membership: keep it to the cluster (a
Kubernetes Secret mounted into the pods; cert-manager can issue it). The cookie's
handshake runs inside the TLS session as well.
"""

from __future__ import annotations

import argparse
import os
import ssl

__all__ = ["add_tls_arguments", "tls_contexts", "tls_flags"]

_FLAGS = (
    ("tls_cert", "CLOUDY_TLS_CERT", "this node's certificate (PEM; with --tls-key and --tls-ca)"),
    ("tls_key", "CLOUDY_TLS_KEY", "its private key (PEM)"),
    ("tls_ca", "CLOUDY_TLS_CA", "the cluster's CA: peers must show a certificate it signed"),
)


def add_tls_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("TLS (mutual: every node's certificate signed by the cluster's CA)")
    for flag, env, text in _FLAGS:
        g.add_argument(
            "--" + flag.replace("_", "-"),
            default=None,
            metavar="FILE",
            help=f"{text} (default: ${env})",
        )


def tls_flags(args: argparse.Namespace) -> list[str]:
    """The TLS flags of *args* again, for a child's command line (the heart's slave)."""
    out: list[str] = []
    for flag, _, _ in _FLAGS:
        value = getattr(args, flag, None)
        if value is not None:
            out += ["--" + flag.replace("_", "-"), value]
    return out


def tls_contexts(args: argparse.Namespace) -> tuple[ssl.SSLContext, ssl.SSLContext] | None:
    """The (server, client) contexts the flags or ``$CLOUDY_TLS_*`` give; None for none.

    Raises `ValueError` naming what is missing, and `OSError` or `ssl.SSLError` for a
    file that cannot be read or does not hold what it should.
    """
    files = {
        flag: getattr(args, flag, None) or os.environ.get(env) or None for flag, env, _ in _FLAGS
    }
    if not any(files.values()):
        return None
    missing = [f"--{f.replace('_', '-')}" for f, path in files.items() if not path]
    if missing:
        raise ValueError(
            f"TLS needs --tls-cert, --tls-key and --tls-ca: {', '.join(missing)} missing"
        )
    cert, key, ca = files["tls_cert"], files["tls_key"], files["tls_ca"]
    assert cert is not None and key is not None and ca is not None
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    for context in (server, client):
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(cert, key)
        context.load_verify_locations(ca)
        context.verify_mode = ssl.CERT_REQUIRED
    client.check_hostname = False  # the CA decides who is a member, not the names
    return server, client
