"""pulumi-tls 5.x (terraform-provider-tls): keys and certificates, made with `cryptography`.

What the program uses is implemented: ECDSA and RSA private keys, self-signed (CA) certificates,
certificate requests and CA-signed certificates with subject, DNS and IP subject alternative names,
validity and key usages. Anything else is refused by name.

terraform-provider-tls internal/provider/resource_private_key.go, resource_cert_request.go,
resource_self_signed_cert.go, resource_locally_signed_cert.go: every attribute RequiresReplace; a
certificate whose end of validity is within ``early_renewal_hours`` is marked ready for renewal when
the plan is made (modifyPlanIfCertificateReadyForRenewal) and replaced.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Callable, Mapping
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from local_engine.providers import Context, Diff, Provider, changed_keys, unknown_outputs
from local_engine.state import ResourceState
from local_engine.wire import UnsupportedInputError, as_int, check_keys, make_secret

KEY_KEYS = ("algorithm", "ecdsaCurve", "rsaBits")
SUBJECT_KEYS = ("commonName", "organization", "organizationalUnit", "country", "locality", "province")
SELF_SIGNED_KEYS = ("privateKeyPem", "subject", "isCaCertificate", "validityPeriodHours", "allowedUses",
                    "dnsNames", "ipAddresses", "earlyRenewalHours")
REQUEST_KEYS = ("privateKeyPem", "subject", "dnsNames", "ipAddresses")
SIGNED_KEYS = ("certRequestPem", "caPrivateKeyPem", "caCertPem", "validityPeriodHours", "earlyRenewalHours",
               "allowedUses", "isCaCertificate")
CURVES: dict[str, Callable[[], ec.EllipticCurve]] = {"P224": ec.SECP224R1, "P256": ec.SECP256R1,
                                                     "P384": ec.SECP384R1, "P521": ec.SECP521R1}
SUBJECT_OIDS = {"commonName": NameOID.COMMON_NAME, "organization": NameOID.ORGANIZATION_NAME,
                "organizationalUnit": NameOID.ORGANIZATIONAL_UNIT_NAME, "country": NameOID.COUNTRY_NAME,
                "locality": NameOID.LOCALITY_NAME, "province": NameOID.STATE_OR_PROVINCE_NAME}
EXTENDED_USES = {"server_auth": ExtendedKeyUsageOID.SERVER_AUTH, "client_auth": ExtendedKeyUsageOID.CLIENT_AUTH}
KEY_USES = {"digital_signature", "key_encipherment", "cert_signing", "crl_signing", "content_commitment",
            "key_agreement", "data_encipherment"}


def private_key(inputs: Mapping[str, Any], where: str) -> dict[str, Any]:
    """PrivateKey outputs: the key in PEM (PKCS#1/SEC1 and PKCS#8, secret) and its public key."""
    algorithm = inputs.get("algorithm")
    key: CertificateIssuerPrivateKeyTypes
    if algorithm == "ECDSA":
        curve = inputs.get("ecdsaCurve", "P224")
        if curve not in CURVES:
            raise UnsupportedInputError(f"{where}.ecdsaCurve: {curve!r}; expected one of {', '.join(CURVES)}")
        key = ec.generate_private_key(CURVES[curve]())
        legacy = serialization.PrivateFormat.TraditionalOpenSSL
    elif algorithm == "RSA":
        key = rsa.generate_private_key(65537, as_int(inputs.get("rsaBits", 2048), f"{where}.rsaBits"))
        legacy = serialization.PrivateFormat.TraditionalOpenSSL
    else:
        raise UnsupportedInputError(f"{where}.algorithm: {algorithm!r}; expected ECDSA or RSA")

    def pem(fmt: serialization.PrivateFormat) -> str:
        return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption()).decode()

    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return {**inputs, "privateKeyPem": make_secret(pem(legacy)),
            "privateKeyPemPkcs8": make_secret(pem(serialization.PrivateFormat.PKCS8)), "publicKeyPem": public}


