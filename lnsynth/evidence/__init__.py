"""The evidence base: schema, embedded data, loading and consistency checks."""

from .load import EvidenceBase, EvidenceError, load_evidence, load_study_file, load_synthesis_file, render_template
from .schema import (
    ENDPOINTS,
    REGIMEN_CLASS,
    REGIMENS,
    AdverseEvent,
    Arm,
    Fact,
    Outcome,
    Provenance,
    Quantity,
    Source,
    Study,
    Synthesis,
    SynthesisEstimate,
    Text,
    Timepoint,
)

__all__ = [
    "EvidenceBase",
    "EvidenceError",
    "load_evidence",
    "load_study_file",
    "load_synthesis_file",
    "render_template",
    "ENDPOINTS",
    "REGIMENS",
    "REGIMEN_CLASS",
    "AdverseEvent",
    "Arm",
    "Fact",
    "Outcome",
    "Provenance",
    "Quantity",
    "Source",
    "Study",
    "Synthesis",
    "SynthesisEstimate",
    "Text",
    "Timepoint",
]
