"""The four scenarios the README names (the CNIL recommendation's worked examples), each run with
its example policy from envoy/examples/ in the shipped envoy/envoy.yaml, through a real Envoy.

1. Restricted sharing between organisations: a billing partner sees identity and insurance,
   not diagnoses.
2. Sharing with researchers: pseudonymised ids, birth year, diagnosis codes; no names,
   addresses or contact details. The key is in Envoy's environment (host_env_keys).
3. Open data from an administration: no token, aggregate fields only.
4. Closed sharing inside one organisation: the client is the URI SAN (a SPIFFE id) of its
   mTLS certificate, and purpose care sees everything. Real certificates, made here.
"""

from __future__ import annotations

import copy
import datetime
import ipaddress
import json
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

import render
from conftest import sample
from harness import HTTP_TIMEOUT, ROOT, assert_json_bytes, assert_problem, describe, pseudonym

EXAMPLES = ROOT / "envoy" / "examples"

# Values of the sample patients that some purposes must never see.
NAMES = [b"Martin", b"Dubois", b"Nguyen", b"Claire"]
ADDRESSES = [b"rue des Lilas", b"Lyon", b"Bordeaux", b"69003"]
CONTACTS = [b"+33 6"]
SSNS = [b"2840375999001", b"1910733999002"]
DIAGNOSES = [b"E11", b"I10", b"J45", b"diabetes", b"hypertension", b"Asthma"]


def example(name: str) -> dict[str, Any]:
    return json.loads((EXAMPLES / name).read_text())


@pytest.fixture(scope="module")
def scenario_envoy(envoy_factory, test_config, wasm):
    """`scenario_envoy(file)`: an Envoy running the shipped envoy.yaml with the example
    policy `file` as finalite's configuration (one Envoy per file for the module)."""
    cache: dict[str, Any] = {}

    def make(name: str):
        if name not in cache:
            config = test_config(wasm=wasm, plugin_config=example(name))
            cache[name] = envoy_factory(config, f"scenario-{Path(name).stem}")
        return cache[name]

    return make


def assert_absent(r: requests.Response, canaries: list[bytes]) -> None:
    for canary in canaries:
        assert canary not in r.content, f"{canary!r} leaked:\n{describe(r)}"


# --- 1. Billing partner -------------------------------------------------------------------


def test_billing_partner_sees_identity_and_insurance_not_diagnoses(scenario_envoy,
                                                                    sample_patients, token):
    envoy = scenario_envoy("scenario-1-billing-partner.json")
    partner = token("patients:read", ["billing"], client_id="billing-partner")
    r = envoy.get("/patients/1", token=partner, purpose="billing")
    # Kept values go out byte for byte as the API wrote them.
    assert_json_bytes(
        r,
        b'{"id":"1","name":{"family": "Martin", "given": ["Claire", "L\\u00e9a"]},'
        b'"birthDate":"1984-03-12","insurance":{"provider": "Mutuelle Exemple", '
        b'"number": "MX-0001"}}')
    assert "x-patient-count" not in r.headers, describe(r)
    assert_absent(r, DIAGNOSES + ADDRESSES + CONTACTS + SSNS)

    r = envoy.get("/patients", token=partner, purpose="billing")
    assert r.status_code == 200, describe(r)
    patients = r.json()
    assert [p["id"] for p in patients] == ["1", "2", "3"]
    for patient in patients:
        assert set(patient) == {"id", "name", "birthDate", "insurance"}, patient
    assert_absent(r, DIAGNOSES + ADDRESSES + CONTACTS + SSNS)


def test_billing_partner_gets_nothing_beyond_its_authorisation(scenario_envoy, sample_patients,
                                                               token):
    envoy = scenario_envoy("scenario-1-billing-partner.json")
    partner = token("patients:read", ["billing"], client_id="billing-partner")
    # A purpose the token carries but this route does not serve.
    both = token("patients:read", ["billing", "research"], client_id="billing-partner")
    r = envoy.get("/patients/1", token=both, purpose="research")
    assert_problem(r, 403, "purpose-not-accepted", "Forbidden", absent=DIAGNOSES)
    # A purpose the token does not carry.
    research = token("patients:read", ["research"], client_id="research-lab")
    r = envoy.get("/patients/1", token=research, purpose="billing")
    assert_problem(r, 403, "purpose-not-authorised", "Forbidden", absent=DIAGNOSES)
    # No scope, no token.
    r = envoy.get("/patients/1", token=token("appointments:read", ["billing"]),
                  purpose="billing")
    assert_problem(r, 403, "insufficient-scope", "Forbidden",
                   www_authenticate='Bearer error="insufficient_scope", scope="patients:read"')
    r = envoy.get("/patients/1", purpose="billing")
    assert_problem(r, 401, "invalid-token", "Unauthorized",
                   www_authenticate='Bearer error="invalid_token"')


# --- 2. Researchers -----------------------------------------------------------------------


