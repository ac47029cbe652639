"""One module per verb family (cf. apiserver pkg/endpoints/handlers)."""
