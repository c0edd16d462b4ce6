"""HL7's FHIR R4 examples in tests/envoy/fhir, read only after their checksum is checked.

The files are copied unchanged from the npm package `hl7.fhir.r4.examples` 4.0.1 (CC0-1.0;
tests/envoy/fhir/README.md names the package's checksum): real data no one on the project
wrote. A file that differs from HL7's fails the test that reads it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

FHIR = Path(__file__).parent / "fhir"
CHECKSUMS = {
    "Patient-example.json": "7cc6b3817264c22e722b6bc10e494d3441341032f8294db7ccec796ca7a0cf81",
    "Patient-f001.json": "707159ab47ef675765a89e07833f0146c980ef554aaffed08603b5e762a37838",
    "Observation-example.json": "95b2b641707cd473902670a65c20008282c09b7e71731d1010a3db6ce24fce7f",
    "Observation-map-sitting.json":
        "167fbfd4000c9cd76f59239bcb890caa8828738576ef80bdcb079a11cf372cb1",
    "Observation-bloodgroup.json":
        "ecd2836596fda0b26d87d4702ecf7e336d7965b57d81e6675c33d9732757e79a",
    "Observation-f001.json": "ce9f8dab3efbdfaa8a734e6c738956656cd444a91b823dcf4458eb833edf4a3f",
    "Condition-example.json": "450c80e71cdad565523c27a62bc94f53db949e02417e1d2dd4fe39927f34adeb",
    "CapabilityStatement-phr.json":
        "ba4d5730b92b1de2de39585910633cce29b0a2ffd842c7d6540e748c124552d2",
    "Location-1.json": "82864277af3dbd87d1dd7021697e3f53b7f2c731e56a06fdd7e74afb2b977d1b",
    "Organization-1.json": "8116a0f1283be32e20e5b2496467b83b32b1c79b759217c5a1937c11c7e5e2bd",
    "Practitioner-example.json": "f7bdedca23fe131d62bbf7efae8c4dca6c691fe1ab78aa55e81b5fea43a88655",
    "Bundle-father.json": "f145307546d8982f6f69033728844e76a4713c1de63f8df88b24705c2aaadcaa",
    "Encounter-home.json": "0ec39a404474d5b511d1e1830bad3b04c843eba7a3f7890019ddbded17705588",
    "Bundle-bundle-response-simplesummary.json":
        "b7ab59eb4c4c355e8399abf3ac9fc0c02b5158e7ce347861cfb647aefb7ff3da",
    "SearchParameter-patient-extensions-Patient-age.json":
        "6efb8bf884e68ca13bdc650282000e869f9c0dd273b2796d8a046b55f6109c87",
}


def example(name: str) -> bytes:
    """The file's bytes, as HL7 published them."""
    data = (FHIR / name).read_bytes()
    assert hashlib.sha256(data).hexdigest() == CHECKSUMS[name], f"{name} is not HL7's file"
    return data


def resource(name: str) -> dict[str, Any]:
    """The file, parsed."""
    return json.loads(example(name))