def test_research_sees_pseudonyms_birth_years_and_diagnosis_codes_only(
        scenario_envoy, sample_patients, token, pseudonym_key):
    envoy = scenario_envoy("scenario-2-research.json")
    lab = token("patients:read", ["research"], client_id="research-lab")
    r = envoy.get("/patients", token=lab, purpose="research")
    assert r.status_code == 200, describe(r)
    source = json.loads(sample("patients.json"))
    expected = [
        {
            "id": pseudonym(pseudonym_key, p["id"], "research-lab"),
            "birthDate": p["birthDate"][:4],
            "conditions": [{"code": c["code"], "onset": c["onset"][:4]}
                           for c in p["conditions"]],
        }
        for p in source
    ]
    assert r.json() == expected
    assert "x-patient-count" not in r.headers, describe(r)
    assert_absent(r, NAMES + ADDRESSES + CONTACTS + SSNS
                  + [b"Type 2 diabetes", b"Mutuelle", b"1984-03-12"])


def test_research_pseudonyms_differ_between_reusers(scenario_envoy, sample_patients, token,
                                                    pseudonym_key):
    envoy = scenario_envoy("scenario-2-research.json")
    ids = {}
    for client in ("research-lab", "other-lab"):
        r = envoy.get("/patients/1", token=token("patients:read", ["research"],
                                                 client_id=client), purpose="research")
        assert r.status_code == 200, describe(r)
        ids[client] = r.json()["id"]
        assert ids[client] == pseudonym(pseudonym_key, "1", client)
    assert ids["research-lab"] != ids["other-lab"]


def test_research_needs_its_key_in_envoys_environment(envoy_bin, workdir, test_config, wasm):
    """Without the key in Envoy's environment (host_env_keys), the configuration is refused:
    a research view is never served with a missing or guessable key."""
    import harness

    harness.assert_refused(
        envoy_bin, test_config(wasm=wasm, plugin_config=example("scenario-2-research.json")),
        workdir, "scenario-research-no-key",
        "the environment variable FINALITE_PSEUDONYM_KEY is not set in the VM",
        env={"FINALITE_PSEUDONYM_KEY": None})


# --- 3. Open data -------------------------------------------------------------------------


def test_open_data_without_a_token_sees_aggregates_only(scenario_envoy, upstream):
    envoy = scenario_envoy("scenario-3-open-data.json")
    upstream.set("/open/admissions", sample("open-admissions.json"),
                 headers=[("x-internal-source", "his-export-7")])
    r = envoy.get("/open/admissions")
    assert_json_bytes(
        r,
        b'[{"service":"cardiology","year":2025,"admissions":1243,"averageStay":4.2},'
        b'{"service":"endocrinology","year":2025,"admissions":512,"averageStay":2.8},'
        b'{"service":"pulmonology","year":2025,"admissions":377,"averageStay":5.1}]')
    assert "x-internal-source" not in r.headers, describe(r)
    assert r.headers["content-type"] == "application/json", describe(r)
    assert_absent(r, [b"longestStay", b"patientId", b"birthDate", b"1958-01-05"])
    # A token changes nothing, and no other purpose is served here.
    r = envoy.get("/open/admissions", purpose="open-data")
    assert r.status_code == 200, describe(r)
    r = envoy.get("/open/admissions", purpose="research")
    assert_problem(r, 403, "purpose-not-accepted", "Forbidden", absent=[b"longestStay"])


# --- 4. Closed sharing over mTLS ----------------------------------------------------------

CARE_EHR = "spiffe://hospital.example/ns/care/sa/ehr"
BILLING_SVC = "spiffe://hospital.example/ns/billing/sa/invoicing"