def self_signed_cert(inputs: Mapping[str, Any], where: str) -> dict[str, Any]:
    """SelfSignedCert outputs: ``certPem`` and the validity window."""
    key = _load_key(inputs.get("privateKeyPem"), f"{where}.privateKeyPem")
    subject = _name(inputs.get("subject"), f"{where}.subject")
    builder = _sans(x509.CertificateBuilder().subject_name(subject).issuer_name(subject), inputs, where)
    return _issue(builder, key.public_key(), key, inputs, where)


def cert_request(inputs: Mapping[str, Any], where: str) -> dict[str, Any]:
    """CertRequest outputs: ``certRequestPem``."""
    key = _load_key(inputs.get("privateKeyPem"), f"{where}.privateKeyPem")
    builder = _sans(x509.CertificateSigningRequestBuilder().subject_name(
        _name(inputs.get("subject"), f"{where}.subject")), inputs, where)
    request = builder.sign(key, hashes.SHA256())
    return {**inputs, "certRequestPem": request.public_bytes(serialization.Encoding.PEM).decode()}


def locally_signed_cert(inputs: Mapping[str, Any], where: str) -> dict[str, Any]:
    """LocallySignedCert outputs: the request's subject and SANs signed by the CA, as ``certPem``."""
    request = x509.load_pem_x509_csr(str(inputs.get("certRequestPem") or "").encode())
    ca_key = _load_key(inputs.get("caPrivateKeyPem"), f"{where}.caPrivateKeyPem")
    ca_cert = x509.load_pem_x509_certificate(str(inputs.get("caCertPem") or "").encode())
    builder = x509.CertificateBuilder().subject_name(request.subject).issuer_name(ca_cert.subject)
    for extension in request.extensions:
        builder = builder.add_extension(extension.value, critical=extension.critical)
    builder = builder.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                                    critical=False)
    return _issue(builder, request.public_key(), ca_key, inputs, where)  # type: ignore[arg-type]


def _issue(builder: x509.CertificateBuilder, public_key: Any, signer: CertificateIssuerPrivateKeyTypes,
           inputs: Mapping[str, Any], where: str) -> dict[str, Any]:
    hours = as_int(inputs.get("validityPeriodHours"), f"{where}.validityPeriodHours")
    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    end = now + datetime.timedelta(hours=hours)
    is_ca = bool(inputs.get("isCaCertificate", False))
    uses = [str(u) for u in inputs.get("allowedUses") or []]
    unknown = sorted(set(uses) - KEY_USES - set(EXTENDED_USES))
    if unknown:
        raise UnsupportedInputError(f"{where}.allowedUses: {', '.join(unknown)} not supported by the local engine")
    builder = (builder.public_key(public_key).serial_number(x509.random_serial_number())
               .not_valid_before(now).not_valid_after(end)
               .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False))
    if set(uses) & KEY_USES:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature="digital_signature" in uses, content_commitment="content_commitment" in uses,
            key_encipherment="key_encipherment" in uses, data_encipherment="data_encipherment" in uses,
            key_agreement="key_agreement" in uses, key_cert_sign="cert_signing" in uses,
            crl_sign="crl_signing" in uses, encipher_only=False, decipher_only=False), critical=True)
    extended = [EXTENDED_USES[u] for u in uses if u in EXTENDED_USES]
    if extended:
        builder = builder.add_extension(x509.ExtendedKeyUsage(extended), critical=False)
    cert = builder.sign(signer, hashes.SHA256())
    return {**inputs, "certPem": cert.public_bytes(serialization.Encoding.PEM).decode(),
            "validityStartTime": now.isoformat().replace("+00:00", "Z"),
            "validityEndTime": end.isoformat().replace("+00:00", "Z"), "readyForRenewal": False}


def _sans(builder: Any, inputs: Mapping[str, Any], where: str) -> Any:
    names: list[x509.GeneralName] = [x509.DNSName(str(n)) for n in inputs.get("dnsNames") or []]
    for address in inputs.get("ipAddresses") or []:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(str(address))))
        except ValueError as error:
            raise UnsupportedInputError(f"{where}.ipAddresses: {error}") from None
    return builder.add_extension(x509.SubjectAlternativeName(names), critical=False) if names else builder


