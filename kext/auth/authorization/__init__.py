"""Authorization (cf. k8s.io/apiserver pkg/authorization): the Authorizer protocol and its
decisions (authorizer), the union that asks each in turn (union), the always-allowed paths
(path), and the built-in AlwaysAllow and privileged-groups authorizers (builtin)."""
