"""Who may use a Dask cluster that hpcjobs starts: the holders of its certificate.

On a shared login node any user can reach a port on loopback, and a Dask scheduler runs
whatever its clients send on the workers, as the workers' owner. So every cluster hpcjobs
starts (a local one, or a batch job's over MPI) speaks TLS with a certificate made for that
cluster alone (``Security.temporary()``: its own CA, client and server certificate), and the
only copy outside the cluster's processes is a *connection file*, created 0600: the address,
the dashboard and the certificate's PEM text. ``hpcjobs run --scheduler-file FILE`` and
:func:`load_connection` read it; another user cannot.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from hpcjobs.errors import RunFailed


def temporary_security():
    """A new certificate for one cluster (a ``distributed.security.Security``).

    As ``Security.temporary()`` does, but with an elliptic-curve key (P-256) instead of RSA
    2048: the same protection, made in a millisecond instead of tens, and cheaper handshakes
    for every connection of the cluster.
    """
    import datetime

    from distributed.security import Security

    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError as exc:
        raise RunFailed(f"cannot make the cluster's TLS certificate ({exc}): pip install "
                        "cryptography, or pass --insecure (other users of this host could then "
                        "use the cluster)") from None
    key = ec.generate_private_key(ec.SECP256R1())
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dask-internal")])
    now = datetime.datetime.now(tz=datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("dask-internal")]),
                           critical=False)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=365))
            .sign(key, hashes.SHA256()))
    cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
    return Security(require_encryption=True, tls_ca_file=cert_pem,
                    tls_client_key=key_pem, tls_client_cert=cert_pem,
                    tls_scheduler_key=key_pem, tls_scheduler_cert=cert_pem,
                    tls_worker_key=key_pem, tls_worker_cert=cert_pem)


def write_connection_file(path: str | os.PathLike, *, address: str, security=None,
                          **info) -> Path:
    """Write ``address``, ``security``'s certificate and ``info`` to ``path``, mode 0600 from
    the start (never readable by others, not even for a moment), replacing it atomically.

    The file is also a Dask scheduler file (``Client(scheduler_file=...)`` reads ``address``).
    """
    path = Path(path)
    record = {"address": address, **info}
    if security is not None:
        # whoever can read this file can use the cluster: hence 0600
        record["tls"] = {"ca": security.tls_ca_file, "cert": security.tls_client_cert,
                         "key": security.tls_client_key}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(record, fh, indent=1)
    os.replace(tmp, path)
    return path


def load_connection(path: str | os.PathLike, *, worker: bool = False):
    """``(address, Security or None)`` from a connection file (or a plain Dask scheduler file).

    With ``worker`` the Security also lets a worker join (the certificate serves both).

    Examples
    --------
    >>> address, sec = load_connection("scheduler.json")        # doctest: +SKIP
    >>> client = distributed.Client(address, security=sec)       # doctest: +SKIP
    """
    from distributed.security import Security

    info = json.loads(Path(path).expanduser().read_text())
    tls = info.get("tls")
    if not tls:
        return info["address"], None
    roles = ("client", "worker") if worker else ("client",)
    pems = {f"tls_{role}_{part}": tls[part] for role in roles for part in ("cert", "key")}
    return info["address"], Security(tls_ca_file=tls["ca"], require_encryption=True, **pems)