class Pki:
    """A CA, a server certificate for 127.0.0.1, and client certificates whose only SAN is a
    SPIFFE URI; all written as PEM files under `directory`."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ca_key, self.ca = self._ca("finalite test CA")
        self.ca_file = self._write("ca.pem", self.ca.public_bytes(serialization.Encoding.PEM))

    @staticmethod
    def _key() -> ec.EllipticCurvePrivateKey:
        return ec.generate_private_key(ec.SECP256R1())

    @staticmethod
    def _validity(builder: x509.CertificateBuilder) -> x509.CertificateBuilder:
        now = datetime.datetime.now(datetime.timezone.utc)
        return builder.not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(
            now + datetime.timedelta(days=1))

    def _ca(self, name: str):
        key = self._key()
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        cert = (self._validity(x509.CertificateBuilder())
                .subject_name(subject).issuer_name(subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                             crl_sign=True, content_commitment=False,
                                             key_encipherment=False, data_encipherment=False,
                                             key_agreement=False, encipher_only=False,
                                             decipher_only=False), critical=True)
                .sign(key, hashes.SHA256()))
        return key, cert

    def _write(self, name: str, data: bytes) -> Path:
        path = self.dir / name
        path.write_bytes(data)
        return path

    def issue(self, name: str, san: list[x509.GeneralName], usage: x509.ObjectIdentifier,
              ca: tuple[Any, x509.Certificate] | None = None) -> tuple[Path, Path]:
        """A leaf certificate and key (PEM files) signed by the CA (or by `ca`)."""
        ca_key, ca_cert = ca or (self.ca_key, self.ca)
        key = self._key()
        cert = (self._validity(x509.CertificateBuilder())
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
                .issuer_name(ca_cert.subject).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .add_extension(x509.SubjectAlternativeName(san), critical=False)
                .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
                .sign(ca_key, hashes.SHA256()))
        key_pem = key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        return (self._write(f"{name}.pem", cert.public_bytes(serialization.Encoding.PEM)),
                self._write(f"{name}-key.pem", key_pem))

    def client(self, name: str, spiffe_id: str, ca=None) -> tuple[Path, Path]:
        return self.issue(name, [x509.UniformResourceIdentifier(spiffe_id)],
                          x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH, ca)


def with_mtls_listener(config: dict[str, Any], cert: Path, key: Path, ca: Path) -> dict[str, Any]:
    """The rendered configuration with TLS on the listener, client certificates required and
    verified against `ca` (what a mesh sidecar or an internal gateway does)."""
    out = copy.deepcopy(config)
    for chain in render.listener(out)["filter_chains"]:
        chain["transport_socket"] = {
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3."
                         "DownstreamTlsContext",
                "require_client_certificate": True,
                "common_tls_context": {
                    "tls_certificates": [{"certificate_chain": {"filename": str(cert)},
                                          "private_key": {"filename": str(key)}}],
                    "validation_context": {"trusted_ca": {"filename": str(ca)}},
                },
            },
        }
    return out


@pytest.fixture(scope="module")
def pki(workdir) -> Pki:
    return Pki(workdir / "scenario-4-pki")


@pytest.fixture(scope="module")
def mtls_envoy(pki, envoy_factory, test_config, wasm):
    cert, key = pki.issue("server", [x509.DNSName("localhost"),
                                     x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
                          x509.oid.ExtendedKeyUsageOID.SERVER_AUTH)
    config = test_config(wasm=wasm,
                         plugin_config=example("scenario-4-closed-sharing-mtls.json"))
    return envoy_factory(with_mtls_listener(config, cert, key, pki.ca_file),
                         "scenario-closed-sharing-mtls")


def mtls_get(envoy, pki: Pki, path: str, client: tuple[Path, Path] | None,
             purpose: str | None = None) -> requests.Response:
    headers = {"x-purpose": purpose} if purpose else {}
    return requests.get(f"https://127.0.0.1:{envoy.port}{path}", headers=headers,
                        cert=tuple(map(str, client)) if client else None,
                        verify=str(pki.ca_file), timeout=HTTP_TIMEOUT, allow_redirects=False)


def test_closed_sharing_care_service_sees_everything(mtls_envoy, pki, sample_patients):
    ehr = pki.client("care-ehr", CARE_EHR)
    r = mtls_get(mtls_envoy, pki, "/patients/1", ehr)
    assert r.status_code == 200, describe(r)
    assert r.content == sample("patients/1.json"), describe(r)
    r = mtls_get(mtls_envoy, pki, "/patients", ehr, purpose="care")
    assert r.status_code == 200, describe(r)
    assert r.content == sample("patients.json"), describe(r)
    assert r.headers.get("x-patient-count") == "3", describe(r)


def test_closed_sharing_other_services_are_identified_but_not_authorised(mtls_envoy, pki,
                                                                         sample_patients):
    invoicing = pki.client("billing-invoicing", BILLING_SVC)
    r = mtls_get(mtls_envoy, pki, "/patients/1", invoicing)
    assert_problem(r, 403, "purpose-not-authorised", "Forbidden",
                   absent=DIAGNOSES + NAMES + SSNS)
    # Nor may the care service declare a purpose its certificate is not authorised for.
    ehr = pki.client("care-ehr-2", CARE_EHR)
    r = mtls_get(mtls_envoy, pki, "/patients/1", ehr, purpose="billing")
    assert_problem(r, 403, "purpose-not-authorised", "Forbidden", absent=DIAGNOSES)


def test_closed_sharing_refuses_connections_without_a_trusted_certificate(mtls_envoy, pki,
                                                                          sample_patients):
    with pytest.raises(requests.exceptions.ConnectionError):
        mtls_get(mtls_envoy, pki, "/patients/1", None)
    # A certificate naming the care service, but issued by a CA the hospital does not trust.
    rogue_ca = pki._ca("rogue CA")
    forged = pki.client("forged-ehr", CARE_EHR, ca=rogue_ca)
    with pytest.raises(requests.exceptions.ConnectionError):
        mtls_get(mtls_envoy, pki, "/patients/1", forged)
    assert sample_patients.received("/patients/1") == []
