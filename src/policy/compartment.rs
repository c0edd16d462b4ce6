//! The patient compartment of FHIR R4: for each resource type in it, the elements whose
//! reference to a `Patient` puts a resource in that patient's compartment.
//!
//! A `patient/` SMART scope grants only the launch patient's compartment. The table is the
//! published R4 `CompartmentDefinition` for `patient` (its `resource[].param`), each search
//! parameter resolved to the element paths of its FHIRPath expression for that type (so
//! `Observation` in through `subject`, `AllergyIntolerance` through `patient`, `recorder`
//! or `asserter`); a test derives it again from HL7's files and compares. Arrays are
//! transparent in a path, as in policy paths. Types absent from the table are not in the
//! compartment (`Organization`, `Medication`): a grant on them follows the type alone.
//!
//! `Patient` itself is special: only the `Patient` whose id is the launch patient's is in
//! it here. The definition also lets in a `Patient` that links to it (`link.other`);
//! finalite does not follow links, which can only withhold more.

/// `(resource type, element paths)`, sorted by type.
pub const PATIENT_COMPARTMENT: &[(&str, &[&str])] = &[
    ("Account", &["subject"]),
    ("AdverseEvent", &["subject"]),
    ("AllergyIntolerance", &["patient", "recorder", "asserter"]),
    ("Appointment", &["participant.actor"]),
    ("AppointmentResponse", &["actor"]),
    ("AuditEvent", &["agent.who", "entity.what"]),
    ("Basic", &["subject", "author"]),
    ("BodyStructure", &["patient"]),
    ("CarePlan", &["subject", "activity.detail.performer"]),
    ("CareTeam", &["subject", "participant.member"]),
    ("ChargeItem", &["subject"]),
    ("Claim", &["patient", "payee.party"]),
    ("ClaimResponse", &["patient"]),
    ("ClinicalImpression", &["subject"]),
    ("Communication", &["subject", "sender", "recipient"]),
    (
        "CommunicationRequest",
        &["subject", "sender", "recipient", "requester"],
    ),
    ("Composition", &["subject", "author", "attester.party"]),
    ("Condition", &["subject", "asserter"]),
    ("Consent", &["patient"]),
    (
        "Coverage",
        &["policyHolder", "subscriber", "beneficiary", "payor"],
    ),
    ("CoverageEligibilityRequest", &["patient"]),
    ("CoverageEligibilityResponse", &["patient"]),
    ("DetectedIssue", &["patient"]),
    ("DeviceRequest", &["subject", "performer"]),
    ("DeviceUseStatement", &["subject"]),
    ("DiagnosticReport", &["subject"]),
    ("DocumentManifest", &["subject", "author", "recipient"]),
    ("DocumentReference", &["subject", "author"]),
    ("Encounter", &["subject"]),
    ("EnrollmentRequest", &["candidate"]),
    ("EpisodeOfCare", &["patient"]),
    ("ExplanationOfBenefit", &["patient", "payee.party"]),
    ("FamilyMemberHistory", &["patient"]),
    ("Flag", &["subject"]),
    ("Goal", &["subject"]),
    ("Group", &["member.entity"]),
    ("ImagingStudy", &["subject"]),
    ("Immunization", &["patient"]),
    ("ImmunizationEvaluation", &["patient"]),
    ("ImmunizationRecommendation", &["patient"]),
    ("Invoice", &["subject", "recipient"]),
    ("List", &["subject", "source"]),
    ("MeasureReport", &["subject"]),
    ("Media", &["subject"]),
    ("MedicationAdministration", &["subject", "performer.actor"]),
    ("MedicationDispense", &["subject", "receiver"]),
    ("MedicationRequest", &["subject"]),
    ("MedicationStatement", &["subject"]),
    ("MolecularSequence", &["patient"]),
    ("NutritionOrder", &["patient"]),
    ("Observation", &["subject", "performer"]),
    ("Patient", &["link.other"]),
    ("Person", &["link.target"]),
    ("Procedure", &["subject", "performer.actor"]),
    ("Provenance", &["target"]),
    ("QuestionnaireResponse", &["subject", "author"]),
    ("RelatedPerson", &["patient"]),
    ("RequestGroup", &["subject", "action.participant"]),
    ("ResearchSubject", &["individual"]),
    ("RiskAssessment", &["subject"]),
    ("Schedule", &["actor"]),
    ("ServiceRequest", &["subject", "performer"]),
    ("Specimen", &["subject"]),
    ("SupplyDelivery", &["patient"]),
    ("SupplyRequest", &["deliverTo"]),
    ("VisionPrescription", &["patient"]),
];

/// The element paths that bring a resource of `resource_type` into a patient's
/// compartment; `None` for a type outside the compartment.
pub fn reference_paths(resource_type: &str) -> Option<&'static [&'static str]> {
    PATIENT_COMPARTMENT
        .binary_search_by(|(t, _)| (*t).cmp(resource_type))
        .ok()
        .map(|i| PATIENT_COMPARTMENT[i].1)
}

/// Whether a reference (`Patient/123`, `https://server/fhir/Patient/123`, or with a
/// version, `Patient/123/_history/2`) points to the patient `id`.
pub fn refers_to_patient(reference: &str, id: &str) -> bool {
    if id.is_empty() {
        return false;
    }
    let reference = match reference.split_once("/_history/") {
        Some((unversioned, _)) => unversioned,
        None => reference,
    };
    let Some(rest) = reference.strip_suffix(id) else {
        return false;
    };
    rest == "Patient/" || rest.ends_with("/Patient/") && rest.contains("://")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_sorted_for_lookup() {
        assert!(PATIENT_COMPARTMENT.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(
            reference_paths("Observation"),
            Some(&["subject", "performer"][..])
        );
        assert_eq!(reference_paths("Organization"), None);
        assert_eq!(reference_paths("Medication"), None);
    }

    #[test]
    fn references_to_the_patient() {
        for yes in [
            "Patient/example",
            "https://fhir.example/r4/Patient/example",
            "Patient/example/_history/3",
        ] {
            assert!(refers_to_patient(yes, "example"), "{yes}");
        }
        for no in [
            "Patient/example2",
            "Patient/xexample",
            "Group/example",
            "example",
            "Patient/",
            "urn:uuid:Patient/example",
            "https://fhir.example/Practitioner/example",
            "#example",
            "",
        ] {
            assert!(!refers_to_patient(no, "example"), "{no}");
        }
        assert!(!refers_to_patient("Patient/", ""));
    }
}