def _name(subject: Any, where: str) -> x509.Name:
    if not isinstance(subject, Mapping):
        raise UnsupportedInputError(f"{where}: expected a subject, got {subject!r}")
    check_keys(where, subject, SUBJECT_KEYS)
    return x509.Name([x509.NameAttribute(SUBJECT_OIDS[k], str(v)) for k, v in subject.items() if v])


def _load_key(pem: Any, where: str) -> CertificateIssuerPrivateKeyTypes:
    if not isinstance(pem, str) or not pem:
        raise UnsupportedInputError(f"{where}: expected a PEM private key")
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    if not isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)):
        raise UnsupportedInputError(f"{where}: only ECDSA and RSA keys are supported")
    return key


def ready_for_renewal(state: Mapping[str, Any], early_renewal_hours: Any) -> bool:
    """Whether a certificate's end of validity is within ``early_renewal_hours`` from now."""
    end = state.get("validityEndTime")
    if not isinstance(end, str):
        return False
    hours = int(early_renewal_hours or 0)
    expires = datetime.datetime.fromisoformat(end.replace("Z", "+00:00"))
    return datetime.datetime.now(datetime.UTC) >= expires - datetime.timedelta(hours=hours)


class _Generated(Provider):
    """A key or certificate: every input replaces; delete only forgets it."""

    keys: tuple[str, ...] = ()
    computed: tuple[str, ...] = ()
    make: Callable[[Mapping[str, Any], str], dict[str, Any]]

    def check(self, name: str, inputs: dict[str, Any]) -> dict[str, Any]:
        check_keys(f"{self.type} '{name}'", inputs, self.keys)
        return inputs

    def diff(self, old: ResourceState, inputs: dict[str, Any]) -> Diff:
        changed = changed_keys(old.inputs, inputs)
        if "validityPeriodHours" in self.keys and ready_for_renewal(old.outputs, inputs.get("earlyRenewalHours")):
            return Diff(changed=(*changed, "readyForRenewal"), replace=(*changed, "readyForRenewal"),
                        notes=("within early_renewal_hours of its end of validity",))
        return Diff(changed=changed, replace=changed)

    def create(self, ctx: Context, name: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        return name, self.make(inputs, f"{self.type} '{name}'")

    def preview(self, old: ResourceState | None, inputs: dict[str, Any], op: str) -> dict[str, Any]:
        return unknown_outputs(inputs, *self.computed)


class PrivateKey(_Generated):
    type = "tls:index/privateKey:PrivateKey"
    source = "terraform-provider-tls internal/provider/resource_private_key.go"
    keys, computed = KEY_KEYS, ("privateKeyPem", "privateKeyPemPkcs8", "publicKeyPem")
    make = staticmethod(private_key)


class SelfSignedCert(_Generated):
    type = "tls:index/selfSignedCert:SelfSignedCert"
    source = "terraform-provider-tls internal/provider/resource_self_signed_cert.go"
    keys, computed = SELF_SIGNED_KEYS, ("certPem", "validityStartTime", "validityEndTime")
    make = staticmethod(self_signed_cert)


class CertRequest(_Generated):
    type = "tls:index/certRequest:CertRequest"
    source = "terraform-provider-tls internal/provider/resource_cert_request.go"
    keys, computed = REQUEST_KEYS, ("certRequestPem",)
    make = staticmethod(cert_request)


class LocallySignedCert(_Generated):
    type = "tls:index/locallySignedCert:LocallySignedCert"
    source = "terraform-provider-tls internal/provider/resource_locally_signed_cert.go"
    keys, computed = SIGNED_KEYS, ("certPem", "validityStartTime", "validityEndTime")
    make = staticmethod(locally_signed_cert)


PROVIDERS = (PrivateKey(), SelfSignedCert(), CertRequest(), LocallySignedCert())
