"""Admission webhooks (cf. apiserver pkg/admission/plugin/webhook): their definitions
(definition.py), whether a request calls one (matching.py), the AdmissionReview (review.py),
the HTTPS client (client.py), one call (call.py), and the mutating and validating
dispatchers (mutating.py, validating.py)."""
